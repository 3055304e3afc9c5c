// DOM helpers. All user data goes through textContent / attributes and is never parsed as HTML.

export const $ = (id) => document.getElementById(id);

/**
 * Create an element: h("li", {class: "task", dataset: {id}, onclick: fn}, child, "text", ...).
 * Strings become text nodes; null/false children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) {
  el.replaceChildren();
}

const transientTimers = new WeakMap();

/** Show a message in words next to what caused it; kind: "success" | "error" | "info". */
export function say(el, text, kind = "info") {
  const timers = transientTimers.get(el);
  if (timers) {
    timers.forEach(clearTimeout);
    transientTimers.delete(el);
  }
  el.classList.remove("msg-fading");
  el.textContent = text || "";
  el.classList.remove("msg-success", "msg-error", "msg-info");
  if (text) el.classList.add("msg-" + kind);
}

/** Like say(), but the message fades out after `ms` (a new say() on the same element cancels that). */
export function sayBriefly(el, text, kind = "info", ms = 5000) {
  say(el, text, kind);
  if (!text) return;
  const fade = setTimeout(() => el.classList.add("msg-fading"), Math.max(0, ms - 400));
  const gone = setTimeout(() => say(el, ""), ms);
  transientTimers.set(el, [fade, gone]);
}

/** "Check the highlighted field." / "Check the 2 highlighted fields." */
export function highlightedFields(count, verb = "Check") {
  return count === 1 ? `${verb} the highlighted field.` : `${verb} the ${count} highlighted fields.`;
}

/** Put each 422 field message next to its control; returns the first invalid control (or null). */
export function showFieldErrors(form, prefix, fieldErrors) {
  clearFieldErrors(form);
  let first = null;
  const unplaced = [];
  const invalid = new Set();
  for (const { field, msg } of fieldErrors) {
    const slot = field ? document.getElementById(`${prefix}-${field}-error`) : null;
    if (!slot) {
      unplaced.push(field ? `${field}: ${msg}` : msg);
      continue;
    }
    slot.textContent = slot.textContent ? slot.textContent + " " + capitalize(msg) : capitalize(msg);
    const control = form.querySelector(`[aria-describedby~="${slot.id}"]`);
    if (control) {
      control.setAttribute("aria-invalid", "true");
      invalid.add(control);
      if (!first) first = control;
    }
  }
  return { first, unplaced, count: invalid.size };
}

export function clearFieldErrors(form) {
  for (const slot of form.querySelectorAll(".field-error")) slot.textContent = "";
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
}

export function capitalize(text) {
  return text ? text.charAt(0).toUpperCase() + text.slice(1) : text;
}

/** Ask for confirmation in the page's <dialog>; resolves true when confirmed. */
export function confirmDialog({ title, text, confirmLabel = "Delete", cancelLabel = "Cancel" }) {
  const dialog = $("confirm-dialog");
  const ok = $("confirm-ok");
  const cancel = $("confirm-cancel");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  ok.textContent = confirmLabel;
  cancel.textContent = cancelLabel;
  const opener = document.activeElement;
  return new Promise((resolve) => {
    const done = (value) => {
      ok.removeEventListener("click", onOk);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("close", onClose);
      if (dialog.open) dialog.close();
      if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
      resolve(value);
    };
    const onOk = () => done(true);
    const onCancel = () => done(false);
    const onClose = () => done(false);
    ok.addEventListener("click", onOk);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("close", onClose);
    dialog.showModal();
    cancel.focus();
  });
}

export const STATUS_LABELS = { todo: "To do", in_progress: "In progress", done: "Done" };
export const PRIORITY_LABELS = { low: "Low", medium: "Medium", high: "High" };

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** An API datetime (UTC, "Z") shown in the person's own time zone. */
export function formatDateTime(iso) {
  return iso ? dateFormat.format(new Date(iso)) : "";
}

/** Human text for an ApiError (or any error) when no field can be blamed. */
export function describeError(err, fallback = "Something went wrong.") {
  if (!err) return fallback;
  if (err.status === 0) return err.message;
  if (err.status === 429) {
    return err.retryAfter
      ? `Too many requests. Try again in ${err.retryAfter} s.`
      : "Too many requests. Wait a moment and try again.";
  }
  const p = err.problem;
  if (p && (p.detail || p.title)) return String(p.detail || p.title);
  return err.message || fallback;
}
