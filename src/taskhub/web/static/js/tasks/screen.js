// The Tasks screen: wires its modules together; app.js talks to it and to nothing else under tasks/.
//
//   query.js    view, filters, sort and page <-> the controls, the URL and the API query
//   list.js     loads a page and shows it keyed by task id (row.js: one row and its controls)
//   undo.js     complete / reopen / delete with an undo toast
//   quickadd.js the quick-add line and its chips
//   shortcuts.js the keyboard shortcuts (q, /, j, k, x, e, z, ?)
//   editor.js   the create/edit form and its drafts
//   stats.js    the stats panel
//   actions.js  every change to the store's task slices (store.js), e.g. taskUpserted / taskRemoved
import { $, say } from "../dom.js";
import { tasksCleared } from "./actions.js";
import { initEditor, openEditor, resetEditor, startEditorFor, taskDeleted } from "./editor.js";
import { initList, loadList } from "./list.js";
import { clearListMessage } from "./list-message.js";
import { filterByTag, initQuery, setQueryFromUrl as readQuery } from "./query.js";
import { focusQuickAdd, initQuickAdd } from "./quickadd.js";
import { initShortcuts } from "./shortcuts.js";
import { initStats, loadStats } from "./stats.js";
import { complete, dropPending, initUndo, remove, settle, undo } from "./undo.js";

export { settle as settleUndo } from "./undo.js";

export { urlQuery } from "./query.js";

/** Re-fetch the list and the stats (after a write, on tab focus, on entering the screen). */
export function refreshTasks() {
  return Promise.all([loadList(), loadStats()]);
}

/** Wire the screen once. `urlChanged()` is told when the filters or the page change (to update the URL). */
export function initTasks({ urlChanged }) {
  const changed = ({ focus }) => {
    clearListMessage();
    urlChanged();
    const loading = loadList();
    if (focus) loading.then(() => $("tasks-heading").focus());
  };
  initQuery({ changed });
  initList({
    urlChanged,
    edit: openEditor,
    complete,
    remove,
    quickAdd: focusQuickAdd,
    filterTag(tag) {
      if (filterByTag(tag)) changed({ focus: true });
    },
  });
  initUndo({ refresh: refreshTasks, deleted: taskDeleted });
  initQuickAdd({ refresh: refreshTasks });
  initEditor({ refresh: refreshTasks });
  initStats();
  initShortcuts({ edit: openEditor, complete, remove, undo, quickAdd: focusQuickAdd, settle });
}

/** Filters and page from the URL's query (e.g. #/tasks?status=todo&page=2). */
export function setQueryFromUrl(params) {
  // A list-level message ("Saved …", "Deleted …") is about the list as it was.
  if (readQuery(params)) clearListMessage();
}

/** Called on entering the app as `userId`: offer back a draft that an ended session interrupted. */
export function startTasksFor(userId) {
  startEditorFor(userId);
}

/**
 * Leave the screen. On an ended session the form's fields stay (a save that hit the 401 keeps its
 * draft for the same person, see startTasksFor); on a sign-out (`keepDraft` false) they are cleared.
 */
export function resetTasksScreen({ keepDraft }) {
  dropPending();
  resetEditor({ keepDraft });
  tasksCleared();
  clearListMessage();
  say($("stats-msg"), "");
}
