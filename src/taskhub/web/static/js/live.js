// Live updates: reads GET /api/v1/events/stream (Server-Sent Events over fetch, since EventSource
// cannot send the Authorization header) and applies each event to the store through the task
// actions, so only the affected row changes. Reconnects with Last-Event-ID (the server replays
// what was missed) and a growing pause; the token is renewed by api.openStream on a 401.
import * as api from "./api.js";
import { $ } from "./dom.js";
import { store } from "./store.js";
import { taskRemoved, taskUpserted } from "./tasks/actions.js";
import { taskBelongs } from "./tasks/query.js";
import { loadStats } from "./tasks/stats.js";

const MAX_PAUSE_MS = 15000;

let running = false;
let controller = null;
let lastEventId = null;
let badgeTimer = null;
let statsStale = false; // an event arrived since the stats were last asked for

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Start reading the stream (once per signed-in person); `stopLive` ends it. */
export function startLive() {
  if (running) return;
  running = true;
  lastEventId = null;
  refreshBadgeSoon(0);
  loop();
}

/** Stop reading (sign-out, ended session) and hide the badge. */
export function stopLive() {
  running = false;
  lastEventId = null;
  if (controller) controller.abort();
  controller = null;
  clearTimeout(badgeTimer);
  showUnread(0);
}

async function loop() {
  let pause = 1000;
  while (running) {
    controller = new AbortController();
    try {
      const headers = lastEventId ? { "Last-Event-ID": lastEventId } : {};
      const res = await api.openStream("/events/stream", { headers, signal: controller.signal });
      pause = 1000;
      await readEvents(res.body, controller.signal);
    } catch (err) {
      if (err && err.status === 401) {
        running = false; // the session ended: the app shows the sign-in screen
        return;
      }
    }
    if (!running) return;
    await sleep(pause); // the stream ended (token expired, server restart) or failed: come back
    pause = Math.min(MAX_PAUSE_MS, pause * 2);
  }
}

async function readEvents(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    while (!signal.aborted) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) !== -1) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const frame = parseFrame(block);
        if (frame) await applyEvent(frame);
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** One SSE block as {id, event, data}, or null for comments (heartbeats) and retry hints. */
function parseFrame(block) {
  const fields = { data: [] };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const name = at === -1 ? line : line.slice(0, at);
    const value = at === -1 ? "" : line.slice(at + 1).replace(/^ /, "");
    if (name === "data") fields.data.push(value);
    else fields[name] = value;
  }
  if (!fields.data.length) return null;
  try {
    return { id: fields.id, event: fields.event, data: JSON.parse(fields.data.join("\n")) };
  } catch {
    return null;
  }
}

async function applyEvent({ id, event, data }) {
  if (id) lastEventId = id;
  const taskId = data && data.task_id;
  if (!taskId) return;
  statsStale = true;
  refreshBadgeSoon();
  if (event === "task.deleted") {
    taskRemoved(taskId);
    return;
  }
  const { list } = store.get();
  const shown = list.ids.includes(taskId);
  // A new task goes on top of the unfiltered first page; elsewhere the next list load places it.
  const wanted = shown || (event === "task.created" && list.page === 1 && !list.filtered);
  if (!wanted) return;
  try {
    const { data: task } = await api.request("GET", `/tasks/${encodeURIComponent(taskId)}`);
    // A task done elsewhere leaves Inbox / Today / Upcoming (a reopened one leaves Completed).
    if (taskBelongs(task, store.get().query)) taskUpserted(task);
    else taskRemoved(taskId);
  } catch (err) {
    if (err.status === 404) taskRemoved(taskId);
  }
}

function refreshBadgeSoon(delay = 300) {
  clearTimeout(badgeTimer);
  badgeTimer = setTimeout(refreshBadge, delay);
}

async function refreshBadge() {
  if (!running) return;
  if (statsStale) {
    statsStale = false;
    loadStats(); // the figures follow changes made elsewhere too (one request per burst of events)
  }
  try {
    const { data } = await api.request("GET", "/notifications/unread-count");
    if (running) showUnread(data.unread);
  } catch {
    // the badge waits for the next event
  }
}

function showUnread(count) {
  const badge = $("notif-badge");
  if (!badge) return;
  badge.hidden = !count;
  badge.textContent = count === 1 ? "1 unread notification" : `${count} unread notifications`;
}
