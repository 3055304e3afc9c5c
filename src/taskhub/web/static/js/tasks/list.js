// The task list: loading a page, and showing it row by row, keyed by task id.
//
// The view subscribes to the store and patches the DOM: a row is built once per task id and then
// re-rendered only when its task object (or whether it is overdue, or has a draft) changed; rows are
// moved, added and removed one by one. `taskUpserted(task)` / `taskRemoved(id)` (actions.js)
// therefore touch one row, and a reload leaves the rows of unchanged tasks as they are.
import { request } from "../api.js";
import { $, h, say, describeError } from "../dom.js";
import { dayLabel, dueInfo, longDay, todayKey } from "../dates.js";
import { PAGE_SIZE, store } from "../store.js";
import { listLoaded, queryChanged } from "./actions.js";
import { loadSucceeded, sayLoadFailed } from "./list-message.js";
import { apiQuery, hasFilters } from "./query.js";
import { isOverdue, renderRow, rowMessageLine } from "./row.js";

const rows = new Map(); // task id -> {el, task, overdue, draft, day, msg, message}
let hooks = null;
let loadSeq = 0;

/**
 * Start the view. `options`: `urlChanged()` (the page was corrected after a load),
 * `edit(task | null)` (open the form), `deleted(task)` and `refresh()` (see row.js).
 */
export function initList(options) {
  hooks = options;
  store.subscribe((state, previous) => {
    if (
      state.list !== previous.list || state.drafts !== previous.drafts ||
      state.messages !== previous.messages || state.hidden !== previous.hidden || state.stats !== previous.stats
    ) {
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

function render({ list, drafts, messages, hidden, query }) {
  const el = $("task-list");
  for (const head of el.querySelectorAll(".day-head")) head.remove(); // drawn again below
  const ids = list.ids.filter((id) => !hidden[id]);
  const today = todayKey();
  // Moving or re-rendering a row takes focus away from the button in it: it is given back below.
  let focus = el.contains(document.activeElement) ? document.activeElement : null;
  const wanted = new Set(ids);
  for (const [id, row] of rows) {
    if (!wanted.has(id)) {
      row.el.remove();
      rows.delete(id);
    }
  }
  let next = el.firstElementChild; // the rows before it are in place
  for (const id of ids) {
    const before = rows.get(id);
    const row = upsertRow(list.byId[id], id in drafts, today);
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
  if (query.view === "today" || query.view === "upcoming") drawDayHeads(el, ids.map((id) => list.byId[id]), today);
  if (focus && focus.isConnected && document.activeElement !== focus) focus.focus({ preventScroll: true });
  const shownTotal = Math.max(0, list.total - (list.ids.length - ids.length));
  renderFooter({ ...list, total: shownTotal });
}

/** Today: "Overdue" and "Today"; Upcoming: one heading per day. Headings are not rows (not keyed). */
function drawDayHeads(el, tasks, today) {
  let last = null;
  for (const task of tasks) {
    const due = dueInfo(task);
    if (!due) continue;
    const key = due.key < today ? "overdue" : due.key;
    if (key === last) continue;
    last = key;
    const text = key === "overdue" ? "Overdue" : `${dayLabel(key, today)} · ${longDay(key)}`;
    const head = h("li", { class: key === "overdue" ? "day-head day-head-overdue" : "day-head", "aria-hidden": "false" },
      h("h2", { text }));
    el.insertBefore(head, rows.get(task.id).el);
  }
}

/** The row of `task`: the one already shown when nothing it shows changed, else a fresh one in its place. */
function upsertRow(task, draft, day) {
  const look = { overdue: isOverdue(task), draft, day };
  const row = rows.get(task.id);
  if (row && row.task === task && row.overdue === look.overdue && row.draft === look.draft && row.day === day) return row;
  const msg = row ? row.msg : rowMessageLine(); // the message line stays with its task
  const fresh = renderRow(task, look, msg, hooks);
  if (row) row.el.replaceWith(fresh);
  const updated = { el: fresh, task, ...look, msg, message: row ? row.message : undefined };
  rows.set(task.id, updated);
  return updated;
}

/** What an empty, unfiltered view says and offers: [title, text, button label, button action]. */
function emptyWords({ query, stats }) {
  const create = () => hooks.quickAdd();
  const none = !stats || stats.total === 0;
  switch (query.view) {
    case "today":
      return ["Nothing due today", "Enjoy the day, or add a task due today.", "Add a task", create];
    case "upcoming":
      return ["Nothing in the next 7 days", "Tasks due this week show here, day by day.", "Add a task", create];
    case "completed":
      return ["No completed tasks yet", "Tick a task's box to complete it; it shows here with the time.", "Go to Inbox", () => { location.hash = "#/tasks"; }];
    default:
      return none
        ? ["No tasks yet", "Create your first task: type it in the line above, e.g. “Call Ann tomorrow 5pm !high #family”.", "Create a task", () => hooks.edit(null)]
        : ["All done", "Every task is complete. Add the next one above.", "Add a task", create];
  }
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
      const [title, text, label, act] = emptyWords(store.get());
      $("empty-title").textContent = title;
      $("empty-text").textContent = text;
      action.textContent = label;
      action.onclick = act;
    }
  }
  const lastPage = Math.max(1, Math.ceil(list.total / PAGE_SIZE));
  $("list-count").textContent = list.loaded ? `${list.total} ${list.total === 1 ? "task" : "tasks"}` : "";
  $("pager").hidden = !list.loaded || lastPage <= 1; // no pager for a single page
  $("page-info").textContent = `Page ${list.page} of ${lastPage} · ${list.total} ${list.total === 1 ? "task" : "tasks"}`;
  $("page-prev").disabled = list.page <= 1;
  $("page-next").disabled = list.page >= lastPage;
}
