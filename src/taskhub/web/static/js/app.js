// Taskhub dashboard: boot (restore the session from the refresh cookie), routing, sign in/up/out.
import * as api from "./api.js";
import { $, say, showFieldErrors, clearFieldErrors, describeError } from "./dom.js";
import { initTasks, refreshTasks, setQueryFromUrl, urlQuery, resetTasksScreen, startTasksFor } from "./tasks.js";
import { initAdmin, refreshAdmin } from "./admin.js";

const SCREENS = ["screen-loading", "screen-auth", "screen-tasks", "screen-admin"];
let me = null; // GET /users/me of the signed-in person

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
    const { first } = showFieldErrors(form, "signin", missing);
    say(msg, "Fill in the highlighted fields.", "error");
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
    await enterApp("Signed in. Welcome back!");
  } catch (err) {
    if (err.status === 422) {
      const { first } = showFieldErrors(form, "signin", err.fieldErrors());
      say(msg, "Check the highlighted fields.", "error");
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
    const { first } = showFieldErrors(form, "signup", missing);
    say(msg, "Fill in the highlighted fields.", "error");
    first.focus();
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  say(msg, "Creating your account…", "info");
  try {
    await api.register(name, email, password);
    say(msg, "");
    form.reset();
    $("signin-email").value = email;
    $("signin-password").value = "";
    $("signup-form").hidden = true;
    $("signin-form").hidden = false;
    say($("auth-msg"), `Account created for ${email}. Sign in with your new password.`, "success");
    $("signin-password").focus();
  } catch (err) {
    if (err.status === 422) {
      const { first, unplaced } = showFieldErrors(form, "signup", err.fieldErrors());
      say(msg, "Check the highlighted fields." + (unplaced.length ? " " + unplaced.join("; ") : ""), "error");
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
  try {
    await api.logout();
    showAuth("signin", "You have signed out.", "success", { keepDraft: false });
  } catch (err) {
    if (err.status === 401) return; // the session had already ended; the sign-in screen is showing
    say($("topbar-msg"), "Could not sign out: " + describeError(err), "error");
  } finally {
    button.disabled = false;
  }
}

// ---- the signed-in app ------------------------------------------------------------------------------

async function loadMe() {
  const { data } = await api.request("GET", "/users/me");
  me = data;
  $("whoami").textContent = `${me.name} (${me.email})`;
  $("nav-admin").hidden = me.role !== "admin";
}

async function enterApp(message = "") {
  try {
    await loadMe();
  } catch (err) {
    if (err.status !== 401) showAuth("signin", "Could not load your account: " + describeError(err), "error");
    return;
  }
  say($("topbar-msg"), message, "success");
  startTasksFor(me.id);
  await route({ focus: true });
}

async function route({ focus = false } = {}) {
  if (!me) return;
  const { path, params } = parseHash();
  const navTasks = $("nav-tasks");
  const navAdmin = $("nav-admin");
  if (path === "/admin") {
    if (me.role !== "admin") {
      history.replaceState(null, "", "#/tasks");
      say($("topbar-msg"), "The admin page is only for administrators.", "error");
      return route({ focus });
    }
    show("screen-admin");
    document.title = "Administration · Taskhub";
    navAdmin.setAttribute("aria-current", "page");
    navTasks.removeAttribute("aria-current");
    if (focus) $("admin-heading").focus();
    await refreshAdmin(me);
    return;
  }
  if (path !== "/tasks") history.replaceState(null, "", "#/tasks");
  show("screen-tasks");
  document.title = "Tasks · Taskhub";
  navTasks.setAttribute("aria-current", "page");
  navAdmin.removeAttribute("aria-current");
  setQueryFromUrl(params);
  if (focus) $("tasks-heading").focus();
  await refreshTasks();
}

async function boot() {
  initTasks({ urlChanged: setTasksUrl });
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
    if (document.visibilityState === "visible" && me) route();
  });

  // The session survives a reload: the HttpOnly refresh cookie renews the in-memory access token.
  let renewed = false;
  try {
    renewed = await api.refreshSession();
  } catch (err) {
    showAuth("signin", "Could not reach Taskhub to restore your session: " + describeError(err), "error");
    return;
  }
  if (renewed) await enterApp();
  else showAuth("signin");
}

boot();
