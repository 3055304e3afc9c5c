// Every change to the store's task slices, named for what happened. No DOM and no HTTP here:
// the views subscribe to the store and patch what changed (see store.js for the slices).
import { EMPTY_LIST, PAGE_SIZE, store } from "../store.js";

/** Two answers of the API for the same task say the same thing (same fields, same values). */
function sameTask(a, b) {
  return a === b || (a !== undefined && JSON.stringify(a) === JSON.stringify(b));
}

/** View, filters and/or page changed (`patch`: some of the keys of `query`, see store.js). */
export function queryChanged(patch) {
  store.set({ query: { ...store.get().query, ...patch } });
}

/**
 * A page of `GET /tasks` arrived: `{items, total}` plus the `page` it is and whether it was
 * `filtered`. A task whose fields did not change keeps its object, so its row is left as it is
 * (even if it moved); only new or changed tasks get a new row. Row messages are cleared except
 * the ones set to survive this load (`messageShown(..., {keep: true})`), which survive only it.
 */
export function listLoaded({ items, total, page, filtered }) {
  const { list, messages } = store.get();
  const byId = {};
  for (const task of items) byId[task.id] = sameTask(list.byId[task.id], task) ? list.byId[task.id] : task;
  const kept = {};
  for (const [id, message] of Object.entries(messages)) {
    if (message.keep && id in byId) kept[id] = { ...message, keep: false };
  }
  store.set({
    list: { loaded: true, ids: items.map((t) => t.id), byId, total, page, filtered },
    messages: kept,
  });
}

/**
 * This is the task as it is now (e.g. an event from the server): only its row changes.
 *
 * A shown task is replaced in place; its row is re-rendered and every other row is left alone.
 * A task that is not shown is inserted at index `at` (default 0, the top: where a new task goes in
 * the default newest-first order) and counted in `total`; when the page is then over `PAGE_SIZE`,
 * its last row goes. Whether a task belongs on this page at all (filters, sort, paging) is the
 * server's to say: the next list load puts every row where it belongs, still keeping the nodes of
 * unchanged rows. Before the first load nothing happens (that load brings the task). Returns true
 * when a row was added.
 */
export function taskUpserted(task, { at = 0 } = {}) {
  const { list } = store.get();
  if (!list.loaded) return false;
  if (list.ids.includes(task.id)) {
    if (!sameTask(list.byId[task.id], task)) store.set({ list: { ...list, byId: { ...list.byId, [task.id]: task } } });
    return false;
  }
  const ids = [...list.ids];
  ids.splice(Math.max(0, Math.min(at, ids.length)), 0, task.id);
  const byId = { ...list.byId, [task.id]: task };
  for (const dropped of ids.splice(PAGE_SIZE)) delete byId[dropped];
  store.set({ list: { ...list, ids, byId, total: list.total + 1 } });
  return true;
}

/** The task is gone (deleted here or elsewhere): its row and its message go, `total` counts one less. */
export function taskRemoved(id) {
  const { list, messages } = store.get();
  if (!list.ids.includes(id)) return;
  const byId = { ...list.byId };
  delete byId[id];
  const rest = { ...messages };
  delete rest[id];
  store.set({
    list: { ...list, ids: list.ids.filter((x) => x !== id), byId, total: Math.max(0, list.total - 1) },
    messages: rest,
  });
}

/**
 * Show `text` in the message line of task `id`'s row ("" clears it); kind: "success" | "error" | "info".
 * `keep`: the message also survives the next list load (a write's outcome, said before the reload).
 */
export function messageShown(id, text, kind = "info", { keep = false } = {}) {
  const { messages } = store.get();
  const rest = { ...messages };
  if (text) rest[id] = { text, kind, keep };
  else delete rest[id];
  store.set({ messages: rest });
}

/** A changed form was left: keep its `values` under `key` ("new" or the task's id). */
export function draftKept(key, values) {
  store.set({ drafts: { ...store.get().drafts, [key]: values } });
}

/** The draft under `key` was restored into the form, saved or discarded. */
export function draftDropped(key) {
  const { drafts } = store.get();
  if (!(key in drafts)) return;
  const rest = { ...drafts };
  delete rest[key];
  store.set({ drafts: rest });
}

/** Drafts belong to the person who typed them: forget them all (sign-out, another person). */
export function draftsCleared() {
  if (Object.keys(store.get().drafts).length) store.set({ drafts: {} });
}

/** `GET /tasks/stats` answered. */
export function statsLoaded(stats) {
  store.set({ stats });
}

/** Take task `id`'s row out of view (an undo toast runs) or, with `false`, put it back. */
export function taskHidden(id, hide = true) {
  const hidden = { ...store.get().hidden };
  if (hide) hidden[id] = true;
  else delete hidden[id];
  store.set({ hidden });
}

/** The screen was left (sign-out, ended session): no rows, messages or stats stay on it. */
export function tasksCleared() {
  store.set({ list: EMPTY_LIST, messages: {}, stats: null, hidden: {} });
}
