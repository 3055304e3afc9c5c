// Complete / reopen and delete, each with an undo toast for a few seconds.
//
// - Completing (the row's checkbox, or `x`) is sent at once; a row that no longer belongs in the
//   view (a done task in Inbox, Today, Upcoming; a reopened one in Completed) leaves it. Undo sends
//   the old status back.
// - Deleting takes the row out of view at once but sends `DELETE` only when the toast ends (after
//   UNDO_MS, on "Dismiss", when another action starts, on sign-out, or with `keepalive` when the
//   page is left), so Undo just puts the row back: the task keeps its id, dates and history.
import { request } from "../api.js";
import { $, describeError, say } from "../dom.js";
import { store } from "../store.js";
import { messageShown, taskHidden } from "./actions.js";
import { sayOnList } from "./list-message.js";
import { taskBelongs } from "./query.js";

export const UNDO_MS = 6000;

let pending = null; // {commit(keepalive), undo(), timer}
let hooks = { refresh: () => Promise.resolve(), deleted: () => {} };

/** Wire the toast once. `options`: `refresh()` (list and stats), `deleted(task)` (close its form, drop its draft). */
export function initUndo(options) {
  hooks = options;
  $("toast-undo").addEventListener("click", () => undo());
  $("toast-close").addEventListener("click", () => settle());
  // Leaving the page (reload, tab closed) still sends a delete that was waiting for its toast.
  window.addEventListener("pagehide", () => settle({ keepalive: true }));
}

function showToast(text) {
  const toast = $("toast");
  toast.hidden = false;
  say($("toast-text"), text, "info");
}

function hideToast() {
  $("toast").hidden = true;
  say($("toast-text"), "");
}

/** Start a new undoable action: the previous one is settled (sent) first. */
async function begin(text, action) {
  await settle();
  pending = { ...action, timer: setTimeout(() => settle(), UNDO_MS) };
  showToast(text);
}

/** End the toast and carry out what it held back (a delete). Resolves when that is done. */
export async function settle({ keepalive = false } = {}) {
  const current = pending;
  if (!current) return;
  pending = null;
  clearTimeout(current.timer);
  hideToast();
  await current.commit(keepalive);
}

/** Undo the action of the toast (also the `z` shortcut). Returns false when there is none. */
export async function undo() {
  const current = pending;
  if (!current) return false;
  pending = null;
  clearTimeout(current.timer);
  hideToast();
  await current.undo();
  return true;
}

/** Forget a waiting action without sending it (the session ended: nothing can be sent any more). */
export function dropPending() {
  if (!pending) return;
  clearTimeout(pending.timer);
  pending = null;
  hideToast();
}

function writeErrorText(err, prefix) {
  if (err.status === 404) return `${prefix}: it no longer exists (deleted elsewhere?). The list was refreshed.`;
  if (err.status === 412) return `${prefix}: it was changed elsewhere. The list was refreshed; try again.`;
  return `${prefix}: ${describeError(err)}`;
}

/** Take the row out of view; focus goes to the next row's checkbox (or the previous one's, or the heading). */
function leave(id) {
  const row = document.querySelector(`.task[data-id="${id}"]`);
  const hadFocus = row && row.contains(document.activeElement);
  let next = row && (row.nextElementSibling || row.previousElementSibling);
  while (next && !next.classList.contains("task")) next = next.nextElementSibling;
  taskHidden(id);
  if (hadFocus) {
    const target = next && next.querySelector('[data-action="status"]');
    (target || $("tasks-heading")).focus();
  }
}

/** Mark `task` done (`done` true) or reopen it (back to To do), with an undo toast. */
export async function complete(task, done) {
  await settle();
  const status = done ? "done" : "todo";
  messageShown(task.id, done ? "Marking as done…" : "Reopening…");
  try {
    // No If-Match: changing only the status is safe even if another field changed meanwhile.
    await request("PATCH", `/tasks/${task.id}`, { json: { status } });
  } catch (err) {
    if (err.status === 401) return;
    const text = writeErrorText(err, "Could not change the status");
    if (err.status === 404) sayOnList(text, "error");
    else messageShown(task.id, text, "error", { keep: err.status === 412 });
    hooks.refresh();
    return;
  }
  const leaves = !taskBelongs({ ...task, status }, store.get().query);
  if (leaves) leave(task.id);
  else messageShown(task.id, done ? "Marked as done." : "Reopened: back to To do.", "success", { keep: true });
  // Hidden only until the reload has taken the row away (in another view it may well belong).
  const refreshed = hooks.refresh().then(() => {
    if (leaves) taskHidden(task.id, false);
  });
  await begin(done ? `Completed “${task.title}”.` : `Reopened “${task.title}”.`, {
    commit: async () => {},
    undo: async () => {
      try {
        await request("PATCH", `/tasks/${task.id}`, { json: { status: task.status } });
        taskHidden(task.id, false);
        messageShown(task.id, done ? "Undone: not done." : "Undone: still done.", "info", { keep: true });
        await hooks.refresh();
      } catch (err) {
        taskHidden(task.id, false);
        if (err.status !== 401) sayOnList(writeErrorText(err, "Could not undo"), "error");
        hooks.refresh();
      }
    },
  });
  await refreshed;
}

/** Delete `task` after the undo toast (see above). */
export async function remove(task) {
  await settle();
  leave(task.id);
  await begin(`Deleted “${task.title}”.`, {
    commit: async (keepalive) => {
      try {
        await request("DELETE", `/tasks/${task.id}`, { keepalive });
        if (keepalive) return;
        hooks.deleted(task);
        await hooks.refresh();
        taskHidden(task.id, false); // no longer in the list
      } catch (err) {
        taskHidden(task.id, false);
        if (err.status === 401) return;
        const text = writeErrorText(err, "Could not delete the task");
        if (err.status === 404) {
          sayOnList(text, "error");
          hooks.refresh();
        } else {
          messageShown(task.id, text, "error");
        }
      }
    },
    undo: async () => {
      taskHidden(task.id, false);
      messageShown(task.id, "Not deleted.", "info");
      const back = document.querySelector(`.task[data-id="${task.id}"] [data-action="status"]`);
      if (back) back.focus();
    },
  });
}
