// One worker's page at /workers/{name}: status, Healdec's reasons, output, events, errors, settings,
// and its trend charts, kept live by polling the worker's detail endpoint.

import { bindWorkerActions, updateActionButtons } from "./actions.js";
import { announce, request } from "./api.js";
import { barChart, summarize } from "./charts.js";
import {
  adoptTimes, clock, count, cpu, duration, exact, h, percent, setText, signalName, size, statusBadge,
  statusOf, timeAgo,
} from "./format.js";
import { poll } from "./live.js";

const initial = JSON.parse(document.getElementById("initial-data").textContent).worker;
const name = initial.name;
const head = document.getElementById("worker-head");
const cell = (key) => document.querySelector(`[data-cell="${key}"]`);
let shownStatus = null;

// ---- status -----------------------------------------------------------------------------------

function setTime(node, iso) {
  const current = node.querySelector("time");
  if (iso && current && current.getAttribute("datetime") === iso) return;
  node.replaceChildren(timeAgo(iso), iso ? h("span", { class: "exact" }, exact(iso)) : "");
}

function renderStatus(w) {
  const [key, label] = statusOf(w);
  if (shownStatus !== key) {
    cell("status").replaceChildren(statusBadge(w));
    if (shownStatus !== null) announce(`${w.name} is now ${label}.`);
    shownStatus = key;
    head.dataset.status = key;
  }
  head.dataset.state = w.state;
  setText(cell("stateSince"), `in this state since ${exact(w.stateSince)}`);
  const verdict = cell("verdict");
  verdict.className = `verdict verdict-${w.verdict}`;
  setText(verdict, w.verdict[0].toUpperCase() + w.verdict.slice(1));
  const reasons = w.reasons.length ? w.reasons : null;
  const signature = JSON.stringify(w.reasons);
  const list = cell("reasons");
  if (list.dataset.signature !== signature) {
    list.dataset.signature = signature;
    list.replaceChildren(...(reasons
      ? reasons.map((r) => h("li", {}, r))
      : [h("li", { class: "muted" }, w.state === "running" ? "Running, heartbeat fresh, last cycle succeeded." : "No problems reported.")]));
  }
  const lastError = cell("lastError");
  lastError.hidden = !w.lastError;
  setText(lastError.querySelector("span"), w.lastError || "");
  setText(cell("pid"), w.pid ? String(w.pid) : "—");
  setText(cell("uptime"), duration(w.uptimeSeconds));
  setTime(cell("lastRun"), w.lastRun);
  setTime(cell("lastSuccess"), w.lastSuccess);
  setTime(cell("nextRun"), w.nextRun);
  setText(cell("items"), count(w.itemsProcessed));
  const rate = cell("errorRate");
  if (rate.dataset.rate !== String(w.errorRate)) {
    setText(rate, percent(w.errorRate), rate.dataset.rate !== undefined);
    rate.dataset.rate = String(w.errorRate);
  }
  setText(cell("cycles"), `${count(w.cyclesLastHour)}${w.failedCyclesLastHour ? ` (${count(w.failedCyclesLastHour)} failed)` : ""}`);
  setText(cell("restarts"), String(w.restartCount), true);
  setText(cell("cpu"), cpu(w.cpuPercent));
  setText(cell("memory"), size(w.rssBytes));
  setText(cell("heartbeat"), w.heartbeat ? (w.heartbeatAgeSeconds === null ? "—" : `${duration(w.heartbeatAgeSeconds)} ago`) : "not used (alive = healthy)");
  setText(cell("lastExit"), w.lastExit ? w.lastExit.text : "—");
  updateActionButtons(cell("actions"), w);
}

// ---- output, events, errors, config -----------------------------------------------------------

const STREAM_LABEL = { stdout: "out", stderr: "err", manager: "mgr" };
const logList = document.getElementById("logs");
const stderrOnly = document.getElementById("stderr-only");
let lastLogs = [];

function renderLogs(lines) {
  lastLogs = lines;
  const shownLines = stderrOnly.checked ? lines.filter((l) => l.stream === "stderr") : lines;
  const signature = `${stderrOnly.checked}|${shownLines.length}|${shownLines[0]?.at}|${shownLines[0]?.text}`;
  if (logList.dataset.signature === signature) return;
  logList.dataset.signature = signature;
  setText(document.getElementById("logs-count"), `(${lines.length})`);
  if (!shownLines.length) {
    logList.replaceChildren(h("li", { class: "muted empty-line" }, stderrOnly.checked ? "No stderr output." : "No output yet."));
    return;
  }
  logList.replaceChildren(...shownLines.map((l) => h("li", { class: `log-line stream-${l.stream}` },
    h("time", { datetime: l.at, title: exact(l.at) }, clock(l.at)),
    h("span", { class: "stream", title: l.stream }, STREAM_LABEL[l.stream] || l.stream),
    h("span", { class: "text" }, l.text))));
}

stderrOnly.addEventListener("change", () => renderLogs(lastLogs));

function shortDuration(seconds) {
  return seconds < 10 ? `${Number(seconds).toFixed(1)} s` : duration(seconds);
}

function eventWords(e) {
  const d = e.detail || {};
  const pid = e.pid ? ` (pid ${e.pid})` : "";
  switch (e.event) {
    case "started": return ["good", `Started${pid}`, ""];
    case "restarted": return ["good", `Restarted${pid}`, ""];
    case "resumed": return ["good", "Resumed", d.flag ? `flag ${d.flag} is on` : ""];
    case "paused": return ["paused", "Paused", d.flag ? `by flag ${d.flag}` : ""];
    case "stopped": return ["neutral", "Stopped", d.by ? `by ${d.by}` : ""];
    case "backoff": return ["warn", `Backoff: restarting in ${Number(d.delay_s || 0).toFixed(1)} s`, d.last || ""];
    case "failed": return ["bad", "Failed: restart budget spent", `${d.restarts ?? "?"} restarts; last: ${d.last || "?"}`];
    case "killed_hung": return ["bad", "Killed as hung", d.reason || ""];
    case "memory_restart": return ["warn", "Restarted for memory", d.reason || ""];
    case "exited": {
      const after = d.uptime_s !== undefined ? ` after ${shortDuration(d.uptime_s)}` : "";
      const note = [d.reason, d.hung ? "hung" : null, e.pid ? `pid ${e.pid}` : null].filter(Boolean).join(" · ");
      if (d.signal) return [d.reason ? "neutral" : "bad", `Exited by ${signalName(d.signal)}${after}`, note];
      if (d.code === 0) return ["neutral", `Exited cleanly (code 0)${after}`, note];
      return ["bad", `Exited with code ${d.code}${after}`, note];
    }
    default: return ["neutral", e.event, Object.keys(d).length ? JSON.stringify(d) : ""];
  }
}

function renderEvents(events) {
  const list = document.getElementById("events");
  const signature = `${events.length}|${JSON.stringify(events[0] || null)}`;
  if (list.dataset.signature === signature) return;
  list.dataset.signature = signature;
  if (!events.length) {
    list.replaceChildren(h("li", { class: "muted" }, "No supervision events recorded."));
    return;
  }
  list.replaceChildren(...events.map((e) => {
    const at = e.occurred_at || e.at;
    const [tone, title, detail] = eventWords(e);
    return h("li", { class: `event event-${tone}`, dataset: { event: e.event } },
      h("span", { class: "event-dot", "aria-hidden": "true" }),
      h("div", { class: "event-body" },
        h("div", { class: "event-title" }, h("strong", {}, title), " ", timeAgo(at)),
        detail ? h("div", { class: "event-detail" }, detail) : null));
  }));
}

function renderErrors(errors) {
  const list = document.getElementById("errors");
  const signature = `${errors.length}|${JSON.stringify(errors[0] || null)}`;
  if (list.dataset.signature === signature) return;
  list.dataset.signature = signature;
  setText(document.getElementById("errors-count"), errors.length ? `(${errors.length})` : "");
  if (!errors.length) {
    list.replaceChildren(h("li", { class: "muted" }, "No errors recorded."));
    return;
  }
  list.replaceChildren(...errors.map((e) => h("li", { class: "error-item" },
    h("div", { class: "error-meta" }, timeAgo(e.occurred_at), e.item_key ? h("span", { class: "tag" }, `item ${e.item_key}`) : h("span", { class: "tag tag-cycle" }, "cycle")),
    h("p", { class: "error-message" }, e.message))));
}

function renderConfig(config, overrides) {
  const body = document.querySelector("#config tbody");
  const signature = JSON.stringify([config, overrides]);
  if (body.dataset.signature === signature) return;
  body.dataset.signature = signature;
  const keys = Object.keys(config || {}).sort();
  body.replaceChildren(...keys.map((key) => {
    const value = config[key];
    const json = JSON.stringify(value);
    const shown = value === "***" ? h("span", { class: "secret" }, "hidden (secret)") : h("code", { class: "json", title: json }, json);
    return h("tr", {},
      h("th", { scope: "row" }, h("code", {}, key), key in (overrides || {}) ? h("span", { class: "legend legend-override" }, "database") : null),
      h("td", { class: "col-value" }, shown));
  }));
}

async function refreshDetail() {
  const detail = await request("GET", `/api/workers/${encodeURIComponent(name)}?lines=200`);
  renderStatus(detail);
  renderLogs(detail.logs || []);
  renderEvents(detail.events || []);
  renderErrors(detail.errors || []);
  renderConfig(detail.effectiveConfig, detail.settings);
  const banner = document.getElementById("database-banner");
  banner.hidden = !detail.databaseError;
  if (detail.databaseError) banner.textContent = `The database did not answer (${detail.databaseError}); events come from the manager's memory and errors are not shown.`;
}

async function refreshTrends() {
  const data = await request("GET", `/api/trends?minutes=60&worker=${encodeURIComponent(name)}`);
  const series = data.workers[name];
  if (!series) return;
  const errors = series.failed.map((f, i) => f + series.itemErrors[i]);
  if (!series.cycles.some((c) => c > 0)) {
    const none = initial.heartbeat
      ? "No cycles in the last 60 minutes."
      : "This worker is a plain command: it reports no cycles, so there is nothing to chart.";
    document.getElementById("items-chart").replaceChildren(h("p", { class: "chart-empty" }, none));
    document.getElementById("errors-chart").replaceChildren(h("p", { class: "chart-empty" }, none));
    return;
  }
  const items = barChart(series.items, data.minutes, { kind: "items", unit: "items", label: `Items per minute, last 60 minutes: ${summarize(series.items, "items")}` });
  const errs = barChart(errors, data.minutes, { kind: "errors", unit: "errors", label: `Errors per minute, last 60 minutes: ${summarize(errors, "errors")}` });
  document.getElementById("items-chart").replaceChildren(items);
  document.getElementById("errors-chart").replaceChildren(errs);
}

adoptTimes(document);
renderStatus(initial);
bindWorkerActions(head, renderStatus);
poll(refreshDetail, 2000, { tracksConnection: true });
poll(refreshTrends, 10000);
