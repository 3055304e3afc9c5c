// The Tasks screen: wires its modules together; app.js talks to it and to nothing else under tasks/.
//
//   query.js    filters, sort and page <-> the filter controls, the URL and the API query
//   list.js     loads a page and shows it keyed by task id (row.js: one row and its buttons)
//   editor.js   the create/edit form and its drafts
//   stats.js    the stats panel
//   actions.js  every change to the store's task slices (store.js), e.g. taskUpserted / taskRemoved
import { $, say } from "../dom.js";
import { tasksCleared } from "./actions.js";
import { initEditor, openEditor, resetEditor, startEditorFor, taskDeleted } from "./editor.js";
import { initList, loadList } from "./list.js";
import { clearListMessage } from "./list-message.js";
import { initQuery, setQueryFromUrl as readQuery } from "./query.js";
import { initStats, loadStats } from "./stats.js";

export { urlQuery } from "./query.js";

/** Re-fetch the list and the stats (after a write, on tab focus, on entering the screen). */
export function refreshTasks() {
  return Promise.all([loadList(), loadStats()]);
}

/** Wire the screen once. `urlChanged()` is told when the filters or the page change (to update the URL). */
export function initTasks({ urlChanged }) {
  initQuery({
    changed({ focus }) {
      clearListMessage();
      urlChanged();
      const loading = loadList();
      if (focus) loading.then(() => $("tasks-heading").focus());
    },
  });
  initList({ urlChanged, edit: openEditor, deleted: taskDeleted, refresh: refreshTasks });
  initEditor({ refresh: refreshTasks });
  initStats();
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
  resetEditor({ keepDraft });
  tasksCleared();
  clearListMessage();
  say($("stats-msg"), "");
}
