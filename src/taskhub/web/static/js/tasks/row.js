// One task's row in the list (keyed by its id): a one-tap checkbox, the title, one line of facts
// (due day, priority, tags), and Edit / Delete (behind "More" on phones).
import { h, PRIORITY_LABELS } from "../dom.js";
import { dueInfo, whenLabel } from "../dates.js";

/** Not done and past its due (an all-day task: from the day after, in the person's zone). */
export function isOverdue(task, now = Date.now()) {
  const due = dueInfo(task, now);
  return Boolean(due && due.overdue);
}

/**
 * The `<li class="task" data-id>` of `task`. `look`: `{overdue, draft, day}` as computed by the list
 * (`day`: today's key, so labels such as "Today" are redrawn when the day changes), `msg`: the row's
 * message line (kept across re-renders of the same task), `hooks`: `{edit(task), complete(task, done),
 * remove(task), filterTag(tag)}` from the screen. Each control has a `data-action` ("status", "edit",
 * "delete", "more", "tag") so focus can move to the same control of a re-rendered row.
 */
export function renderRow(task, look, msg, hooks) {
  const done = task.status === "done";
  const due = dueInfo(task);
  const meta = h(
    "p",
    { class: "task-meta" },
    done && task.completed_at
      ? h("span", { class: "completed-at", text: "Completed " + whenLabel(task.completed_at) })
      : null,
    due
      ? h(
          "span",
          { class: look.overdue ? "due due-overdue" : "due", title: due.title },
          look.overdue ? h("span", { class: "visually-hidden", text: "Overdue: " }) : null,
          h("span", { class: "due-text", text: due.text }),
        )
      : null,
    task.status === "in_progress" ? h("span", { class: "badge status-in_progress", text: "In progress" }) : null,
    task.priority !== "medium"
      ? h("span", { class: `badge prio-${task.priority}`, text: `${PRIORITY_LABELS[task.priority]} priority` })
      : null,
    task.tags.length
      ? h(
          "span",
          { class: "tags" },
          task.tags.map((t) =>
            h("button", {
              type: "button",
              class: "tag",
              "data-action": "tag",
              "data-tag": t,
              text: "#" + t,
              "aria-label": `Show tasks tagged ${t}`,
              onclick: () => hooks.filterTag(t),
            }),
          ),
        )
      : null,
  );
  const checkbox = h("input", {
    type: "checkbox",
    class: "task-check",
    "data-action": "status",
    checked: done,
    "aria-label": done ? `Done: ${task.title} (uncheck to reopen)` : `Mark done: ${task.title}`,
    onchange: (ev) => {
      ev.currentTarget.disabled = true;
      hooks.complete(task, !done);
    },
  });
  const actions = h(
    "div",
    { class: "task-actions", id: `actions-${task.id}` },
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
      onclick: () => hooks.remove(task),
    }),
  );
  const more = h("button", {
    type: "button",
    class: "btn btn-small btn-quiet task-more",
    "data-action": "more",
    "aria-expanded": "false",
    "aria-controls": `actions-${task.id}`,
    "aria-label": `More actions: ${task.title}`,
    text: "⋯",
    onclick: (ev) => {
      const li = ev.currentTarget.closest(".task");
      const open = li.classList.toggle("task-open");
      ev.currentTarget.setAttribute("aria-expanded", String(open));
    },
  });
  const classes = ["task"];
  if (done) classes.push("task-done");
  if (look.overdue) classes.push("task-overdue");
  return h(
    "li",
    { class: classes.join(" "), dataset: { id: task.id }, tabindex: "-1" },
    h("label", { class: "task-check-wrap" }, checkbox),
    h(
      "div",
      { class: "task-body" },
      h("h3", { class: "task-title", text: task.title }),
      task.description ? h("p", { class: "task-desc", text: task.description }) : null,
      meta,
    ),
    more,
    actions,
    msg,
  );
}

/** A new, empty message line for a row. */
export function rowMessageLine() {
  return h("p", { class: "msg task-msg", role: "status" });
}
