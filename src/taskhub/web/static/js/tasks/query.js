// The Tasks screen's query (filters, sort, page): the filter controls, the URL and the API call.
import { $ } from "../dom.js";
import { DEFAULT_SORT, PAGE_SIZE, store } from "../store.js";
import { queryChanged } from "./actions.js";

let searchTimer = null;

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
  for (const id of ["filter-status", "filter-priority", "filter-sort"]) $(id).addEventListener("change", apply);
  $("filter-q").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(apply, 300);
  });
  $("filters-clear").addEventListener("click", () => {
    filters.reset();
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

/** Read the filter controls into the query (back to page 1); false when nothing changed. */
function applyFilters() {
  clearTimeout(searchTimer);
  const { page, ...current } = store.get().query;
  const next = {
    q: $("filter-q").value.trim(),
    status: $("filter-status").value,
    priority: $("filter-priority").value,
    sort: $("filter-sort").value,
  };
  if (JSON.stringify(next) === JSON.stringify(current)) return false;
  queryChanged({ ...next, page: 1 });
  return true;
}

/** Filters and page from the URL's query (e.g. #/tasks?status=todo&page=2); true when they changed. */
export function setQueryFromUrl(params) {
  const before = urlQuery().toString();
  const page = Number.parseInt(params.get("page") || "1", 10);
  const next = {
    q: params.get("q") || "",
    status: params.get("status") || "",
    priority: params.get("priority") || "",
    sort: params.get("sort") || DEFAULT_SORT,
    page: Number.isFinite(page) && page >= 1 ? page : 1,
  };
  $("filter-q").value = next.q;
  $("filter-status").value = next.status;
  $("filter-priority").value = next.priority;
  $("filter-sort").value = next.sort;
  if ($("filter-sort").value !== next.sort) next.sort = $("filter-sort").value = DEFAULT_SORT; // unknown sort
  queryChanged(next);
  return urlQuery().toString() !== before;
}

/** The query as the URL shows it: defaults left out. */
export function urlQuery() {
  const q = store.get().query;
  const p = new URLSearchParams();
  if (q.q) p.set("q", q.q);
  if (q.status) p.set("status", q.status);
  if (q.priority) p.set("priority", q.priority);
  if (q.sort !== DEFAULT_SORT) p.set("sort", q.sort);
  if (q.page > 1) p.set("page", String(q.page));
  return p;
}

/** The query of `GET /tasks` for `query` ("open" is sent as two `status` values). */
export function apiQuery(query) {
  const p = new URLSearchParams();
  if (query.q) p.set("q", query.q);
  if (query.status === "open") {
    p.append("status", "todo");
    p.append("status", "in_progress");
  } else if (query.status) {
    p.set("status", query.status);
  }
  if (query.priority) p.set("priority", query.priority);
  p.set("sort", query.sort);
  p.set("limit", String(PAGE_SIZE));
  p.set("page", String(query.page));
  return p;
}

/** A search or a filter narrows the list (the sort does not). */
export function hasFilters(query) {
  return Boolean(query.q || query.status || query.priority);
}
