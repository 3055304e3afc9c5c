// The create/edit form and its drafts (what was typed into a form that was left without saving).
import { ApiError, request } from "../api.js";
import { $, say, highlightedFields, showFieldErrors, clearFieldErrors, describeError } from "../dom.js";
import { addDays, currentZone, isoToZonedInputs, todayKey, zonedInputToRfc3339 } from "../dates.js";
import { TITLE_MAX, length, plainFieldErrors } from "../messages.js";
import { store } from "../store.js";
import { draftDropped, draftKept, draftsCleared, messageShown } from "./actions.js";
import { sayOnList } from "./list-message.js";

const BLANK = { title: "", description: "", status: "todo", priority: "medium", due: "", dueTime: "", tags: "" };

// The form's own state; what others read (the drafts) is in the store.
let editing = null; // the task being edited, or null when creating
let baseline = ""; // the form's values (JSON) when it was opened, saved or discarded: "dirty" = different
let userId = null; // whose screen this is (a kept draft is only offered back to the same person)
let draftOwner = null; // set when a save hit an ended session: the form keeps what was typed
let refresh = () => Promise.resolve();

/** Wire the form once. `options.refresh()` reloads the list and the stats after a write. */
export function initEditor(options) {
  refresh = options.refresh;
  $("task-title").addEventListener("input", updateTitleCount);
  $("due-today").addEventListener("click", () => setDueDay(todayKey()));
  $("due-tomorrow").addEventListener("click", () => setDueDay(addDays(todayKey(), 1)));
  $("due-none").addEventListener("click", () => setDueDay(""));
  $("new-task").addEventListener("click", () => openEditor(null));
  $("task-cancel").addEventListener("click", closeEditor);
  $("task-discard").addEventListener("click", discardChanges);
  const form = $("task-form");
  for (const type of ["input", "change"]) form.addEventListener(type, updateDiscardButton);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    saveTask();
  });
  form.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") closeEditor();
  });
  // "New task (draft)" says that a new-task draft is waiting (the rows say it for theirs).
  store.subscribe((state, previous) => {
    if (state.drafts !== previous.drafts) {
      $("new-task").textContent = "new" in state.drafts ? "New task (draft)" : "New task";
    }
  });
}

/** "12 / 200": the title's length as the server counts it; over the limit it turns red and says so. */
function updateTitleCount() {
  const n = length($("task-title").value.trim());
  const count = $("task-title-count");
  count.textContent = n > TITLE_MAX ? `${n} / ${TITLE_MAX}: ${n - TITLE_MAX} too many` : `${n} / ${TITLE_MAX}`;
  count.classList.toggle("count-over", n > TITLE_MAX);
}

function setDueDay(key) {
  $("task-due").value = key;
  if (!key) $("task-due-time").value = "";
  updateDiscardButton();
  $("task-due").focus();
}

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
    dueTime: $("task-due-time").value,
    tags: $("task-tags").value,
  };
}

function setFormValues(v) {
  $("task-title").value = v.title;
  $("task-description").value = v.description;
  $("task-status").value = v.status;
  $("task-priority").value = v.priority;
  $("task-due").value = v.due;
  $("task-due-time").value = v.dueTime || "";
  $("task-tags").value = v.tags;
  updateTitleCount();
}

function valuesOf(task) {
  if (!task) return { ...BLANK };
  return {
    title: task.title,
    description: task.description,
    status: task.status,
    priority: task.priority,
    ...dueInputs(task),
    tags: task.tags.join(", "),
  };
}

/** The form's day and time for `task` in the person's zone; an all-day task has no time. */
function dueInputs(task) {
  if (!task.due_date) return { due: "", dueTime: "" };
  if (task.all_day && task.due_on) return { due: task.due_on, dueTime: "" };
  const { date, time } = isoToZonedInputs(task.due_date);
  return { due: date, dueTime: time };
}

function setBaseline(values) {
  baseline = JSON.stringify(values);
  updateDiscardButton();
}

function isDirty() {
  // A half-typed date (badInput) reads as "" but is still something the person typed.
  return JSON.stringify(formValues()) !== baseline || $("task-due").validity.badInput || $("task-due-time").validity.badInput;
}

function updateDiscardButton() {
  $("task-discard").hidden = $("editor").hidden || !isDirty();
}

function setHeading() {
  $("editor-heading").textContent = editing ? "Edit task" : "New task";
  $("task-save").textContent = editing ? "Save changes" : "Create task";
}

/** Keep what the open form holds as a draft when it differs from what it was opened with. */
function stashDraft() {
  if ($("editor").hidden) return false;
  const key = draftKey(editing);
  const dirty = isDirty();
  if (dirty) draftKept(key, formValues());
  else draftDropped(key);
  return dirty;
}

/** Open the form for `task` (null: a new task), with its draft if one was kept. */
export function openEditor(task) {
  const form = $("task-form");
  const editor = $("editor");
  const msg = $("task-form-msg");
  const reopenSame = !editor.hidden && draftKey(editing) === draftKey(task);
  $("task-due-tz").textContent = currentZone();
  if (!reopenSame) {
    stashDraft(); // switching from another task (or from "New task") keeps what was typed there
    editing = task;
    clearFieldErrors(form);
    say(msg, "");
    form.reset();
    const base = valuesOf(task);
    const draft = store.get().drafts[draftKey(task)];
    setFormValues(draft || base);
    if (draft) {
      draftDropped(draftKey(task));
      say(msg, "Your unsaved changes are back. Save them, or choose “Discard changes”.", "info");
    }
    editor.hidden = false;
    setBaseline(base);
  }
  setHeading();
  editor.hidden = false;
  editor.scrollIntoView({ block: "nearest" });
  $("task-title").focus();
}

/** Close the form (Close, Escape). Nothing typed is lost: a changed form is kept as a draft. */
function closeEditor() {
  const wasEditing = editing;
  const kept = stashDraft();
  $("editor").hidden = true;
  editing = null;
  if (kept) {
    sayOnList(
      wasEditing
        ? `Your changes to “${wasEditing.title}” are kept as a draft: choose “Edit (draft)” to go on.`
        : "What you typed is kept as a draft: choose “New task (draft)” to go on.",
      "info",
      { ms: 8000 },
    );
  }
  const back = wasEditing && document.querySelector(`.task[data-id="${wasEditing.id}"] [data-action="status"]`);
  (back || $("new-task")).focus();
}

/** Drop the draft and go back to the task as it is now (the refreshed list has the latest version). */
function discardChanges() {
  const form = $("task-form");
  draftDropped(draftKey(editing));
  if (editing) editing = store.get().list.byId[editing.id] || editing;
  form.reset();
  const base = valuesOf(editing);
  setFormValues(base);
  setBaseline(base);
  clearFieldErrors(form);
  say($("task-form-msg"), "Changes discarded.", "info");
  $("task-title").focus();
}

/** A task was deleted from its row: its form closes and its draft goes. */
export function taskDeleted(task) {
  if (editing && editing.id === task.id) {
    $("editor").hidden = true;
    editing = null;
  }
  draftDropped(task.id);
}

/**
 * The body of POST / PATCH. A day without a time is sent as "YYYY-MM-DD" (an all-day task, due that
 * day in the person's zone); with a time, as RFC 3339 with the zone's offset on that day.
 */
function readForm() {
  const day = $("task-due").value;
  const time = $("task-due-time").value;
  const tags = $("task-tags").value.split(",").map((t) => t.trim()).filter(Boolean);
  return {
    title: $("task-title").value,
    description: $("task-description").value,
    status: $("task-status").value,
    priority: $("task-priority").value,
    due_date: day ? (time ? zonedInputToRfc3339(day, time) : day) : null,
    tags,
  };
}

/** Mistakes the form can see before asking the server: [{field, msg}]. */
function checkForm() {
  const problems = [];
  const n = length($("task-title").value.trim());
  if (n === 0) problems.push({ field: "title", msg: "Give the task a title." });
  if (n > TITLE_MAX) problems.push({ field: "title", msg: `The title has ${n} characters; shorten it to ${TITLE_MAX} or fewer.` });
  if ($("task-due").validity.badInput) problems.push({ field: "due_date", msg: "Enter a complete date (the time is optional), or leave it empty." });
  else if ($("task-due-time").validity.badInput || ($("task-due-time").value && !$("task-due").value)) {
    problems.push({ field: "due_date", msg: "A time needs a date: pick the day too, or clear the time." });
  }
  return problems;
}

async function saveTask() {
  const form = $("task-form");
  const msg = $("task-form-msg");
  const save = $("task-save");
  clearFieldErrors(form);
  const problems = checkForm();
  if (problems.length) {
    const { first, count } = showFieldErrors(form, "task", problems);
    say(msg, highlightedFields(count), "error");
    if (first) first.focus();
    return;
  }
  const body = readForm();
  const task = editing;
  save.disabled = true;
  say(msg, task ? "Saving…" : "Creating…", "info");
  try {
    if (task) {
      const { data } = await request("PATCH", `/tasks/${task.id}`, {
        json: body, headers: { "If-Match": `"${task.version}"` },
      });
      messageShown(data.id, "Changes saved.", "success", { keep: true });
      sayOnList(`Saved “${data.title}”.`, "success");
      $("editor").hidden = true;
      editing = null;
      draftDropped(data.id);
      await refresh();
      const item = document.querySelector(`.task[data-id="${data.id}"] [data-action="status"]`);
      (item || $("tasks-heading")).focus();
    } else {
      const { data } = await request("POST", "/tasks", {
        json: body, headers: { "Idempotency-Key": crypto.randomUUID() },
      });
      form.reset();
      updateTitleCount();
      setBaseline(valuesOf(null));
      say(msg, `Created “${data.title}”. Add another, or close the form.`, "success");
      messageShown(data.id, "Created.", "success", { keep: true });
      $("task-title").focus();
      await refresh();
    }
  } catch (err) {
    if (err.status === 401) {
      draftOwner = userId; // the sign-in screen is showing; the form keeps the text
      return;
    }
    handleSaveError(err, form, msg, body);
  } finally {
    save.disabled = false;
  }
}

function handleSaveError(err, form, msg, body) {
  if (err instanceof ApiError && err.status === 422) {
    const { first, unplaced, count } = showFieldErrors(form, "task", plainFieldErrors(err, body));
    const extra = unplaced.length ? " " + unplaced.join("; ") : "";
    say(msg, (first ? highlightedFields(count) : "The task was not saved.") + extra, "error");
    if (first) first.focus();
    return;
  }
  if (err.status === 412) {
    say(msg, "Not saved: this task was changed elsewhere. Your text is kept. Choose “Discard changes” to load the latest version, or close the form and choose Edit again to apply your text to it.", "error");
    refresh();
    return;
  }
  if (err.status === 404) {
    say(msg, "Not saved: this task no longer exists (deleted elsewhere?).", "error");
    refresh();
    return;
  }
  say(msg, "Not saved: " + describeError(err), "error");
}

/** Entering the app as `userId`: offer back a form that an ended session interrupted, if it is theirs. */
export function startEditorFor(id) {
  const keep = draftOwner !== null && draftOwner === id;
  if (userId !== id) draftsCleared(); // drafts belong to the person who typed them
  userId = id;
  draftOwner = null;
  if (!keep) {
    $("task-form").reset();
    clearFieldErrors($("task-form"));
    editing = null;
    updateTitleCount();
    return;
  }
  draftDropped(draftKey(editing)); // the open form is the draft now
  $("editor").hidden = false;
  updateDiscardButton();
  setHeading();
  say($("task-form-msg"), "Your session had ended, so this was not saved yet. What you typed is kept: save again.", "error");
}

/**
 * Leaving the screen. On an ended session (`keepDraft`) the form's fields stay: a save that hit the
 * 401 keeps the open form for the same person (see startEditorFor), any other changed form is kept
 * as a draft. On a sign-out the form and every draft are cleared.
 */
export function resetEditor({ keepDraft }) {
  if (keepDraft && draftOwner === null) stashDraft();
  $("editor").hidden = true;
  if (!keepDraft) {
    draftOwner = null;
    editing = null;
    $("task-form").reset();
    draftsCleared();
  }
  say($("task-form-msg"), "");
}
