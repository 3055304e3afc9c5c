// Taskhub dashboard: boot (restore the session from the refresh cookie), routing, sign in/up/out.
import * as api from "./api.js";
import { $, say, sayBriefly, highlightedFields, showFieldErrors, clearFieldErrors, describeError } from "./dom.js";
import {
  initTasks, refreshTasks, setQueryFromUrl, urlQuery, resetTasksScreen, settleUndo, startTasksFor,
} from "./tasks/screen.js";
import { initAdmin, refreshAdmin, resetAdmin } from "./admin.js";
import { initAccount, showAccount } from "./account.js";
import { browserZone, setZone } from "./dates.js";
import { startLive, stopLive } from "./live.js";
import { initTheme } from "./theme.js";

const SCREENS = ["screen-loading", "screen-auth", "screen-tasks", "screen-account", "screen-admin"];
let me = null; // GET /users/me of the signed-in person
let lastUserId = null; // who used this page last (their filters stay in the URL only for them)
let newAccountEmail = null; // the email an account was just created for on this page
let restoreTimer = null;
let restoreAttempt = 0;

function show(screen) {
  for (const id of SCREENS) $(id).hidden = id !== screen;
  $("topbar").hidden = screen === "screen-auth" || screen === "screen-loading";
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "");
  const [path, query] = raw.split("?");
  return { path: path || "/tasks", params: new URLSearchParams(query || "") };
}

function setTasksUrl() {
  const qs = urlQuery().toString();
  history.replaceState(null, "", "#/tasks" + (qs ? "?" + qs : ""));
}

// ---- auth screen ----------------------------------------------------------------------------------

function showAuth(form = "signin", message = "", kind = "info", { keepDraft = true } = {}) {
  if (me) $("signin-email").value = me.email; // make signing in again one field shorter
  me = null;
  stopLive();
  api.forgetSession();
  resetTasksScreen({ keepDraft });
  show("screen-auth");
  document.title = "Sign in · Taskhub";
  $("signin-form").hidden = form !== "signin";
  $("signup-form").hidden = form !== "signup";
  say($("auth-msg"), message, kind);
  (form === "signin" ? $("signin-email") : $("signup-name")).focus();
}

function switchForm(form) {
  say($("auth-msg"), "");
  $("signin-form").hidden = form !== "signin";
  $("signup-form").hidden = form !== "signup";
  document.title = (form === "signin" ? "Sign in" : "Create an account") + " · Taskhub";
  (form === "signin" ? $("signin-email") : $("signup-name")).focus();
}

async function onSignIn(ev) {
  ev.preventDefault();
  const form = $("signin-form");
  const msg = $("signin-msg");
  clearFieldErrors(form);
  say($("auth-msg"), "");
  const email = $("signin-email").value.trim();
  const password = $("signin-password").value;
  const missing = [];
  if (!email) missing.push({ field: "email", msg: "Enter your email address." });
  if (!password) missing.push({ field: "password", msg: "Enter your password." });
  if (missing.length) {
    const { first, count } = showFieldErrors(form, "signin", missing);
    say(msg, highlightedFields(count, "Fill in"), "error");
    first.focus();
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  say(msg, "Signing in…", "info");
  try {
    await api.login(email, password);
    $("signin-password").value = "";
    say(msg, "");
    const firstTime = newAccountEmail !== null && newAccountEmail.toLowerCase() === email.toLowerCase();
    newAccountEmail = null;
    await enterApp(firstTime ? (who) => `Signed in. Welcome to Taskhub, ${who.name}!` : "Signed in. Welcome back!");
  } catch (err) {
    if (err.status === 422) {
      const { first, count } = showFieldErrors(form, "signin", err.fieldErrors());
      say(msg, first ? highlightedFields(count) : "Could not sign in: " + describeError(err), "error");
      if (first) first.focus();
    } else if (err.status === 401) {
      say(msg, "The email or password is incorrect.", "error");
      $("signin-password").focus();
    } else if (err.status === 403) {
      say(msg, describeError(err) + " Ask an administrator to reactivate it.", "error");
    } else {
      say(msg, "Could not sign in: " + describeError(err), "error");
    }
  } finally {
    button.disabled = false;
  }
}

async function onSignUp(ev) {
  ev.preventDefault();
  const form = $("signup-form");
  const msg = $("signup-msg");
  clearFieldErrors(form);
  const name = $("signup-name").value;
  const email = $("signup-email").value.trim();
  const password = $("signup-password").value;
  const missing = [];
  if (!name.trim()) missing.push({ field: "name", msg: "Enter your name." });
  if (!email) missing.push({ field: "email", msg: "Enter your email address." });
  if (password.length < 8) missing.push({ field: "password", msg: "Use at least 8 characters." });
  if (missing.length) {
    const { first, count } = showFieldErrors(form, "signup", missing);
    say(msg, highlightedFields(count, "Fill in"), "error");
    first.focus();
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  say(msg, "Creating your account…", "info");
  try {
    await api.register(name, email, password, browserZone());
    say(msg, "");
    form.reset();
    newAccountEmail = email;
    $("signin-email").value = email;
    $("signin-password").value = "";
    $("signup-form").hidden = true;
    $("signin-form").hidden = false;
    say($("auth-msg"), `Account created for ${email}. Sign in with your new password.`, "success");
    $("signin-password").focus();
  } catch (err) {
    if (err.status === 422) {
      const { first, unplaced, count } = showFieldErrors(form, "signup", err.fieldErrors());
      const lead = first ? highlightedFields(count) : "The account was not created.";
      say(msg, lead + (unplaced.length ? " " + unplaced.join("; ") : ""), "error");
      if (first) first.focus();
    } else if (err.status === 409) {
      showFieldErrors(form, "signup", [{ field: "email", msg: "An account with this email already exists." }]);
      say(msg, "This email is taken. Sign in instead, or use another email.", "error");
      $("signup-email").focus();
    } else {
      say(msg, "Could not create the account: " + describeError(err), "error");
    }
  } finally {
    button.disabled = false;
  }
}

async function onSignOut() {
  const button = $("signout");
  button.disabled = true;
  await settleUndo(); // a delete waiting for its undo toast is sent while the token still works
  stopLive(); // before the token is revoked: a revoked stream would end the session with an error
  try {
    await api.logout();
    // The next person to sign in on this device starts from a clean URL, not from these filters.
    history.replaceState(null, "", location.pathname + location.search);
    setQueryFromUrl(new URLSearchParams());
    resetAdmin();
    lastUserId = null;
    showAuth("signin", "You have signed out.", "success", { keepDraft: false });
  } catch (err) {
    if (err.status === 401) return; // the session had already ended; the sign-in screen is showing
    startLive(); // still signed in
    say($("topbar-msg"), "Could not sign out: " + describeError(err), "error");
  } finally {
    button.disabled = false;
  }
}

// ---- the signed-in app ------------------------------------------------------------------------------

async function loadMe() {
  const { data } = await api.request("GET", "/users/me");
  accountChanged(data);
}

/** The person's account as the API says now: the header, the admin link, the zone of every date. */
function accountChanged(user) {
  const zoneBefore = me ? me.time_zone : undefined;
  me = user;
  $("whoami").textContent = `${me.name} (${me.email})`;
  $("nav-admin").hidden = me.role !== "admin";
  setZone(me.time_zone || browserZone());
  if (zoneBefore !== undefined && zoneBefore !== me.time_zone) refreshTasks(); // "today" moved
  offerDeviceZone();
}

let zoneOfferKept = false; // "Keep UTC" was chosen on this page

/**
 * Accounts made before time zones existed (or by a client that sent none) are in UTC. When this
 * device is elsewhere, offer its zone once per page: "today" and all-day tasks follow the account.
 */
function offerDeviceZone() {
  const device = browserZone();
  const offer = $("zone-offer");
  offer.hidden = zoneOfferKept || !me || me.time_zone !== "UTC" || device === "UTC";
  if (offer.hidden) return;
  $("zone-offer-text").textContent = `Dates use UTC, your account's time zone; this device is in ${device}.`;
  $("zone-offer-use").textContent = `Use ${device}`;
}

async function useDeviceZone() {
  const button = $("zone-offer-use");
  button.disabled = true;
  try {
    const { data } = await api.request("PATCH", "/users/me", { json: { time_zone: browserZone() } });
    accountChanged(data);
    sayBriefly($("topbar-msg"), `Dates now use ${data.time_zone}.`, "success");
  } catch (err) {
    if (err.status !== 401) say($("zone-offer-text"), "Could not change the time zone: " + describeError(err), "error");
  } finally {
    button.disabled = false;
  }
}

/** The session ended on purpose (password changed elsewhere, signed out everywhere, account deleted). */
function sessionOver(message, kind = "info") {
  api.forgetSession();
  history.replaceState(null, "", location.pathname + location.search);
  setQueryFromUrl(new URLSearchParams());
  resetAdmin();
  lastUserId = null;
  showAuth("signin", message, kind, { keepDraft: false });
}

/** `message`: text (or a function of the person) shown briefly in the header. */
async function enterApp(message = "") {
  try {
    await loadMe();
  } catch (err) {
    if (err.status !== 401) showAuth("signin", "Could not load your account: " + describeError(err), "error");
    return;
  }
  if (lastUserId !== null && lastUserId !== me.id) {
    // Someone else signed in after a session ended: the URL still has the previous person's filters.
    history.replaceState(null, "", "#/tasks");
    setQueryFromUrl(new URLSearchParams());
    resetAdmin();
  }
  lastUserId = me.id;
  sayBriefly($("topbar-msg"), typeof message === "function" ? message(me) : message, "success");
  startTasksFor(me.id);
  startLive();
  await route({ focus: true });
}

async function route({ focus = false } = {}) {
  if (!me) return;
  const { path, params } = parseHash();
  const navTasks = $("nav-tasks");
  const navAdmin = $("nav-admin");
  const navAccount = $("nav-account");
  for (const nav of [navTasks, navAdmin, navAccount]) nav.removeAttribute("aria-current");
  if (path === "/account") {
    show("screen-account");
    document.title = "Account · Taskhub";
    navAccount.setAttribute("aria-current", "page");
    showAccount(me);
    if (focus) $("account-heading").focus();
    return;
  }
  if (path === "/admin") {
    if (me.role !== "admin") {
      history.replaceState(null, "", "#/tasks");
      sayBriefly($("topbar-msg"), "The admin page is only for administrators.", "error", 8000);
      return route({ focus });
    }
    show("screen-admin");
    document.title = "Administration · Taskhub";
    navAdmin.setAttribute("aria-current", "page");
    if (focus) $("admin-heading").focus();
    await refreshAdmin(me);
    return;
  }
  if (path !== "/tasks") history.replaceState(null, "", "#/tasks");
  show("screen-tasks");
  document.title = "Tasks · Taskhub";
  navTasks.setAttribute("aria-current", "page");
  setQueryFromUrl(params);
  if (focus) $("tasks-heading").focus();
  await refreshTasks();
}

async function boot() {
  initTheme();
  initTasks({ urlChanged: setTasksUrl });
  initAccount({ changed: accountChanged, ended: sessionOver });
  $("zone-offer-use").addEventListener("click", useDeviceZone);
  $("zone-offer-keep").addEventListener("click", () => {
    zoneOfferKept = true;
    offerDeviceZone();
  });
  initAdmin({
    onSelfChanged: async () => {
      try {
        await loadMe();
        if (!me.is_active || me.role !== "admin") await route({ focus: true });
      } catch {
        // a 401 already sent the person to the sign-in screen
      }
    },
  });
  api.onSessionEnded((message) => showAuth("signin", message, "error"));

  $("signin-form").addEventListener("submit", onSignIn);
  $("signup-form").addEventListener("submit", onSignUp);
  $("to-signup").addEventListener("click", () => switchForm("signup"));
  $("to-signin").addEventListener("click", () => switchForm("signin"));
  $("signout").addEventListener("click", onSignOut);
  window.addEventListener("hashchange", () => {
    say($("topbar-msg"), "");
    route({ focus: true });
  });
  // A change made in another tab (or by someone else) shows up when this tab is looked at again.
  document.addEventListener("visibilitychange", () => {
    // (not on the account page: that would reset forms the person may be typing in)
    if (document.visibilityState === "visible" && me && parseHash().path !== "/account") route();
  });

  $("restore-retry").addEventListener("click", () => restoreSession());
  $("restore-signin").addEventListener("click", () => {
    stopRestoreTimer();
    showAuth("signin");
  });
  await restoreSession();
}

// ---- restoring the session on page load -------------------------------------------------------------

function stopRestoreTimer() {
  clearTimeout(restoreTimer);
  restoreTimer = null;
}

function showRestoring(text, detail = "", kind = "info", { actions = false } = {}) {
  show("screen-loading");
  document.title = "Taskhub";
  $("loading-text").textContent = text;
  say($("restore-msg"), detail, kind);
  $("restore-actions").hidden = !actions;
}

function statusName(err) {
  return `HTTP ${err.status}` + (err.statusText ? ` (${err.statusText})` : "");
}

/**
 * The session survives a reload: the HttpOnly refresh cookie renews the in-memory access token.
 * A 429 or a 503 with Retry-After is waited out and retried; so is an unreachable server (with a
 * growing pause). The sign-in screen only shows when the server says there is no session (401).
 */
async function restoreSession() {
  stopRestoreTimer();
  showRestoring("Restoring your session…");
  $("restore-status").textContent = "";
  let renewed = false;
  try {
    renewed = await api.refreshSession();
  } catch (err) {
    restoreAttempt += 1;
    restoreFailed(err);
    return;
  }
  restoreAttempt = 0;
  if (renewed) await enterApp();
  else showAuth("signin");
}

function restoreFailed(err) {
  const backoff = Math.min(60, 2 ** restoreAttempt);
  let wait = null;
  let text;
  if (err.status === 429) {
    wait = err.retryAfter ?? backoff;
    text = (s) => `Too many sign-in attempts from this network; retrying in ${s} s.`;
  } else if (err.status === 0) {
    wait = backoff;
    text = (s) => `Could not reach Taskhub. Check your connection; retrying in ${s} s.`;
  } else if (err.retryAfter !== null && err.retryAfter !== undefined) {
    wait = err.retryAfter;
    text = (s) => `Taskhub is busy (${statusName(err)}); retrying in ${s} s.`;
  }
  if (wait === null) {
    const detail = `Could not restore your session: Taskhub answered ${statusName(err)}. ` +
      "Try again, or sign in again.";
    showRestoring("Your session could not be restored", detail, "error", { actions: true });
    $("restore-status").textContent = detail;
    return;
  }
  const deadline = Date.now() + Math.max(1, wait) * 1000;
  const canRetryNow = err.status !== 429; // retrying before Retry-After would only be refused again
  $("restore-status").textContent = text(Math.max(1, wait));
  const tick = () => {
    const left = Math.ceil((deadline - Date.now()) / 1000);
    if (left <= 0) {
      restoreSession();
      return;
    }
    showRestoring("Restoring your session…", text(left), "info", { actions: canRetryNow });
    restoreTimer = setTimeout(tick, Math.max(50, Math.min(1000, deadline - Date.now() - (left - 1) * 1000)));
  };
  tick();
}

boot();
