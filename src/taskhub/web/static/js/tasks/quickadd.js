// Quick add: one line such as "Call Ann tomorrow 5pm !high #family". The server reads it
// (POST /tasks/parse, dates in the person's zone; nothing is written) and the parts it found are
// shown as chips under the line before saving. Removing a chip keeps those words in the title
// instead. Enter creates the task (POST /tasks, with an Idempotency-Key).
import { request } from "../api.js";
import { $, h, clear, say, sayBriefly, describeError } from "../dom.js";
import { dayLabel, dueInfo } from "../dates.js";
import { plainFieldErrors } from "../messages.js";
import { messageShown } from "./actions.js";

const PARSE_DELAY_MS = 250;

let parsed = null; // the last answer of /tasks/parse, for `parsedText`
let parsedText = "";
let ignored = new Set(); // "kind:text" of the chips the person removed
let timer = null;
let seq = 0;
let unsupported = false; // the server has no /tasks/parse: the line is the title
let refresh = () => Promise.resolve();

/** Wire the line once; `options.refresh()` reloads the list and the stats after a create. */
export function initQuickAdd(options) {
  refresh = options.refresh;
  const input = $("quick-text");
  input.addEventListener("input", () => {
    say($("quick-msg"), "");
    clearTimeout(timer);
    timer = setTimeout(() => parse(input.value), PARSE_DELAY_MS);
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") {
      reset();
      input.blur();
    }
  });
  $("quick-add").addEventListener("submit", (ev) => {
    ev.preventDefault();
    create();
  });
}

/** Put the cursor in the line (the `q` shortcut). */
export function focusQuickAdd() {
  $("quick-text").focus();
}

function reset() {
  $("quick-text").value = "";
  parsed = null;
  parsedText = "";
  ignored = new Set();
  renderChips();
}

async function parse(text) {
  const mine = ++seq;
  if (!text.trim() || unsupported) {
    parsed = null;
    parsedText = text;
    renderChips();
    return null;
  }
  try {
    const { data } = await request("POST", "/tasks/parse", { json: { text } });
    if (mine !== seq) return null;
    parsed = data;
    parsedText = text;
    renderChips();
    return data;
  } catch (err) {
    if (mine !== seq) return null;
    if (err.status === 404 || err.status === 405) unsupported = true;
    parsed = null;
    parsedText = text;
    renderChips();
    return null;
  }
}

const partKey = (part) => `${part.kind}:${part.text}`;

function activeParts() {
  return parsed ? parsed.parts.filter((p) => !ignored.has(partKey(p))) : [];
}

/** What a chip says: "Tomorrow 5:00 PM", "High priority", "#family". */
function chipText(part) {
  if (part.kind === "due") {
    const due = dueInfo({ due_date: parsed.due_date, all_day: parsed.all_day, due_on: parsed.due_on, status: "todo" });
    return due ? due.text : part.text;
  }
  if (part.kind === "priority") return `${String(part.value).charAt(0).toUpperCase()}${String(part.value).slice(1)} priority`;
  if (part.kind === "tag") return `#${part.value}`;
  return part.text;
}

function renderChips() {
  const box = $("quick-chips");
  clear(box);
  for (const part of activeParts()) {
    box.append(
      h(
        "li",
        { class: `chip chip-${part.kind}`, dataset: { kind: part.kind } },
        h("span", { class: "chip-label", text: chipText(part) }),
        h("button", {
          type: "button",
          class: "chip-remove",
          text: "×",
          "aria-label": `Remove ${chipText(part)} (keep “${part.text}” in the title)`,
          onclick: () => {
            ignored.add(partKey(part));
            renderChips();
            $("quick-text").focus();
          },
        }),
      ),
    );
  }
  box.hidden = box.childElementCount === 0;
  const preview = $("quick-title");
  const title = parsed ? titleOf(parsedText) : "";
  preview.textContent = parsed && title && title !== parsedText.trim() ? `Title: ${title}` : "";
}

/**
 * The title: the line without the parts that are still chips (removed chips stay as words).
 * `start` / `end` count code points (as the server does), so the line is cut as an array of them.
 */
function titleOf(text) {
  if (!parsed) return text.trim();
  if (!ignored.size) return parsed.title;
  const cut = activeParts().sort((a, b) => b.start - a.start);
  let points = Array.from(text);
  for (const p of cut) points = [...points.slice(0, p.start), ...points.slice(p.end)];
  return points.join("").replace(/\s+/g, " ").trim();
}

/** The task the line describes, as a POST /tasks body. */
function body(text) {
  const parts = activeParts();
  const task = { title: titleOf(text) };
  if (parsed) {
    const due = parts.find((p) => p.kind === "due");
    if (due) task.due_date = due.value; // "YYYY-MM-DD" (all day) or an instant, as /tasks/parse says
    const prio = parts.find((p) => p.kind === "priority");
    if (prio) task.priority = prio.value;
    const tags = parts.filter((p) => p.kind === "tag").map((p) => p.value);
    if (tags.length) task.tags = [...new Set(tags)];
  }
  return task;
}

async function create() {
  const input = $("quick-text");
  const msg = $("quick-msg");
  const text = input.value;
  if (!text.trim()) {
    say(msg, "Type a task first, e.g. “Call Ann tomorrow 5pm !high #family”.", "error");
    input.focus();
    return;
  }
  clearTimeout(timer);
  if (text !== parsedText) await parse(text); // Enter before the chips caught up
  const task = body(text);
  const button = $("quick-save");
  button.disabled = true;
  try {
    const { data } = await request("POST", "/tasks", { json: task, headers: { "Idempotency-Key": crypto.randomUUID() } });
    reset();
    const when = data.due_date ? " · " + (dueInfo(data)?.text || dayLabel(data.due_on)) : "";
    sayBriefly(msg, `Added “${data.title}”${when}.`, "success", 8000);
    messageShown(data.id, "Added.", "success", { keep: true });
    await refresh();
  } catch (err) {
    if (err.status === 401) return;
    if (err.status === 422) {
      const [first] = plainFieldErrors(err, task);
      say(msg, first ? first.msg : "The task was not added: " + describeError(err), "error");
    } else {
      say(msg, "The task was not added: " + describeError(err), "error");
    }
  } finally {
    button.disabled = false;
    input.focus();
  }
}
