// How the console words and formats values: the same rules as admin/present.py, plus relative times
// and small DOM helpers that only ever insert text (never HTML), so nothing from a worker can inject markup.

const STATE_LABELS = {
  starting: ["starting", "Starting"],
  stopping: ["stopping", "Stopping"],
  paused: ["paused", "Paused"],
  backoff: ["backoff", "Backoff"],
  stopped: ["stopped", "Stopped"],
  failed: ["failed", "Failed"],
  disabled: ["disabled", "Disabled"],
};

export const ATTENTION = new Set(["degraded", "down", "failed", "backoff"]);
export const IDLE = new Set(["paused", "stopped", "disabled"]);

/** [indicator key, label]: a running worker is labelled by Healdec's verdict. */
export function statusOf(w) {
  if (w.state === "running") {
    if (w.healthy && w.verdict === "healthy") return ["healthy", "Healthy"];
    if (w.verdict === "down") return ["down", "Down"];
    if (w.verdict === "degraded") return ["degraded", "Degraded"];
    return ["running", "Running"];
  }
  return STATE_LABELS[w.state] || ["unknown", w.state ? w.state[0].toUpperCase() + w.state.slice(1) : "Unknown"];
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.floor(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return s < 600 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function size(n) {
  if (n === null || n === undefined) return "—";
  let value = n;
  for (const unit of ["B", "KB", "MB", "GB"]) {
    if (value < 1024 || unit === "GB") return unit === "B" || unit === "KB" ? `${Math.round(value)} ${unit}` : `${value.toFixed(1)} ${unit}`;
    value /= 1024;
  }
  return `${value.toFixed(1)} GB`;
}

export function percent(value, digits = 1) {
  if (value === null || value === undefined) return "—";
  return value === 0 ? "0 %" : `${(value * 100).toFixed(digits)} %`;
}

export function cpu(value) {
  return value === null || value === undefined ? "—" : `${value.toFixed(1)} %`;
}

export function count(n) {
  return n === null || n === undefined ? "—" : n.toLocaleString("en-US");
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** `2026-01-01 12:00:03 UTC` */
export function exact(iso) {
  if (!iso) return "never";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
}

/** `12:00:03.120` in UTC, for log lines. */
export function clock(iso, millis = true) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const base = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  return millis ? `${base}.${pad(d.getUTCMilliseconds(), 3)}` : base;
}

export function relative(iso, now = Date.now()) {
  if (!iso) return "never";
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return iso;
  const s = Math.round((now - t) / 1000);
  const future = s < 0;
  const a = Math.abs(s);
  let text;
  if (a < 2) return "just now";
  if (a < 60) text = `${a} s`;
  else if (a < 3600) text = `${Math.floor(a / 60)} min`;
  else if (a < 86400) text = `${Math.floor(a / 3600)} h`;
  else text = `${Math.floor(a / 86400)} d`;
  return future ? `in ${text}` : `${text} ago`;
}

/** JSON as one short line, for table cells. */
export function compactJson(value) {
  return JSON.stringify(value);
}

// ---- DOM ---------------------------------------------------------------------------------------

/** h("span", {class: "x", "aria-label": "y"}, "text", child) — children are text or nodes. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  append(node, children);
  return node;
}

export function icon(name, cls = "icon") {
  const use = svg("use");
  use.setAttribute("href", `${document.body.dataset.icons}#${name}`);
  const node = svg("svg", { class: cls, "aria-hidden": "true", focusable: "false" }, use);
  return node;
}

export function statusBadge(w) {
  const [key, label] = statusOf(w);
  return h("span", { class: `badge badge-${key}` }, icon(key), h("span", { class: "badge-text" }, label));
}

/** A <time> that keeps saying how long ago it was (see tickTimes); exact UTC in its tooltip. */
export function timeAgo(iso) {
  if (!iso) return h("span", { class: "muted" }, "never");
  return h("time", { datetime: iso, title: exact(iso), "data-relative": "" }, relative(iso));
}

export function tickTimes(root = document) {
  const now = Date.now();
  for (const node of root.querySelectorAll("time[data-relative]")) {
    const text = relative(node.getAttribute("datetime"), now);
    if (node.textContent !== text) node.textContent = text;
  }
}

/** Turns server-rendered <time> elements into live relative ones. */
export function adoptTimes(root = document) {
  for (const node of root.querySelectorAll("time[datetime]")) node.setAttribute("data-relative", "");
  tickTimes(root);
}

/** Sets text only when it changed, and marks the change briefly so the eye catches it. */
export function setText(node, text, flash = false) {
  if (!node || node.textContent === text) return false;
  node.textContent = text;
  if (flash) {
    node.classList.remove("changed");
    void node.offsetWidth; // restart the animation
    node.classList.add("changed");
  }
  return true;
}

const SIGNALS = { 1: "SIGHUP", 2: "SIGINT", 6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM" };

export function signalName(n) {
  return SIGNALS[n] ? `${SIGNALS[n]} (${n})` : `signal ${n}`;
}
