// One task's row in the list (keyed by its id) and what its buttons do.
import { request } from "../api.js";
import { $, h, confirmDialog, describeError, formatDateTime, STATUS_LABELS, PRIORITY_LABELS } from "../dom.js";
import { messageShown } from "./actions.js";
import { sayOnList } from "./list-message.js";

/** Not done and due in the past (now): the row shows "Overdue". */
export function isOverdue(task) {
  return task.status !== "done" && Boolean(task.due_date) && new Date(task.due_date).getTime() < Date.now();
}

/**
 * The `<li class="task" data-id>` of `task`. `look`: `{overdue, draft}` as computed by the list,
 * `msg`: the row's message line (kept across re-renders of the same task, so a message stays put),
 * `hooks`: `{edit(task), deleted(task), refresh()}` from the screen. Each button has a `data-action`
 * ("status", "edit", "delete") so focus can move to the same button of a re-rendered row.
 */
export function renderRow(task, look, msg, hooks) {
  const done = task.status === "done";
  const meta = h(
    "p",
    { class: "task-meta" },
    h("span", { class: `badge status-${task.status}`, text: STATUS_LABELS[task.status] || task.status }),
    h("span", { class: `badge prio-${task.priority}`, text: `${PRIORITY_LABELS[task.priority] || task.priority} priority` }),
    task.due_date ? h("span", { class: "due", text: "Due " + formatDateTime(task.due_date) }) : null,
    look.overdue ? h("span", { class: "badge overdue", text: "Overdue" }) : null,
  );
  const tags = task.tags.length
    ? h("ul", { class: "tags", "aria-label": "Tags" }, task.tags.map((t) => h("li", { class: "tag", text: t })))
    : null;
  const actions = h(
    "div",
    { class: "task-actions" },
    h("button", {
      type: "button",
      class: done ? "btn btn-small" : "btn btn-small btn-success",
      "data-action": "status",
      text: done ? "Reopen" : "Mark done",
      "aria-label": `${done ? "Reopen" : "Mark done"}: ${task.title}`,
      onclick: (ev) => setStatus(task, done ? "todo" : "done", ev.currentTarget, hooks),
    }),
    h("button", {
      type: "button",
      class: "btn btn-small btn-edit",
      "data-action": "edit",
      text: look.draft ? "Edit (draft)" : "Edit",
      "aria-label": `${look.draft ? "Edit (unsaved draft)" : "Edit"}: ${task.title}`,
      onclick: () => hooks.edit(task),
    }),
    h("button", {
      type: "button",
      class: "btn btn-small btn-danger-quiet",
      "data-action": "delete",
      text: "Delete",
      "aria-label": `Delete: ${task.title}`,
      onclick: () => deleteTask(task, hooks),
    }),
  );
  return h(
    "li",
    { class: done ? "task task-done" : "task", dataset: { id: task.id } },
    h(
      "div",
      { class: "task-body" },
      h("h3", { class: "task-title", text: task.title }),
      task.description ? h("p", { class: "task-desc", text: task.description }) : null,
      meta,
      tags,
    ),
    actions,
    msg,
  );
}

/** A new, empty message line for a row. */
export function rowMessageLine() {
  return h("p", { class: "msg task-msg", role: "status" });
}

function writeErrorText(err, prefix) {
  if (err.status === 404) return `${prefix}: it no longer exists (deleted elsewhere?). The list was refreshed.`;
  if (err.status === 412) return `${prefix}: it was changed elsewhere. The list was refreshed; try again.`;
  return `${prefix}: ${describeError(err)}`;
}

async function setStatus(task, status, button, hooks) {
  button.disabled = true;
  messageShown(task.id, status === "done" ? "Marking as done…" : "Reopening…");
  try {
    // No If-Match: changing only the status is safe even if another field changed meanwhile.
    await request("PATCH", `/tasks/${task.id}`, { json: { status } });
    const text = status === "done" ? "Marked as done." : "Reopened: back to To do.";
    messageShown(task.id, text, "success", { keep: true });
    await hooks.refresh();
  } catch (err) {
    button.disabled = false;
    if (err.status === 401) return;
    const text = writeErrorText(err, "Could not change the status");
    if (err.status === 404) {
      sayOnList(text, "error"); // the task is gone from the refreshed list
      hooks.refresh();
    } else if (err.status === 412) {
      messageShown(task.id, text, "error", { keep: true });
      hooks.refresh();
    } else {
      messageShown(task.id, text, "error");
    }
  }
}

async function deleteTask(task, hooks) {
  const confirmed = await confirmDialog({
    title: "Delete this task?",
    text: `“${task.title}” will be deleted. This cannot be undone.`,
    confirmLabel: "Delete task",
  });
  if (!confirmed) {
    messageShown(task.id, "Not deleted.");
    return;
  }
  messageShown(task.id, "Deleting…");
  try {
    await request("DELETE", `/tasks/${task.id}`);
    hooks.deleted(task);
    sayOnList(`Deleted “${task.title}”.`, "success");
    await hooks.refresh();
    $("tasks-heading").focus();
  } catch (err) {
    if (err.status === 401) return;
    const text = writeErrorText(err, "Could not delete the task");
    if (err.status === 404) {
      sayOnList(text, "error");
      hooks.refresh();
    } else {
      messageShown(task.id, text, "error");
    }
  }
}
