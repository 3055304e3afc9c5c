// The admin page: every user (role, active flag, delete) and every task.
import { request } from "./api.js";
import {
  $, h, clear, say, confirmDialog, describeError, formatDateTime, STATUS_LABELS, PRIORITY_LABELS,
} from "./dom.js";

const PAGE_SIZE = 20;
const users = { q: "", page: 1, total: 0, seq: 0, flash: null };
const tasks = { q: "", page: 1, total: 0, seq: 0 };
const shortDate = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" }); // phones
const knownUsers = new Map(); // id -> user, to name task owners
let me = null;
let meChanged = () => {};

export function initAdmin({ onSelfChanged }) {
  meChanged = onSelfChanged;
  $("users-search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    users.q = $("users-q").value.trim();
    users.page = 1;
    say($("users-msg"), "");
    loadUsers();
  });
  $("alltasks-search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    tasks.q = $("alltasks-q").value.trim();
    tasks.page = 1;
    say($("alltasks-msg"), "");
    loadAllTasks();
  });
  const turn = (st, delta, msgId, load) => () => {
    st.page += delta;
    say($(msgId), ""); // a message about the previous page would be stale
    load();
  };
  $("users-prev").addEventListener("click", turn(users, -1, "users-msg", loadUsers));
  $("users-next").addEventListener("click", turn(users, 1, "users-msg", loadUsers));
  $("alltasks-prev").addEventListener("click", turn(tasks, -1, "alltasks-msg", loadAllTasks));
  $("alltasks-next").addEventListener("click", turn(tasks, 1, "alltasks-msg", loadAllTasks));
}

/** Forget searches, pages and rows (on sign-out, or when someone else signs in on this page). */
export function resetAdmin() {
  for (const st of [users, tasks]) {
    st.q = "";
    st.page = 1;
    st.total = 0;
    st.seq += 1; // answers still in flight are dropped
  }
  users.flash = null;
  knownUsers.clear();
  me = null;
  $("users-q").value = "";
  $("alltasks-q").value = "";
  clear($("users-body"));
  clear($("alltasks-body"));
  $("users-pager").hidden = true;
  $("alltasks-pager").hidden = true;
  for (const id of ["users-msg", "alltasks-msg"]) say($(id), "");
}

export function refreshAdmin(currentUser) {
  me = currentUser;
  return loadUsers().then(loadAllTasks);
}

function pager(prefix, st, size) {
  const last = Math.max(1, Math.ceil(st.total / size));
  $(`${prefix}-pager`).hidden = st.total <= size;
  $(`${prefix}-page-info`).textContent = `Page ${st.page} of ${last} · ${st.total} in all`;
  $(`${prefix}-prev`).disabled = st.page <= 1;
  $(`${prefix}-next`).disabled = st.page >= last;
}

async function loadUsers() {
  const seq = ++users.seq;
  const query = new URLSearchParams({ page: String(users.page), limit: String(PAGE_SIZE) });
  if (users.q) query.set("q", users.q);
  try {
    const { data } = await request("GET", "/admin/users", { query });
    if (seq !== users.seq) return;
    users.total = data.total;
    const body = $("users-body");
    clear(body);
    for (const u of data.items) {
      knownUsers.set(u.id, u);
      body.append(userRow(u));
    }
    if (data.items.length === 0) {
      body.append(h("tr", {}, h("td", { colspan: "5", class: "empty-cell",
        text: users.q ? `No user matches “${users.q}”.` : "No users yet." })));
    }
    users.flash = null;
    pager("users", users, PAGE_SIZE);
  } catch (err) {
    if (err.status === 401 || seq !== users.seq) return;
    say($("users-msg"), "Could not load the users: " + describeError(err), "error");
  }
}

function userRow(u) {
  const msg = h("p", { class: "msg row-msg", role: "status" });
  if (users.flash && users.flash.id === u.id) say(msg, users.flash.text, users.flash.kind);
  const isMe = me && me.id === u.id;
  const name = u.name + (isMe ? " (you)" : "");
  return h(
    "tr",
    { dataset: { id: u.id, email: u.email } },
    h("td", { "data-label": "Name", class: "cell-name", text: name }),
    h("td", { "data-label": "Email", class: "cell-email", text: u.email }),
    h("td", { "data-label": "Role", class: "cell-role" }, h("span", { class: `badge role-${u.role}`, text: u.role === "admin" ? "Admin" : "User" })),
    h("td", { "data-label": "Status", class: "cell-status" },
      h("span", { class: u.is_active ? "badge active" : "badge inactive", text: u.is_active ? "Active" : "Deactivated" })),
    h(
      "td",
      { "data-label": "Actions", class: "cell-actions" },
      h("div", { class: "row-actions" },
        h("button", {
          type: "button", class: "btn btn-small",
          text: u.role === "admin" ? "Make user" : "Make admin",
          "aria-label": `${u.role === "admin" ? "Make user" : "Make admin"}: ${u.email}`,
          onclick: (ev) => patchUser(u, { role: u.role === "admin" ? "user" : "admin" }, msg, ev.currentTarget),
        }),
        h("button", {
          type: "button", class: "btn btn-small",
          text: u.is_active ? "Deactivate" : "Activate",
          "aria-label": `${u.is_active ? "Deactivate" : "Activate"}: ${u.email}`,
          onclick: (ev) => (u.is_active ? deactivateUser(u, msg, ev.currentTarget) : patchUser(u, { is_active: true }, msg, ev.currentTarget)),
        }),
        h("button", {
          type: "button", class: "btn btn-small btn-danger-quiet", text: "Delete",
          "aria-label": `Delete: ${u.email}`,
          onclick: () => deleteUser(u, msg),
        })),
      msg,
    ),
  );
}

function changeText(u, change) {
  if ("role" in change) return change.role === "admin" ? `${u.email} is now an admin.` : `${u.email} is now a user.`;
  return change.is_active ? `${u.email} was activated.` : `${u.email} was deactivated; their sessions have ended.`;
}

async function patchUser(u, change, msg, button) {
  button.disabled = true;
  say(msg, "Saving…", "info");
  try {
    await request("PATCH", `/admin/users/${u.id}`, { json: change });
    users.flash = { id: u.id, text: changeText(u, change), kind: "success" };
    await loadUsers();
    if (me && me.id === u.id) meChanged();
  } catch (err) {
    button.disabled = false;
    if (err.status === 401) return;
    say(msg, "Not changed: " + describeError(err), "error");
  }
}

async function deactivateUser(u, msg, button) {
  const isMe = me && me.id === u.id;
  const ok = await confirmDialog({
    title: isMe ? "Deactivate your own account?" : "Deactivate this user?",
    text: `${u.email} will be signed out everywhere and cannot sign in until an administrator activates ` +
      "the account again. Their tasks are kept.",
    confirmLabel: "Deactivate user",
  });
  if (!ok) {
    say(msg, "Not deactivated.", "info");
    return;
  }
  await patchUser(u, { is_active: false }, msg, button);
}

async function deleteUser(u, msg) {
  const ok = await confirmDialog({
    title: "Delete this user?",
    text: `${u.email} and all of their tasks will be deleted. This cannot be undone.`,
    confirmLabel: "Delete user",
  });
  if (!ok) {
    say(msg, "Not deleted.", "info");
    return;
  }
  say(msg, "Deleting…", "info");
  try {
    await request("DELETE", `/admin/users/${u.id}`);
    say($("users-msg"), `Deleted ${u.email} and their tasks.`, "success");
    await loadUsers();
    await loadAllTasks();
    if (me && me.id === u.id) meChanged();
  } catch (err) {
    if (err.status === 401) return;
    say(msg, "Not deleted: " + describeError(err), "error");
  }
}

async function loadAllTasks() {
  const seq = ++tasks.seq;
  const query = new URLSearchParams({ page: String(tasks.page), limit: String(PAGE_SIZE), sort: "-created_at" });
  if (tasks.q) query.set("q", tasks.q);
  try {
    const { data } = await request("GET", "/admin/tasks", { query });
    if (seq !== tasks.seq) return;
    tasks.total = data.total;
    const body = $("alltasks-body");
    clear(body);
    for (const t of data.items) {
      const owner = knownUsers.get(t.owner_id);
      body.append(h(
        "tr",
        { dataset: { id: t.id } },
        // title= gives the whole text where phones cut it short (one compact line per task there).
        h("td", { "data-label": "Title", class: "cell-title", text: t.title, title: t.title }),
        h("td", { "data-label": "Owner", class: "cell-email cell-owner", text: owner ? owner.email : t.owner_id,
          title: owner ? owner.email : t.owner_id }),
        h("td", { "data-label": "Status", class: "cell-status" },
          h("span", { class: `badge status-${t.status}`, text: STATUS_LABELS[t.status] })),
        h("td", { "data-label": "Priority", class: "cell-prio" },
          h("span", { class: `badge prio-${t.priority}`, text: PRIORITY_LABELS[t.priority] })),
        t.due_date
          ? h("td", { "data-label": "Due", class: "cell-due", title: formatDateTime(t.due_date) },
            h("span", { class: "due-long", text: formatDateTime(t.due_date) }),
            h("span", { class: "due-short", text: shortDate.format(new Date(t.due_date)) }))
          : h("td", { "data-label": "Due", class: "cell-due is-empty", text: "—" }),
      ));
    }
    if (data.items.length === 0) {
      body.append(h("tr", {}, h("td", { colspan: "5", class: "empty-cell",
        text: tasks.q ? `No task matches “${tasks.q}”.` : "Nobody has created a task yet." })));
    }
    pager("alltasks", tasks, PAGE_SIZE);
  } catch (err) {
    if (err.status === 401 || seq !== tasks.seq) return;
    say($("alltasks-msg"), "Could not load the tasks: " + describeError(err), "error");
  }
}
