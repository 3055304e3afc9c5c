// The account page (#/account): name and time zone, e-mail (with the current password), password,
// sign out everywhere, delete the account (typed confirmation). Messages next to each form.
import * as api from "./api.js";
import { $, h, clear, say, highlightedFields, showFieldErrors, clearFieldErrors, describeError } from "./dom.js";
import { browserZone, currentZone, knownZones } from "./dates.js";
import { plainFieldErrors } from "./messages.js";

let me = null;
let hooks = null;

/**
 * Wire the forms once. `options`: `changed(user)` (the account changed: header, zone),
 * `ended(message)` (the session is over here: show the sign-in screen with `message`).
 */
export function initAccount(options) {
  hooks = options;
  $("profile-form").addEventListener("submit", (ev) => submit(ev, saveProfile));
  $("email-form").addEventListener("submit", (ev) => submit(ev, saveEmail));
  $("password-form").addEventListener("submit", (ev) => submit(ev, savePassword));
  $("delete-form").addEventListener("submit", (ev) => submit(ev, deleteAccount));
  $("everywhere").addEventListener("click", signOutEverywhere);
  $("account-zone-browser").addEventListener("click", () => {
    $("account-zone").value = browserZone();
  });
}

/** Show the page for `user` (GET /users/me): the forms start from what is stored. */
export function showAccount(user) {
  me = user;
  $("account-name").value = user.name;
  const select = $("account-zone");
  clear(select);
  const zone = user.time_zone || currentZone();
  for (const z of knownZones().includes(zone) ? knownZones() : [zone, ...knownZones()]) {
    select.append(h("option", { value: z, text: z.replaceAll("_", " ") }));
  }
  select.value = zone;
  $("account-zone-browser").textContent = `Use this device's zone (${browserZone().replaceAll("_", " ")})`;
  $("account-email-current").textContent = user.email;
  for (const id of ["email-form", "password-form", "delete-form"]) $(id).reset();
  for (const id of ["profile-form", "email-form", "password-form", "delete-form"]) {
    clearFieldErrors($(id));
    say($(`${id.replace("-form", "")}-msg`), "");
  }
  say($("everywhere-msg"), "");
}

/** Run `action(form, msg)` for a submitted form, with its button disabled meanwhile. */
async function submit(ev, action) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const msg = $(`${form.id.replace("-form", "")}-msg`);
  const button = form.querySelector("button[type=submit]");
  clearFieldErrors(form);
  button.disabled = true;
  try {
    await action(form, msg);
  } catch (err) {
    if (err.status === 401 && !isWrongPassword(err)) return; // the sign-in screen is showing
    refused(err, form, msg);
  } finally {
    button.disabled = false;
  }
}

/** A refusal in words next to the fields (422), or in the form's message line. */
function refused(err, form, msg, values = {}) {
  if (err.status === 422) {
    const { first, unplaced, count } = showFieldErrors(form, form.dataset.prefix, plainFieldErrors(err, values));
    say(msg, (first ? highlightedFields(count) : "Not saved.") + (unplaced.length ? " " + unplaced.join(" ") : ""), "error");
    if (first) first.focus();
    return;
  }
  say(msg, "Not saved: " + describeError(err), "error");
}

/** Fields the form checks before asking the server; returns true when it showed problems. */
function missing(form, msg, problems) {
  if (!problems.length) return false;
  const { first, count } = showFieldErrors(form, form.dataset.prefix, problems);
  say(msg, highlightedFields(count, "Fill in"), "error");
  first.focus();
  return true;
}

async function saveProfile(form, msg) {
  const name = $("account-name").value;
  const zone = $("account-zone").value;
  if (missing(form, msg, name.trim() ? [] : [{ field: "name", msg: "Enter your name." }])) return;
  const body = {};
  if (name.trim() !== me.name) body.name = name;
  if (zone !== (me.time_zone || "UTC")) body.time_zone = zone;
  if (!Object.keys(body).length) {
    say(msg, "Nothing to save: this is what your account says already.", "info");
    return;
  }
  try {
    const { data } = await api.request("PATCH", "/users/me", { json: body });
    me = data;
    hooks.changed(data);
    say(msg, body.time_zone ? `Saved. Dates now use ${data.time_zone || zone}.` : "Saved.", "success");
  } catch (err) {
    if (err.status === 401) return;
    refused(err, form, msg, body);
  }
}

async function saveEmail(form, msg) {
  const email = $("account-email").value.trim();
  const password = $("account-email-password").value;
  const problems = [];
  if (!email) problems.push({ field: "email", msg: "Enter the new email address." });
  if (!password) problems.push({ field: "current_password", msg: "Enter your current password to confirm." });
  if (missing(form, msg, problems)) return;
  try {
    const { data } = await api.request("PATCH", "/users/me", { json: { email, current_password: password } });
    me = data;
    hooks.changed(data);
    form.reset();
    $("account-email-current").textContent = data.email;
    say(msg, `Your email is now ${data.email}. Sign in with it from now on.`, "success");
  } catch (err) {
    if (isWrongPassword(err)) {
      wrongPassword(form, msg, "account-email-password", "changed");
      return;
    }
    if (err.status === 401) return;
    if (err.status === 409) {
      showFieldErrors(form, form.dataset.prefix, [{ field: "email", msg: "Another account already uses this email." }]);
      say(msg, "Not changed: this email is taken.", "error");
      $("account-email").focus();
      return;
    }
    refused(err, form, msg, { email });
  }
}

/** The API's 401 "wrong-password" (see api.js: it does not end the session). */
function isWrongPassword(err) {
  return err.status === 401 && Boolean(err.problem && String(err.problem.type || "").endsWith("/wrong-password"));
}

/** Say "not your current password" next to `inputId` of `form`. */
function wrongPassword(form, msg, inputId, what) {
  showFieldErrors(form, form.dataset.prefix, [{ field: "current_password", msg: "That is not your current password." }]);
  say(msg, `Not ${what}: the current password is not right.`, "error");
  $(inputId).focus();
}

async function savePassword(form, msg) {
  const current = $("account-password-current").value;
  const next = $("account-password-new").value;
  const problems = [];
  if (!current) problems.push({ field: "current_password", msg: "Enter your current password." });
  if ([...next].length < 8) problems.push({ field: "new_password", msg: "Use at least 8 characters." });
  if (missing(form, msg, problems)) return;
  try {
    await api.request("POST", "/users/me/password", { json: { current_password: current, new_password: next } });
  } catch (err) {
    if (isWrongPassword(err)) {
      wrongPassword(form, msg, "account-password-current", "changed");
      return;
    }
    if (err.status === 401) return;
    refused(err, form, msg, { new_password: next });
    return;
  }
  form.reset();
  // Every token issued before the change stops working (SPEC): sign in again here with the new one.
  try {
    await api.login(me.email, next);
    say(msg, "Password changed. Other devices have to sign in again with the new password.", "success");
  } catch {
    hooks.ended("Your password was changed. Sign in with the new password.");
  }
}

async function signOutEverywhere() {
  const button = $("everywhere");
  const msg = $("everywhere-msg");
  button.disabled = true;
  try {
    await api.request("POST", "/auth/logout-all");
    hooks.ended("You were signed out on every device, this one included.", "success");
  } catch (err) {
    if (err.status === 401) return;
    if (err.status === 404 || err.status === 405) {
      say(msg, "This server cannot sign out other devices. Changing your password does it.", "error");
    } else {
      say(msg, "Could not sign out everywhere: " + describeError(err), "error");
    }
  } finally {
    button.disabled = false;
  }
}

async function deleteAccount(form, msg) {
  const typed = $("account-delete-confirm").value.trim();
  const password = $("account-delete-password").value;
  const problems = [];
  if (typed.toLowerCase() !== me.email.toLowerCase()) {
    problems.push({ field: "confirm", msg: `Type ${me.email} exactly to confirm.` });
  }
  if (!password) problems.push({ field: "current_password", msg: "Enter your current password." });
  if (problems.length) {
    const { first, count } = showFieldErrors(form, form.dataset.prefix, problems);
    say(msg, highlightedFields(count), "error");
    first.focus();
    return;
  }
  try {
    await api.request("DELETE", "/users/me", { json: { current_password: password } });
  } catch (err) {
    if (isWrongPassword(err)) {
      wrongPassword(form, msg, "account-delete-password", "deleted");
      return;
    }
    if (err.status === 401) return;
    if (err.status === 409) {
      say(msg, "Not deleted: " + describeError(err), "error");
      return;
    }
    refused(err, form, msg);
    return;
  }
  hooks.ended(`The account ${me.email} and all of its tasks were deleted.`, "success");
}
