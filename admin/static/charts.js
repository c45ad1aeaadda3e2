// Small trend charts drawn as inline SVG: a sparkline for table rows and a bar chart for a worker's
// page. Each chart carries a text summary (aria-label / <title>) so it is never picture-only.

import { clock, count, svg } from "./format.js";

/** A round axis maximum whose half is a whole number too: 2, 4, 6, 8, 10, 20, 40, … */
function niceMax(value) {
  if (value <= 2) return 2;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [2, 4, 6, 8, 10]) {
    if (value <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

/** Items per minute as a line with a soft area; minutes with errors get a red tick underneath. */
export function sparkline(items, errors, label) {
  const width = 100;
  const height = 30;
  const n = items.length;
  const max = Math.max(1, ...items);
  const x = (i) => (n <= 1 ? width : (i / (n - 1)) * width);
  const y = (v) => height - 5 - (v / max) * (height - 8);
  const points = items.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
  const chart = svg("svg", { class: "spark", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label });
  chart.append(svg("title", {}, label));
  chart.append(svg("path", { class: "spark-area", d: `M0,${height - 5} L${points.join(" L")} L${width},${height - 5} Z` }));
  chart.append(svg("polyline", { class: "spark-line", points: points.join(" ") }));
  errors.forEach((e, i) => {
    if (e > 0) chart.append(svg("rect", { class: "spark-error", x: Math.max(0, x(i) - 1.5), y: height - 3, width: 3, height: 3 }));
  });
  const last = items[n - 1] || 0;
  chart.append(svg("circle", { class: "spark-dot", cx: x(n - 1) - 1.5, cy: y(last), r: 2 }));
  return chart;
}

/** A bar per minute with a y axis (0, half, max) and the first and last minute on the x axis. */
export function barChart(values, minutes, { kind = "items", unit = "items", label = "" } = {}) {
  const width = 640;
  const height = 170;
  const left = 44;
  const right = 8;
  const top = 10;
  const bottom = 24;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const max = niceMax(Math.max(0, ...values));
  const n = values.length;
  const slot = plotW / n;
  const chart = svg("svg", { class: `bars bars-${kind}`, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  chart.append(svg("title", {}, label));
  for (const fraction of [0, 0.5, 1]) {
    const gy = top + plotH - fraction * plotH;
    chart.append(svg("line", { class: fraction === 0 ? "axis" : "grid", x1: left, x2: width - right, y1: gy, y2: gy }));
    chart.append(svg("text", { class: "tick", x: left - 6, y: gy + 4, "text-anchor": "end" }, count(Math.round(max * fraction))));
  }
  values.forEach((v, i) => {
    const barH = (v / max) * plotH;
    const partial = i === n - 1; // the current minute is still filling up
    const bar = svg("rect", {
      class: partial ? "bar bar-partial" : "bar",
      x: (left + i * slot + slot * 0.15).toFixed(1),
      y: (top + plotH - barH).toFixed(1),
      width: Math.max(1, slot * 0.7).toFixed(1),
      height: Math.max(v > 0 ? 1.5 : 0, barH).toFixed(1),
      rx: 1.5,
    });
    bar.append(svg("title", {}, `${clock(minutes[i], false).slice(0, 5)} UTC: ${count(v)} ${unit}${partial ? " so far" : ""}`));
    chart.append(bar);
  });
  if (n > 0) {
    chart.append(svg("text", { class: "tick", x: left, y: height - 6 }, `${clock(minutes[0], false).slice(0, 5)} UTC`));
    chart.append(svg("text", { class: "tick", x: width - right, y: height - 6, "text-anchor": "end" }, "now"));
  }
  return chart;
}

/** "last full minute 1,020 · peak 1,200 · 30 min total 14,400" for a series, oldest first. */
export function summarize(values, unit) {
  const lastFull = values.length > 1 ? values[values.length - 2] : values[0] || 0;
  const peak = Math.max(0, ...values);
  const total = values.reduce((a, b) => a + b, 0);
  return `last full minute ${count(lastFull)} ${unit}, peak ${count(peak)}, total ${count(total)}`;
}
