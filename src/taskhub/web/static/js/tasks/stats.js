// The stats panel: figures and two bar charts from `GET /tasks/stats`.
import { request } from "../api.js";
import { $, h, clear, say, describeError, STATUS_LABELS, PRIORITY_LABELS } from "../dom.js";
import { store } from "../store.js";
import { statsLoaded } from "./actions.js";

let loadSeq = 0;

/** Start the view: it redraws when the store's `stats` changes (and empties when it is null). */
export function initStats() {
  store.subscribe((state, previous) => {
    if (state.stats !== previous.stats) render(state.stats);
  });
}

export async function loadStats() {
  const seq = ++loadSeq;
  try {
    const { data } = await request("GET", "/tasks/stats");
    if (seq !== loadSeq) return;
    say($("stats-msg"), "");
    statsLoaded(data);
  } catch (err) {
    if (seq !== loadSeq || err.status === 401) return;
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

function render(s) {
  const body = $("stats-body");
  clear(body);
  if (!s) return;
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
