// The task list: loading a page, and showing it row by row, keyed by task id.
//
// The view subscribes to the store and patches the DOM: a row is built once per task id and then
// re-rendered only when its task object (or whether it is overdue, or has a draft) changed; rows are
// moved, added and removed one by one. `taskUpserted(task)` / `taskRemoved(id)` (actions.js)
// therefore touch one row, and a reload leaves the rows of unchanged tasks as they are.
import { request } from "../api.js";
import { $, say, describeError } from "../dom.js";
import { PAGE_SIZE, store } from "../store.js";
import { listLoaded, queryChanged } from "./actions.js";
import { loadSucceeded, sayLoadFailed } from "./list-message.js";
import { apiQuery, hasFilters } from "./query.js";
import { isOverdue, renderRow, rowMessageLine } from "./row.js";

const rows = new Map(); // task id -> {el, task, overdue, draft, msg, message}
let hooks = null;
let loadSeq = 0;

/**
 * Start the view. `options`: `urlChanged()` (the page was corrected after a load),
 * `edit(task | null)` (open the form), `deleted(task)` and `refresh()` (see row.js).
 */
export function initList(options) {
  hooks = options;
  store.subscribe((state, previous) => {
    if (state.list !== previous.list || state.drafts !== previous.drafts || state.messages !== previous.messages) {
      render(state);
    }
  });
}

/** Fetch the page the query names; a page past the end (its last task went) falls back to the last page. */
export async function loadList() {
  const seq = ++loadSeq;
  const list = $("task-list");
  list.setAttribute("aria-busy", "true");
  const query = store.get().query;
  try {
    const { data } = await request("GET", "/tasks", { query: apiQuery(query) });
    if (seq !== loadSeq) return;
    const lastPage = Math.max(1, Math.ceil(data.total / PAGE_SIZE));
    if (data.items.length === 0 && query.page > lastPage) {
      queryChanged({ page: lastPage });
      hooks.urlChanged();
      await loadList();
      return;
    }
    loadSucceeded();
    listLoaded({ items: data.items, total: data.total, page: query.page, filtered: hasFilters(query) });
  } catch (err) {
    if (seq !== loadSeq || err.status === 401) return;
    sayLoadFailed("Could not load your tasks: " + describeError(err));
  } finally {
    if (seq === loadSeq) list.removeAttribute("aria-busy");
  }
}

function render({ list, drafts, messages }) {
  const el = $("task-list");
  // Moving or re-rendering a row takes focus away from the button in it: it is given back below.
  let focus = el.contains(document.activeElement) ? document.activeElement : null;
  const wanted = new Set(list.ids);
  for (const [id, row] of rows) {
    if (!wanted.has(id)) {
      row.el.remove();
      rows.delete(id);
    }
  }
  let next = el.firstElementChild; // the rows before it are in place
  for (const id of list.ids) {
    const before = rows.get(id);
    const row = upsertRow(list.byId[id], id in drafts);
    if (before && before.el === next) next = row.el; // re-rendered where it stood
    if (focus && before && before.el !== row.el && before.el.contains(focus)) {
      focus = row.el.querySelector(`[data-action="${focus.dataset.action}"]`); // the same button, re-rendered
    }
    if (row.el === next) next = next.nextElementSibling;
    else el.insertBefore(row.el, next);
    const message = messages[id];
    if (message?.text !== row.message?.text || message?.kind !== row.message?.kind) {
      say(row.msg, message ? message.text : "", message ? message.kind : "info");
    }
    row.message = message;
  }
  if (focus && focus.isConnected && document.activeElement !== focus) focus.focus({ preventScroll: true });
  renderFooter(list);
}

/** The row of `task`: the one already shown when nothing it shows changed, else a fresh one in its place. */
function upsertRow(task, draft) {
  const look = { overdue: isOverdue(task), draft };
  const row = rows.get(task.id);
  if (row && row.task === task && row.overdue === look.overdue && row.draft === look.draft) return row;
  const msg = row ? row.msg : rowMessageLine(); // the message line stays with its task
  const fresh = renderRow(task, look, msg, hooks);
  if (row) row.el.replaceWith(fresh);
  const updated = { el: fresh, task, ...look, msg, message: row ? row.message : undefined };
  rows.set(task.id, updated);
  return updated;
}

function renderFooter(list) {
  const empty = $("empty-state");
  empty.hidden = !list.loaded || list.total !== 0;
  if (!empty.hidden) {
    const action = $("empty-action");
    if (list.filtered) {
      $("empty-title").textContent = "No tasks match these filters";
      $("empty-text").textContent = "Try another search or clear the filters to see all of your tasks.";
      action.textContent = "Clear filters";
      action.onclick = () => $("filters-clear").click();
    } else {
      $("empty-title").textContent = "No tasks yet";
      $("empty-text").textContent = "Create your first task: give it a title, and optionally a due date and tags.";
      action.textContent = "Create a task";
      action.onclick = () => hooks.edit(null);
    }
  }
  const lastPage = Math.max(1, Math.ceil(list.total / PAGE_SIZE));
  $("pager").hidden = !list.loaded || list.total === 0;
  $("page-info").textContent = `Page ${list.page} of ${lastPage} · ${list.total} ${list.total === 1 ? "task" : "tasks"}`;
  $("page-prev").disabled = list.page <= 1;
  $("page-next").disabled = list.page >= lastPage;
}
