// The task list, the create/edit form and the stats chart.
import { ApiError, request } from "./api.js";
import {
  $, h, clear, say, sayBriefly, highlightedFields, showFieldErrors, clearFieldErrors, confirmDialog, describeError, formatDateTime,
  localInputToRfc3339, rfc3339ToLocalInput, timeZoneName, STATUS_LABELS, PRIORITY_LABELS,
} from "./dom.js";

const PAGE_SIZE = 10;
const DEFAULT_SORT = "-created_at";

const state = {
  filters: { q: "", status: "", priority: "", sort: DEFAULT_SORT },
  page: 1,
  total: 0,
  items: [],
  editing: null, // the task being edited, or null when creating
  flash: null, // {id, text, kind}: a message to show on one task after the list re-renders
  userId: null, // whose screen this is (a kept draft is only offered back to the same person)
  draftOwner: null, // set when a save hit an ended session: the form keeps what was typed
  listSeq: 0,
  statsSeq: 0,
  listMsgFromLoad: false, // #list-msg holds a "could not load" error (cleared by the next good load)
  baseline: "", // the form's values (JSON) when it was opened, saved or discarded: "dirty" = different
};

// Unsaved form contents left with Escape/Close (or by opening another task): "new" or a task id ->
// {values}. Reopening the same form restores them; "Discard changes" drops them.
const drafts = new Map();

let searchTimer = null;
let onUrlChange = () => {};

/** Wire the screen's controls once. `urlChanged` is told when filters/page change (to update the URL). */
export function initTasks({ urlChanged }) {
  onUrlChange = urlChanged;
  $("task-due-tz").textContent = timeZoneName();

  const filters = $("filters");
  filters.addEventListener("submit", (ev) => {
    ev.preventDefault();
    applyFilters();
  });
  for (const id of ["filter-status", "filter-priority", "filter-sort"]) {
    $(id).addEventListener("change", applyFilters);
  }
  $("filter-q").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(applyFilters, 300);
  });
  $("filters-clear").addEventListener("click", () => {
    filters.reset();
    applyFilters();
    $("filter-q").focus();
  });
  $("page-prev").addEventListener("click", () => goToPage(state.page - 1));
  $("page-next").addEventListener("click", () => goToPage(state.page + 1));
  $("new-task").addEventListener("click", () => openEditor(null));
  $("task-cancel").addEventListener("click", closeEditor);
  $("task-discard").addEventListener("click", discardChanges);
  for (const type of ["input", "change"]) $("task-form").addEventListener(type, updateDiscardButton);
  $("task-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    saveTask();
  });
  $("task-form").addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") closeEditor();
  });
}

/** Filters and page from the URL's query (e.g. #/tasks?status=todo&page=2). */
export function setQueryFromUrl(params) {
  const f = state.filters;
  const before = urlQuery().toString();
  f.q = params.get("q") || "";
  f.status = params.get("status") || "";
  f.priority = params.get("priority") || "";
  f.sort = params.get("sort") || DEFAULT_SORT;
  const page = Number.parseInt(params.get("page") || "1", 10);
  state.page = Number.isFinite(page) && page >= 1 ? page : 1;
  $("filter-q").value = f.q;
  $("filter-status").value = f.status;
  $("filter-priority").value = f.priority;
  $("filter-sort").value = f.sort;
  if ($("filter-sort").value !== f.sort) f.sort = $("filter-sort").value = DEFAULT_SORT;
  if (urlQuery().toString() !== before) clearListMessage();
}

/** A list-level message ("Saved …", "Deleted …") is about the list as it was: drop it when the view changes. */
function clearListMessage() {
  say($("list-msg"), "");
  state.listMsgFromLoad = false;
}

export function urlQuery() {
  const p = new URLSearchParams();
  const f = state.filters;
  if (f.q) p.set("q", f.q);
  if (f.status) p.set("status", f.status);
  if (f.priority) p.set("priority", f.priority);
  if (f.sort !== DEFAULT_SORT) p.set("sort", f.sort);
  if (state.page > 1) p.set("page", String(state.page));
  return p;
}

function applyFilters() {
  clearTimeout(searchTimer);
  const f = state.filters;
  const next = {
    q: $("filter-q").value.trim(),
    status: $("filter-status").value,
    priority: $("filter-priority").value,
    sort: $("filter-sort").value,
  };
  if (JSON.stringify(next) === JSON.stringify(f)) return;
  Object.assign(f, next);
  state.page = 1;
  clearListMessage();
  onUrlChange();
  loadList();
}

function goToPage(page) {
  state.page = Math.max(1, page);
  clearListMessage();
  onUrlChange();
  loadList().then(() => $("tasks-heading").focus());
}

function hasFilters() {
  const f = state.filters;
  return Boolean(f.q || f.status || f.priority);
}

function listQuery() {
  const p = new URLSearchParams();
  const f = state.filters;
  if (f.q) p.set("q", f.q);
  if (f.status === "open") {
    p.append("status", "todo");
    p.append("status", "in_progress");
  } else if (f.status) {
    p.set("status", f.status);
  }
  if (f.priority) p.set("priority", f.priority);
  p.set("sort", f.sort);
  p.set("limit", String(PAGE_SIZE));
  p.set("page", String(state.page));
  return p;
}

/** Re-fetch the list and the stats (after a write, on tab focus, on entering the screen). */
export function refreshTasks() {
  return Promise.all([loadList(), loadStats()]);
}

export async function loadList() {
  const seq = ++state.listSeq;
  const list = $("task-list");
  list.setAttribute("aria-busy", "true");
  try {
    const { data } = await request("GET", "/tasks", { query: listQuery() });
    if (seq !== state.listSeq) return;
    const lastPage = Math.max(1, Math.ceil(data.total / PAGE_SIZE));
    if (data.items.length === 0 && state.page > lastPage) {
      // The page emptied (e.g. its last task was deleted): show the last page that has tasks.
      state.page = lastPage;
      onUrlChange();
      await loadList();
      return;
    }
    state.items = data.items;
    state.total = data.total;
    if (state.listMsgFromLoad) clearListMessage();
    renderList();
  } catch (err) {
    if (seq !== state.listSeq || err.status === 401) return;
    say($("list-msg"), "Could not load your tasks: " + describeError(err), "error");
    state.listMsgFromLoad = true;
  } finally {
    if (seq === state.listSeq) list.removeAttribute("aria-busy");
  }
}

function renderList() {
  const list = $("task-list");
  clear(list);
  for (const task of state.items) list.append(renderTask(task));
  state.flash = null;

  const empty = $("empty-state");
  if (state.total === 0) {
    empty.hidden = false;
    const action = $("empty-action");
    if (hasFilters()) {
      $("empty-title").textContent = "No tasks match these filters";
      $("empty-text").textContent = "Try another search or clear the filters to see all of your tasks.";
      action.textContent = "Clear filters";
      action.onclick = () => $("filters-clear").click();
    } else {
      $("empty-title").textContent = "No tasks yet";
      $("empty-text").textContent = "Create your first task: give it a title, and optionally a due date and tags.";
      action.textContent = "Create a task";
      action.onclick = () => openEditor(null);
    }
  } else {
    empty.hidden = true;
  }

  const lastPage = Math.max(1, Math.ceil(state.total / PAGE_SIZE));
  $("pager").hidden = state.total === 0;
  $("page-info").textContent =
    `Page ${state.page} of ${lastPage} · ${state.total} ${state.total === 1 ? "task" : "tasks"}`;
  $("page-prev").disabled = state.page <= 1;
  $("page-next").disabled = state.page >= lastPage;
}

function isOverdue(task) {
  return task.status !== "done" && task.due_date && new Date(task.due_date).getTime() < Date.now();
}

function editButton(task) {
  const hasDraft = drafts.has(task.id);
  return h("button", {
    type: "button", class: "btn btn-small btn-edit", text: hasDraft ? "Edit (draft)" : "Edit",
    "aria-label": `${hasDraft ? "Edit (unsaved draft)" : "Edit"}: ${task.title}`,
    onclick: () => openEditor(task),
  });
}

/** Show on "New task" and on each task's Edit button whether an unsaved draft is waiting there. */
function updateDraftMarkers() {
  $("new-task").textContent = drafts.has("new") ? "New task (draft)" : "New task";
  for (const task of state.items) {
    const old = document.querySelector(`.task[data-id="${task.id}"] .btn-edit`);
    if (old) {
      const focused = document.activeElement === old;
      const fresh = editButton(task);
      old.replaceWith(fresh);
      if (focused) fresh.focus();
    }
  }
}

function renderTask(task) {
  const msg = h("p", { class: "msg task-msg", role: "status" });
  if (state.flash && state.flash.id === task.id) say(msg, state.flash.text, state.flash.kind);

  const meta = h(
    "p",
    { class: "task-meta" },
    h("span", { class: `badge status-${task.status}`, text: STATUS_LABELS[task.status] || task.status }),
    h("span", { class: `badge prio-${task.priority}`, text: `${PRIORITY_LABELS[task.priority] || task.priority} priority` }),
    task.due_date
      ? h("span", { class: "due", text: "Due " + formatDateTime(task.due_date) })
      : null,
    isOverdue(task) ? h("span", { class: "badge overdue", text: "Overdue" }) : null,
  );
  const tags = task.tags.length
    ? h("ul", { class: "tags", "aria-label": "Tags" }, task.tags.map((t) => h("li", { class: "tag", text: t })))
    : null;

  const title = h("h3", { class: "task-title", text: task.title });
  const done = task.status === "done";
  const actions = h(
    "div",
    { class: "task-actions" },
    h("button", {
      type: "button",
      class: done ? "btn btn-small" : "btn btn-small btn-success",
      text: done ? "Reopen" : "Mark done",
      "aria-label": `${done ? "Reopen" : "Mark done"}: ${task.title}`,
      onclick: (ev) => setStatus(task, done ? "todo" : "done", msg, ev.currentTarget),
    }),
    editButton(task),
    h("button", {
      type: "button", class: "btn btn-small btn-danger-quiet", text: "Delete", "aria-label": `Delete: ${task.title}`,
      onclick: () => deleteTask(task, msg),
    }),
  );
  return h(
    "li",
    { class: done ? "task task-done" : "task", dataset: { id: task.id } },
    h(
      "div",
      { class: "task-body" },
      title,
      task.description ? h("p", { class: "task-desc", text: task.description }) : null,
      meta,
      tags,
    ),
    actions,
    msg,
  );
}

async function setStatus(task, status, msg, button) {
  button.disabled = true;
  say(msg, status === "done" ? "Marking as done…" : "Reopening…", "info");
  try {
    // No If-Match: changing only the status is safe even if another field changed meanwhile.
    await request("PATCH", `/tasks/${task.id}`, { json: { status } });
    state.flash = {
      id: task.id,
      text: status === "done" ? "Marked as done." : "Reopened: back to To do.",
      kind: "success",
    };
    await refreshTasks();
  } catch (err) {
    button.disabled = false;
    if (err.status === 401) return;
    const text = writeErrorText(err, "Could not change the status");
    if (err.status === 404) {
      say($("list-msg"), text, "error"); // the task is gone from the refreshed list
      refreshTasks();
    } else if (err.status === 412) {
      state.flash = { id: task.id, text, kind: "error" }; // survives the re-render
      refreshTasks();
    } else {
      say(msg, text, "error");
    }
  }
}

async function deleteTask(task, msg) {
  const confirmed = await confirmDialog({
    title: "Delete this task?",
    text: `“${task.title}” will be deleted. This cannot be undone.`,
    confirmLabel: "Delete task",
  });
  if (!confirmed) {
    say(msg, "Not deleted.", "info");
    return;
  }
  say(msg, "Deleting…", "info");
  try {
    await request("DELETE", `/tasks/${task.id}`);
    if (state.editing && state.editing.id === task.id) {
      $("editor").hidden = true;
      state.editing = null;
    }
    drafts.delete(task.id);
    updateDraftMarkers();
    say($("list-msg"), `Deleted “${task.title}”.`, "success");
    await refreshTasks();
    $("tasks-heading").focus();
  } catch (err) {
    if (err.status === 401) return;
    const text = writeErrorText(err, "Could not delete the task");
    if (err.status === 404) {
      say($("list-msg"), text, "error");
      refreshTasks();
    } else {
      say(msg, text, "error");
    }
  }
}

function writeErrorText(err, prefix) {
  if (err.status === 404) return `${prefix}: it no longer exists (deleted elsewhere?). The list was refreshed.`;
  if (err.status === 412) return `${prefix}: it was changed elsewhere. The list was refreshed; try again.`;
  return `${prefix}: ${describeError(err)}`;
}

// ---- editor -------------------------------------------------------------------------------------

const BLANK = { title: "", description: "", status: "todo", priority: "medium", due: "", tags: "" };

function draftKey(task) {
  return task ? task.id : "new";
}

/** The form's raw values (what the person sees), used for drafts and for "is it dirty?". */
function formValues() {
  return {
    title: $("task-title").value,
    description: $("task-description").value,
    status: $("task-status").value,
    priority: $("task-priority").value,
    due: $("task-due").value,
    tags: $("task-tags").value,
  };
}

function setFormValues(v) {
  $("task-title").value = v.title;
  $("task-description").value = v.description;
  $("task-status").value = v.status;
  $("task-priority").value = v.priority;
  $("task-due").value = v.due;
  $("task-tags").value = v.tags;
}

function valuesOf(task) {
  if (!task) return { ...BLANK };
  return {
    title: task.title,
    description: task.description,
    status: task.status,
    priority: task.priority,
    due: rfc3339ToLocalInput(task.due_date),
    tags: task.tags.join(", "),
  };
}

function setBaseline(values) {
  state.baseline = JSON.stringify(values);
  updateDiscardButton();
}

function isDirty() {
  // A half-typed date (badInput) reads as "" but is still something the person typed.
  return JSON.stringify(formValues()) !== state.baseline || $("task-due").validity.badInput;
}

function updateDiscardButton() {
  $("task-discard").hidden = $("editor").hidden || !isDirty();
}

/** Keep what the open form holds as a draft when it differs from what it was opened with. */
function stashDraft() {
  if ($("editor").hidden) return false;
  const key = draftKey(state.editing);
  const dirty = isDirty();
  if (dirty) drafts.set(key, { values: formValues() });
  else drafts.delete(key);
  updateDraftMarkers();
  return dirty;
}

function openEditor(task) {
  const form = $("task-form");
  const editor = $("editor");
  const msg = $("task-form-msg");
  const reopenSame = !editor.hidden && draftKey(state.editing) === draftKey(task);
  if (!reopenSame) {
    stashDraft(); // switching from another task (or from "New task") keeps what was typed there
    state.editing = task;
    clearFieldErrors(form);
    say(msg, "");
    form.reset();
    const base = valuesOf(task);
    const draft = drafts.get(draftKey(task));
    setFormValues(draft ? draft.values : base);
    if (draft) {
      drafts.delete(draftKey(task));
      say(msg, "Your unsaved changes are back. Save them, or choose “Discard changes”.", "info");
    }
    editor.hidden = false;
    setBaseline(base);
    updateDraftMarkers();
  }
  $("editor-heading").textContent = task ? "Edit task" : "New task";
  $("task-save").textContent = task ? "Save changes" : "Create task";
  editor.hidden = false;
  editor.scrollIntoView({ block: "nearest" });
  $("task-title").focus();
}

/** Close the form (Close, Escape). Nothing typed is lost: a changed form is kept as a draft. */
function closeEditor() {
  const wasEditing = state.editing;
  const kept = stashDraft();
  $("editor").hidden = true;
  state.editing = null;
  if (kept) {
    sayBriefly(
      $("list-msg"),
      wasEditing
        ? `Your changes to “${wasEditing.title}” are kept as a draft: choose “Edit (draft)” to go on.`
        : "What you typed is kept as a draft: choose “New task (draft)” to go on.",
      "info",
      8000,
    );
  }
  const back = wasEditing && document.querySelector(`.task[data-id="${wasEditing.id}"] .btn`);
  (back || $("new-task")).focus();
}

/** Drop the draft and go back to the task as it is now (the refreshed list has the latest version). */
function discardChanges() {
  const form = $("task-form");
  drafts.delete(draftKey(state.editing));
  if (state.editing) state.editing = state.items.find((t) => t.id === state.editing.id) || state.editing;
  form.reset();
  const base = valuesOf(state.editing);
  setFormValues(base);
  setBaseline(base);
  clearFieldErrors(form);
  say($("task-form-msg"), "Changes discarded.", "info");
  updateDraftMarkers();
  $("task-title").focus();
}

function readForm() {
  const due = localInputToRfc3339($("task-due").value);
  const tags = $("task-tags").value.split(",").map((t) => t.trim()).filter(Boolean);
  return {
    title: $("task-title").value,
    description: $("task-description").value,
    status: $("task-status").value,
    priority: $("task-priority").value,
    due_date: due === undefined ? null : due,
    tags,
  };
}

async function saveTask() {
  const form = $("task-form");
  const msg = $("task-form-msg");
  const save = $("task-save");
  clearFieldErrors(form);
  if ($("task-due").validity.badInput) {
    showFieldErrors(form, "task", [{ field: "due_date", msg: "Enter a complete date and time, or leave it empty." }]);
    say(msg, highlightedFields(1), "error");
    $("task-due").focus();
    return;
  }
  const body = readForm();
  const editing = state.editing;
  save.disabled = true;
  say(msg, editing ? "Saving…" : "Creating…", "info");
  try {
    if (editing) {
      const { data } = await request("PATCH", `/tasks/${editing.id}`, {
        json: body, headers: { "If-Match": `"${editing.version}"` },
      });
      state.flash = { id: data.id, text: "Changes saved.", kind: "success" };
      say($("list-msg"), `Saved “${data.title}”.`, "success");
      $("editor").hidden = true;
      state.editing = null;
      drafts.delete(data.id);
      await refreshTasks();
      const item = document.querySelector(`.task[data-id="${data.id}"] .btn`);
      (item || $("tasks-heading")).focus();
    } else {
      const { data } = await request("POST", "/tasks", {
        json: body, headers: { "Idempotency-Key": crypto.randomUUID() },
      });
      form.reset();
      setBaseline(valuesOf(null));
      say(msg, `Created “${data.title}”. Add another, or close the form.`, "success");
      state.flash = { id: data.id, text: "Created.", kind: "success" };
      $("task-title").focus();
      await refreshTasks();
    }
  } catch (err) {
    if (err.status === 401) {
      state.draftOwner = state.userId; // the sign-in screen is showing; the form keeps the text
      return;
    }
    handleSaveError(err, form, msg);
  } finally {
    save.disabled = false;
  }
}

function handleSaveError(err, form, msg) {
  if (err instanceof ApiError && err.status === 422) {
    const { first, unplaced, count } = showFieldErrors(form, "task", err.fieldErrors());
    const extra = unplaced.length ? " " + unplaced.join("; ") : "";
    say(msg, (first ? highlightedFields(count) : "The task was not saved.") + extra, "error");
    if (first) first.focus();
    return;
  }
  if (err.status === 412) {
    say(msg, "Not saved: this task was changed elsewhere. Your text is kept. Choose “Discard changes” to load the latest version, or close the form and choose Edit again to apply your text to it.", "error");
    refreshTasks();
    return;
  }
  if (err.status === 404) {
    say(msg, "Not saved: this task no longer exists (deleted elsewhere?).", "error");
    refreshTasks();
    return;
  }
  say(msg, "Not saved: " + describeError(err), "error");
}

// ---- stats ----------------------------------------------------------------------------------------

export async function loadStats() {
  const seq = ++state.statsSeq;
  try {
    const { data } = await request("GET", "/tasks/stats");
    if (seq !== state.statsSeq) return;
    say($("stats-msg"), "");
    renderStats(data);
  } catch (err) {
    if (seq !== state.statsSeq || err.status === 401) return;
    say($("stats-msg"), "Could not load the stats: " + describeError(err), "error");
  }
}

function barChart(caption, rows, total) {
  const max = Math.max(1, ...rows.map((r) => r.value));
  return h(
    "figure",
    { class: "chart" },
    h("figcaption", { text: caption }),
    h(
      "ul",
      { class: "bars" },
      rows.map((r) => {
        const fill = h("span", { class: `bar-fill ${r.cls}` });
        fill.style.width = `${(r.value / max) * 100}%`; // CSSOM, allowed by the CSP
        const pct = total ? Math.round((r.value / total) * 100) : 0;
        return h(
          "li",
          { class: "bar", dataset: { key: r.key } },
          h("span", { class: "bar-label", text: r.label }),
          h("span", { class: "bar-track", "aria-hidden": "true" }, fill),
          h("span", { class: "bar-value", text: String(r.value), title: `${pct}% of all tasks` }),
        );
      }),
    ),
  );
}

function renderStats(s) {
  const body = $("stats-body");
  clear(body);
  body.append(
    h(
      "dl",
      { class: "stat-figures" },
      h("div", { class: "figure" }, h("dt", { text: "Total" }), h("dd", { id: "stat-total", text: String(s.total) })),
      h(
        "div",
        { class: s.overdue ? "figure figure-warn" : "figure" },
        h("dt", { text: "Overdue" }),
        h("dd", { id: "stat-overdue", text: String(s.overdue) }),
      ),
      h(
        "div",
        { class: "figure" },
        h("dt", { text: "Done, 7 days" }),
        h("dd", { id: "stat-week", text: String(s.completed_last_7_days) }),
      ),
    ),
    barChart(
      "By status",
      ["todo", "in_progress", "done"].map((k) => ({
        key: k, label: STATUS_LABELS[k], value: s.by_status[k], cls: `status-${k}`,
      })),
      s.total,
    ),
    barChart(
      "By priority",
      ["high", "medium", "low"].map((k) => ({
        key: k, label: PRIORITY_LABELS[k], value: s.by_priority[k], cls: `prio-${k}`,
      })),
      s.total,
    ),
  );
}

/** Called on entering the app as `userId`: offer back a draft that an ended session interrupted. */
export function startTasksFor(userId) {
  const keep = state.draftOwner !== null && state.draftOwner === userId;
  if (state.userId !== userId) drafts.clear(); // drafts belong to the person who typed them
  state.userId = userId;
  state.draftOwner = null;
  updateDraftMarkers();
  if (!keep) {
    $("task-form").reset();
    clearFieldErrors($("task-form"));
    state.editing = null;
    return;
  }
  drafts.delete(draftKey(state.editing)); // the open form is the draft now
  $("editor").hidden = false;
  updateDiscardButton();
  updateDraftMarkers();
  $("editor-heading").textContent = state.editing ? "Edit task" : "New task";
  $("task-save").textContent = state.editing ? "Save changes" : "Create task";
  say($("task-form-msg"), "Your session had ended, so this was not saved yet. What you typed is kept: save again.", "error");
}

/**
 * Leave the screen. On an ended session the form's fields stay (a save that hit the 401 keeps its
 * draft for the same person, see startTasksFor); on a sign-out (`keepDraft` false) they are cleared.
 */
export function resetTasksScreen({ keepDraft }) {
  // A save that hit the 401 keeps the open form itself (draftOwner); any other open, changed form is
  // kept as a draft for the same person.
  if (keepDraft && state.draftOwner === null) stashDraft();
  $("editor").hidden = true;
  if (!keepDraft) {
    state.draftOwner = null;
    state.editing = null;
    $("task-form").reset();
    drafts.clear();
    $("new-task").textContent = "New task";
  }
  state.listMsgFromLoad = false;
  clear($("task-list"));
  clear($("stats-body"));
  for (const id of ["list-msg", "stats-msg", "task-form-msg"]) say($(id), "");
}
