// Keyboard shortcuts of the Tasks screen (listed in the help dialog, `?`):
//   q  quick add      /  search       j / k  next / previous task
//   x  complete or reopen the current task     e  edit it     #  delete it (with undo)
//   z  undo           ?  this list
// They are ignored while typing in a field, with Ctrl/Alt/Meta held, and while a dialog is open,
// so they never take a letter away from text or from the browser's own shortcuts.
import { $ } from "../dom.js";
import { store } from "../store.js";

let hooks = null;

/** Wire the keys once. `options`: `{edit(task), complete(task, done), remove(task), undo(), quickAdd()}`. */
export function initShortcuts(options) {
  hooks = options;
  document.addEventListener("keydown", onKey);
  $("help-close").addEventListener("click", () => $("help-dialog").close());
  $("help-open").addEventListener("click", () => $("help-dialog").showModal());
}

function typing(target) {
  if (!(target instanceof Element)) return false;
  return Boolean(target.closest("input, textarea, select, [contenteditable]")) && !target.matches("input[type=checkbox]");
}

function rowEls() {
  return [...document.querySelectorAll("#task-list > li.task")];
}

/** The row the person is on: the one holding focus, else none. */
function currentRow() {
  const active = document.activeElement;
  return active instanceof Element ? active.closest("#task-list > li.task") : null;
}

function taskOf(row) {
  return row ? store.get().list.byId[row.dataset.id] || null : null;
}

function move(delta) {
  const rows = rowEls();
  if (!rows.length) return;
  const at = rows.indexOf(currentRow());
  const next = at === -1 ? (delta > 0 ? 0 : rows.length - 1) : Math.max(0, Math.min(rows.length - 1, at + delta));
  rows[next].focus();
  rows[next].scrollIntoView({ block: "nearest" });
}

function onKey(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.defaultPrevented) return;
  if ($("screen-tasks").hidden || document.querySelector("dialog[open]")) return;
  if (typing(ev.target)) return;
  const row = currentRow();
  const task = taskOf(row);
  switch (ev.key) {
    case "q":
      hooks.quickAdd();
      break;
    case "/":
      $("filter-q").focus();
      break;
    case "j":
      move(1);
      break;
    case "k":
      move(-1);
      break;
    case "x":
      if (!task) return;
      hooks.complete(task, task.status !== "done");
      break;
    case "e":
      if (!task) return;
      hooks.edit(task);
      break;
    case "#":
      if (!task) return;
      hooks.remove(task);
      break;
    case "z":
      hooks.undo();
      break;
    case "?":
      $("help-dialog").showModal();
      break;
    default:
      return;
  }
  ev.preventDefault(); // "/" would otherwise open the browser's quick find; "q" would be typed
}
