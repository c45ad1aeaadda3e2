// The overview at /workers: the live worker table, the summary tiles, feature flags and settings.

import { bindWorkerActions, updateActionButtons } from "./actions.js";
import { announce, isAdmin, request, toast, ApiError } from "./api.js";
import { sparkline, summarize } from "./charts.js";
import {
  ATTENTION, IDLE, adoptTimes, compactJson, count, cpu, duration, exact, h, icon, percent,
  setText, size, statusBadge, statusOf, timeAgo,
} from "./format.js";
import { poll } from "./live.js";
import { openAudit, openSettingEditor } from "./dialogs.js";

const initial = JSON.parse(document.getElementById("initial-data").textContent);
const rows = document.getElementById("worker-rows");
const shown = new Map(); // worker name → status key on screen

// ---- workers ----------------------------------------------------------------------------------

function setTime(cell, iso) {
  const current = cell.querySelector("time");
  if (iso && current && current.getAttribute("datetime") === iso) return;
  if (!iso && !current) return;
  cell.replaceChildren(timeAgo(iso));
}

function renderVerdict(cell, w) {
  const signature = `${w.verdict}|${w.reasons.join("|")}`;
  if (cell.dataset.signature === signature) return;
  cell.dataset.signature = signature;
  const reasons = w.reasons.length ? h("ul", { class: "reasons" }, w.reasons.map((r) => h("li", {}, r))) : "";
  cell.replaceChildren(h("span", { class: "verdict-label" }, "Healdec"), " ", h("span", { class: `verdict verdict-${w.verdict}` }, w.verdict), reasons);
}

function renderRow(w) {
  const tr = rows.querySelector(`tr[data-worker="${CSS.escape(w.name)}"]`);
  if (!tr) return;
  const cell = (name) => tr.querySelector(`[data-cell="${name}"]`);
  const [key, label] = statusOf(w);
  if (tr.dataset.status !== key) {
    cell("status").replaceChildren(statusBadge(w));
    tr.dataset.status = key;
  }
  tr.dataset.state = w.state;
  renderVerdict(cell("verdict"), w);
  setText(cell("owner"), w.owner ? `on ${w.owner.host} · manager ${w.owner.managerId}` : "no owner");
  setText(cell("pid"), w.pid ? String(w.pid) : "—");
  setText(cell("uptime"), duration(w.uptimeSeconds));
  setTime(cell("lastRun"), w.lastRun);
  setTime(cell("lastSuccess"), w.lastSuccess);
  setText(cell("items"), count(w.itemsProcessed));
  setText(cell("errorRate"), percent(w.errorRate), true);
  setText(cell("restarts"), String(w.restartCount), true);
  setText(cell("cpu"), cpu(w.cpuPercent));
  setText(cell("memory"), size(w.rssBytes));
  updateActionButtons(cell("actions"), w);
  const before = shown.get(w.name);
  if (before !== undefined && before !== key) announce(`${w.name} is now ${label}.`);
  shown.set(w.name, key);
}

function renderSummary(workers) {
  const keys = workers.map((w) => statusOf(w)[0]);
  const counts = {
    total: keys.length,
    healthy: keys.filter((k) => k === "healthy").length,
    attention: keys.filter((k) => ATTENTION.has(k)).length,
    idle: keys.filter((k) => IDLE.has(k)).length,
  };
  for (const [key, n] of Object.entries(counts)) {
    setText(document.querySelector(`[data-summary="${key}"]`), String(n));
  }
  document.querySelector(".tile-attention")?.classList.toggle("tile-alert", counts.attention > 0);
}

function renderWorkers(workers) {
  workers.forEach(renderRow);
  renderSummary(workers);
}

async function refreshStatus() {
  renderWorkers(await request("GET", "/api/workers/status"));
}

async function refreshTrends() {
  const data = await request("GET", "/api/trends?minutes=30");
  for (const [name, series] of Object.entries(data.workers)) {
    const cell = rows.querySelector(`tr[data-worker="${CSS.escape(name)}"] [data-cell="trend"]`);
    if (!cell) continue;
    cell.replaceChildren(trendCell(name, series));
  }
}

/** The sparkline of whole minutes since the worker's first cycle, and the last whole minute's count. */
function trendCell(name, series) {
  const first = series.cycles.findIndex((c) => c > 0);
  const end = series.cycles.length - 1; // the current minute is still filling up: left out
  if (first < 0) return h("span", { class: "muted trend-wait" }, "no cycles");
  if (first >= end) return h("span", { class: "muted trend-wait" }, "collecting…");
  const items = series.items.slice(first, end);
  const errors = series.failed.slice(first, end).map((f, i) => f + series.itemErrors[first + i]);
  const label = `${name}, items per minute over the last ${items.length} minutes: ${summarize(items, "items")}`;
  return h("span", { class: "trend" }, sparkline(items, errors, label),
    h("span", { class: "trend-n", "aria-hidden": "true" }, count(items[items.length - 1])));
}

// ---- feature flags ----------------------------------------------------------------------------

const flagList = document.getElementById("flag-list");
const flagBusy = new Set();
const workerNames = new Set(initial.workers.map((w) => w.name));

function workerOfFlag(flag) {
  const name = flag.endsWith("_enabled") ? flag.slice(0, -"_enabled".length) : null;
  return name && workerNames.has(name) ? name : null;
}

function flagItem(f) {
  const id = `flag-${f.flag_name}`;
  const worker = workerOfFlag(f.flag_name);
  const li = h("li", { class: "flag", dataset: { flag: f.flag_name, signature: `${f.enabled}|${f.updated_at}|${f.updated_by}` } });
  const control = isAdmin
    ? h("button", {
        type: "button", class: "switch", role: "switch", id, "aria-checked": String(f.enabled),
        "aria-labelledby": `${id}-name`, "aria-describedby": `${id}-desc ${id}-meta`,
        onclick: () => toggleFlag(f.flag_name, li),
      }, h("span", { class: "switch-thumb", "aria-hidden": "true" }))
    : null;
  li.append(
    h("div", { class: "flag-control" },
      control,
      h("span", { class: `pill ${f.enabled ? "pill-on" : "pill-off"}`, "data-cell": "state", "aria-hidden": isAdmin ? "true" : null }, f.enabled ? "On" : "Off")),
    h("div", { class: "flag-main" },
      h("span", { class: "flag-name", id: `${id}-name` }, h("code", {}, f.flag_name)),
      h("p", { class: "flag-desc", id: `${id}-desc` }, f.description || "No description.",
        worker ? [" · ", h("a", { href: `/workers/${worker}` }, `worker ${worker}`)] : null),
      h("p", { class: "flag-meta", id: `${id}-meta`, "data-cell": "meta" }, flagMeta(f))),
    h("button", { type: "button", class: "btn btn-ghost btn-sm", "aria-label": `History of ${f.flag_name}`, onclick: () => openAudit(f.flag_name) },
      icon("history"), "History"),
  );
  return li;
}

function flagMeta(f) {
  return ["Changed by ", h("strong", {}, f.updated_by), " ", f.updated_at ? timeAgo(f.updated_at) : "", h("span", { class: "sr-only" }, f.updated_at ? ` (${exact(f.updated_at)})` : "")];
}

function upsertFlag(f) {
  const existing = flagList.querySelector(`li[data-flag="${CSS.escape(f.flag_name)}"]`);
  if (!existing) {
    flagList.append(flagItem(f));
    return;
  }
  if (flagBusy.has(f.flag_name)) return;
  const signature = `${f.enabled}|${f.updated_at}|${f.updated_by}`;
  if (existing.dataset.signature === signature) return;
  existing.dataset.signature = signature;
  const control = existing.querySelector(".switch");
  if (control) control.setAttribute("aria-checked", String(f.enabled));
  const pill = existing.querySelector('[data-cell="state"]');
  pill.className = `pill ${f.enabled ? "pill-on" : "pill-off"}`;
  pill.textContent = f.enabled ? "On" : "Off";
  existing.querySelector('[data-cell="meta"]').replaceChildren(...flagMeta(f));
}

function renderFlags(flags) {
  const names = new Set(flags.map((f) => f.flag_name));
  for (const li of flagList.querySelectorAll("li[data-flag]")) {
    if (!names.has(li.dataset.flag)) li.remove();
  }
  flags.forEach(upsertFlag);
  document.getElementById("flags-empty").hidden = flags.length > 0;
}

async function toggleFlag(name, li) {
  if (flagBusy.has(name)) return;
  const control = li.querySelector(".switch");
  const enabled = control.getAttribute("aria-checked") !== "true";
  flagBusy.add(name);
  control.setAttribute("aria-busy", "true");
  control.setAttribute("aria-checked", String(enabled)); // optimistic; reverted on failure
  try {
    const row = await request("PUT", `/api/flags/${encodeURIComponent(name)}`, { enabled });
    flagBusy.delete(name);
    upsertFlag(row);
    const worker = workerOfFlag(name);
    const effect = worker ? (enabled ? ` — ${worker} resumes within a second.` : ` — ${worker} pauses after its current item.`) : ".";
    toast(`${name} turned ${enabled ? "on" : "off"}${effect}`, "success");
  } catch (error) {
    control.setAttribute("aria-checked", String(!enabled));
    toast(`Could not change ${name}: ${error instanceof ApiError ? error.message : "no answer"}`, "error");
  } finally {
    flagBusy.delete(name);
    control.removeAttribute("aria-busy");
  }
}

// ---- settings ---------------------------------------------------------------------------------

const settingRows = document.getElementById("settings-rows");

function isMasked(value) {
  return value === "***";
}

function settingRow(s) {
  const value = isMasked(s.value)
    ? h("span", { class: "secret" }, "hidden (secret)")
    : h("code", { class: "json", title: JSON.stringify(s.value, null, 2) }, compactJson(s.value));
  return h("tr", { dataset: { setting: s.key } },
    h("th", { scope: "row" }, h("code", {}, s.key)),
    h("td", { class: "col-value" }, value),
    h("td", { class: "col-changed" }, "by ", h("strong", {}, s.updated_by), " ", timeAgo(s.updated_at)),
    h("td", { class: "col-actions" }, h("div", { class: "actions" },
      isAdmin ? h("button", { type: "button", class: "btn btn-sm", "aria-label": `Edit ${s.key}`, onclick: () => editSetting(s) }, icon("edit"), "Edit") : null,
      h("button", { type: "button", class: "btn btn-ghost btn-sm", "aria-label": `History of ${s.key}`, onclick: () => openAudit(s.key) }, icon("history"), "History"))),
  );
}

let settings = initial.settings;

function renderSettings(list) {
  settings = list;
  const signature = JSON.stringify(list);
  if (settingRows.dataset.signature === signature) return;
  settingRows.dataset.signature = signature;
  settingRows.replaceChildren(...list.map(settingRow));
  document.getElementById("settings-empty").hidden = list.length > 0;
  document.getElementById("settings-table").hidden = list.length === 0;
}

function editSetting(s) {
  openSettingEditor({ key: s.key, value: s.value, masked: isMasked(s.value) }, saved);
}

function saved(row) {
  const others = settings.filter((s) => s.key !== row.key);
  renderSettings([...others, row].sort((a, b) => a.key.localeCompare(b.key)));
  const flash = settingRows.querySelector(`tr[data-setting="${CSS.escape(row.key)}"]`);
  flash?.classList.add("changed");
}

document.getElementById("add-setting")?.addEventListener("click", () => openSettingEditor(null, saved));

async function refreshConfig() {
  if (document.querySelector("dialog[open]")) return; // do not move things under an open dialog
  const [flags, list] = await Promise.all([request("GET", "/api/flags"), request("GET", "/api/settings")]);
  renderFlags(flags);
  renderSettings(list);
}

// ---- start ------------------------------------------------------------------------------------

adoptTimes(rows);
renderWorkers(initial.workers);
renderFlags(initial.flags);
renderSettings(initial.settings);
bindWorkerActions(rows, renderRow);
poll(refreshStatus, 1500, { tracksConnection: true });
poll(refreshTrends, 15000);
poll(refreshConfig, 5000);
