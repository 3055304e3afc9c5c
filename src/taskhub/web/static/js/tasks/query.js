// The Tasks screen's query (view, filters, sort, page): the controls, the URL and the API call.
import { $ } from "../dom.js";
import { addDays, dayKey, startOfDayIso, todayKey } from "../dates.js";
import { DEFAULT_SORT, EMPTY_QUERY, PAGE_SIZE, VIEWS, store } from "../store.js";
import { queryChanged } from "./actions.js";

let searchTimer = null;

/** Each view's own order when the person chose none (Upcoming is always by due date: it is grouped by day). */
const VIEW_SORT = { inbox: DEFAULT_SORT, today: "due_date", upcoming: "due_date", completed: "-updated_at", all: DEFAULT_SORT };

export const VIEW_TITLES = { inbox: "Inbox", today: "Today", upcoming: "Upcoming", completed: "Completed", all: "All tasks" };

const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** The sort the list is shown in: the person's choice, else the view's own. */
export function effectiveSort(query) {
  if (query.view === "upcoming") return "due_date";
  return query.sort || VIEW_SORT[query.view] || DEFAULT_SORT;
}

/**
 * Wire the filter form and the pager buttons. `changed({focus})` is told after the person changed
 * the query (the caller updates the URL and loads the list; `focus`: move focus to the heading after).
 */
export function initQuery({ changed }) {
  const filters = $("filters");
  const apply = () => {
    if (applyFilters()) changed({ focus: false });
  };
  filters.addEventListener("submit", (ev) => {
    ev.preventDefault();
    apply();
  });
  for (const id of ["filter-status", "filter-priority", "filter-sort", "filter-due-from", "filter-due-to", "filter-overdue"]) {
    $(id).addEventListener("change", apply);
  }
  for (const id of ["filter-q", "filter-tag"]) {
    $(id).addEventListener("input", () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(apply, 300);
    });
  }
  $("filters-clear").addEventListener("click", () => {
    filters.reset();
    $("filter-sort").value = VIEW_SORT[store.get().query.view] || DEFAULT_SORT;
    apply();
    $("filter-q").focus();
  });
  const turn = (delta) => () => {
    queryChanged({ page: Math.max(1, store.get().query.page + delta) });
    changed({ focus: true });
  };
  $("page-prev").addEventListener("click", turn(-1));
  $("page-next").addEventListener("click", turn(1));
}

/** A clicked tag filters the list by it (in the current view, from page 1). */
export function filterByTag(tag) {
  $("filter-tag").value = tag;
  $("more-filters").open = true;
  return applyFilters();
}

/** Read the filter controls into the query (back to page 1); false when nothing changed. */
function applyFilters() {
  clearTimeout(searchTimer);
  const { page, view, ...current } = store.get().query;
  const sort = $("filter-sort").value;
  const next = {
    q: $("filter-q").value.trim(),
    status: view === "all" ? $("filter-status").value : "",
    priority: $("filter-priority").value,
    tag: $("filter-tag").value.trim().toLowerCase(),
    due_from: $("filter-due-from").value,
    due_to: $("filter-due-to").value,
    overdue: $("filter-overdue").checked,
    sort: sort === VIEW_SORT[view] ? "" : sort,
  };
  if (JSON.stringify(next) === JSON.stringify(current)) return false;
  queryChanged({ ...next, page: 1 });
  return true;
}

/** View, filters and page from the URL's query (e.g. #/tasks?view=today&tag=home); true when they changed. */
export function setQueryFromUrl(params) {
  const before = urlQuery().toString();
  const page = Number.parseInt(params.get("page") || "1", 10);
  let view = params.get("view") || "inbox";
  if (!VIEWS.includes(view)) view = "inbox";
  if (params.get("status") && !params.get("view")) view = "all"; // links from before views existed
  const day = (name) => (DAY.test(params.get(name) || "") ? params.get(name) : "");
  const next = {
    ...EMPTY_QUERY,
    view,
    q: params.get("q") || "",
    status: view === "all" ? params.get("status") || "" : "",
    priority: params.get("priority") || "",
    tag: (params.get("tag") || "").toLowerCase(),
    due_from: day("due_from"),
    due_to: day("due_to"),
    overdue: params.get("overdue") === "true",
    sort: params.get("sort") || "",
    page: Number.isFinite(page) && page >= 1 ? page : 1,
  };
  const sortSelect = $("filter-sort");
  sortSelect.value = next.sort;
  if (!next.sort || sortSelect.value !== next.sort || next.sort === VIEW_SORT[view]) next.sort = ""; // unknown or the view's own
  sortSelect.value = effectiveSort(next);
  $("filter-q").value = next.q;
  $("filter-status").value = next.status;
  $("filter-priority").value = next.priority;
  $("filter-tag").value = next.tag;
  $("filter-due-from").value = next.due_from;
  $("filter-due-to").value = next.due_to;
  $("filter-overdue").checked = next.overdue;
  queryChanged(next);
  showView(next);
  return urlQuery().toString() !== before;
}

/** The view's tab, heading, and which controls apply to it. */
function showView(query) {
  for (const v of VIEWS) {
    const link = $(`view-${v}`);
    if (v === query.view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  $("tasks-heading").textContent = VIEW_TITLES[query.view];
  $("field-status").hidden = query.view !== "all";
  $("filter-sort").disabled = query.view === "upcoming";
  $("field-overdue").hidden = query.view === "completed" || query.view === "upcoming";
  $("more-filters").open = $("more-filters").open || Boolean(query.tag || query.due_from || query.due_to || query.overdue || query.priority);
}

/** The query as the URL shows it: defaults left out. */
export function urlQuery() {
  const q = store.get().query;
  const p = new URLSearchParams();
  if (q.view !== "inbox") p.set("view", q.view);
  if (q.q) p.set("q", q.q);
  if (q.status) p.set("status", q.status);
  if (q.priority) p.set("priority", q.priority);
  if (q.tag) p.set("tag", q.tag);
  if (q.due_from) p.set("due_from", q.due_from);
  if (q.due_to) p.set("due_to", q.due_to);
  if (q.overdue) p.set("overdue", "true");
  if (q.sort) p.set("sort", q.sort);
  if (q.page > 1) p.set("page", String(q.page));
  return p;
}

/**
 * The query of `GET /tasks` for `query`, "today" being today in the person's zone (dates.js).
 * Day bounds are local midnights: `due_after` is strict, so it is sent 1 µs before the first day's
 * midnight (an all-day task of the day before is due at its last microsecond, 23:59:59.999999, and
 * stays out); `due_before` (strict too) is the midnight after the last day.
 */
export function apiQuery(query, now = Date.now()) {
  const p = new URLSearchParams();
  const today = todayKey(now);
  const open = () => {
    p.append("status", "todo");
    p.append("status", "in_progress");
  };
  const after = (key) => p.set("due_after", justBefore(key));
  const before = (key) => p.set("due_before", startOfDayIso(addDays(key, 1)));
  if (query.view === "inbox") open();
  else if (query.view === "today") {
    open();
    before(today);
  } else if (query.view === "upcoming") {
    open();
    after(today);
    before(addDays(today, 6));
  } else if (query.view === "completed") p.set("status", "done");
  else if (query.status === "open") open();
  else if (query.status) p.set("status", query.status);
  if (query.q) p.set("q", query.q);
  if (query.priority) p.set("priority", query.priority);
  if (query.tag) p.set("tag", query.tag);
  // The person's own day range narrows the view's (the later start and the earlier end win).
  if (query.due_from && (!p.get("due_after") || Date.parse(startOfDayIso(query.due_from)) > Date.parse(p.get("due_after")))) {
    after(query.due_from);
  }
  if (query.due_to && (!p.get("due_before") || Date.parse(startOfDayIso(addDays(query.due_to, 1))) < Date.parse(p.get("due_before")))) {
    before(query.due_to);
  }
  if (query.overdue && query.view !== "completed" && query.view !== "upcoming") p.set("overdue", "true");
  p.set("sort", effectiveSort(query));
  p.set("limit", String(PAGE_SIZE));
  p.set("page", String(query.page));
  return p;
}

/**
 * Would `task` be listed in `query`'s view (status and, for Today / Upcoming, its due day)? Used
 * where a task changed without a list load (a checkbox, a live event): the row leaves at once.
 * Search, tag and the other filters are left to the next load.
 */
export function taskBelongs(task, query, now = Date.now()) {
  const done = task.status === "done";
  if (query.view === "completed") return done;
  if (query.view === "all") {
    return !query.status || query.status === task.status || (query.status === "open" && !done);
  }
  if (done) return false;
  if (query.view === "today" || query.view === "upcoming") {
    if (!task.due_date) return false;
    const due = task.all_day && task.due_on ? task.due_on : dayKeyOf(task.due_date);
    const today = todayKey(now);
    return query.view === "today" ? due <= today : due >= today && due <= addDays(today, 6);
  }
  return true;
}

function dayKeyOf(iso) {
  return dayKey(new Date(iso).getTime());
}

/** One microsecond before local midnight at the start of `key`: "2027-03-11T10:59:59.999999Z". */
function justBefore(key) {
  return new Date(Date.parse(startOfDayIso(key)) - 1000).toISOString().replace(/\.\d{3}Z$/, ".999999Z");
}

/** A search or a filter narrows the list (the view and the sort do not). */
export function hasFilters(query) {
  return Boolean(query.q || query.status || query.priority || query.tag || query.due_from || query.due_to || query.overdue);
}
