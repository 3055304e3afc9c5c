// The dashboard's one store: what more than one module reads lives here, nowhere else.

/**
 * A small observable state container.
 *
 * - `get()`: the current state, a frozen plain object. Read it; never change it in place.
 * - `set(patch)`: a new state with the top-level keys of `patch` replaced (a shallow merge), then
 *   every subscriber is told. A slice is replaced, never mutated, so a subscriber finds what changed
 *   by identity (`state.list !== previous.list`), and the list view finds the changed rows the same
 *   way (`list.byId[id] !== previous.list.byId[id]`).
 * - `subscribe(listener)`: `listener(state, previous)` runs synchronously after each `set()`, in the
 *   order of subscription; `previous` is the state that listener saw last. Returns `unsubscribe()`.
 *
 * A listener may call `set()` itself: the nested change is sent to every listener first, and the
 * outer round then skips listeners that have already seen the newest state, so no listener ever
 * gets an older state after a newer one.
 */
export function createStore(initial) {
  let state = Object.freeze({ ...initial });
  const subscriptions = new Set();

  function notify() {
    for (const sub of [...subscriptions]) {
      if (!subscriptions.has(sub) || sub.seen === state) continue;
      const previous = sub.seen;
      sub.seen = state;
      sub.listener(state, previous);
    }
  }

  return {
    get: () => state,
    set(patch) {
      state = Object.freeze({ ...state, ...patch });
      notify();
    },
    subscribe(listener) {
      const sub = { listener, seen: state };
      subscriptions.add(sub);
      return () => subscriptions.delete(sub);
    },
  };
}

export const PAGE_SIZE = 25; // tasks per page of the list (the API's `limit`)
export const DEFAULT_SORT = "-created_at"; // newest first; left out of the URL
export const VIEWS = ["inbox", "today", "upcoming", "completed", "all"]; // "inbox" is left out of the URL
export const EMPTY_QUERY = Object.freeze({
  view: "inbox", q: "", status: "", priority: "", tag: "", due_from: "", due_to: "", overdue: false, sort: "", page: 1,
});
export const EMPTY_LIST = Object.freeze({ loaded: false, ids: [], byId: {}, total: 0, page: 1, filtered: false });

/**
 * The state of the dashboard. Only the functions of `tasks/actions.js` change it; each slice is
 * replaced as a whole.
 *
 * - `query`: `{view, q, status, priority, tag, due_from, due_to, overdue, sort, page}`, the Tasks
 *   screen's view, filters and page as in the URL. `view`: "inbox" (all open tasks), "today" (open,
 *   due today or overdue in the person's zone), "upcoming" (open, due in the next 7 days),
 *   "completed", "all". `status` (only in "all") may be "open". `due_from` / `due_to`: days
 *   ("YYYY-MM-DD", inclusive) in the person's zone. `sort` "" is the view's own order.
 * - `list`: the shown page of tasks, keyed by id: `{loaded, ids, byId, total, page, filtered}` —
 *   `ids` in display order, `byId` id -> task (`TaskRead` of the API), `total` the count over all
 *   pages, `page` and `filtered` (a search or filter was set) as of the load that filled it.
 *   `loaded` is false until the first load (nothing is shown, not even "No tasks yet").
 * - `messages`: task id -> `{text, kind, keep}`, the message line under that task's row; `keep`
 *   means it survives the next list load (which clears the others).
 * - `drafts`: "new" or a task id -> the form's values kept when a changed form was closed.
 * - `stats`: the last `GET /tasks/stats` answer, or null.
 * - `hidden`: task id -> true for rows taken out of view while their undo toast runs (a delete is
 *   sent only when the toast ends); a load does not bring them back.
 */
export const store = createStore({
  query: EMPTY_QUERY,
  list: EMPTY_LIST,
  messages: {},
  drafts: {},
  stats: null,
  hidden: {},
});
