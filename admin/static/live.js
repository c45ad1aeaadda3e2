// Polling that keeps a page live: never overlapping, slower while the tab is hidden, and honest
// about a lost connection (the header says so, a banner warns, screen readers are told once).

import { announce } from "./api.js";
import { tickTimes } from "./format.js";

const live = document.getElementById("live");
const banner = document.getElementById("connection-banner");
let lastOk = null;
let failures = 0;

function showLive() {
  if (!live) return;
  const text = live.querySelector(".live-text");
  if (failures >= 2) {
    live.dataset.state = "lost";
    text.textContent = "Reconnecting…";
  } else if (lastOk) {
    live.dataset.state = "live";
    const ago = Math.max(0, Math.round((Date.now() - lastOk) / 1000));
    text.textContent = ago < 2 ? "Live" : `Live · ${ago} s ago`;
  }
}

/** Calls `fn` now and every `intervalMs` after the previous call finished. */
export function poll(fn, intervalMs, { tracksConnection = false } = {}) {
  let timer = null;
  let busy = false;
  async function run() {
    if (busy) return;
    busy = true;
    clearTimeout(timer);
    try {
      await fn();
      if (tracksConnection) {
        if (failures >= 2) announce("Connection to the manager restored.");
        failures = 0;
        lastOk = Date.now();
        if (banner) banner.hidden = true;
      }
    } catch (error) {
      if (tracksConnection) {
        failures += 1;
        if (failures === 2) {
          announce("Lost contact with the manager; retrying.");
          if (banner) banner.hidden = false;
        }
      }
      console.warn(error);
    } finally {
      busy = false;
    }
    if (tracksConnection) showLive();
    timer = setTimeout(run, document.hidden ? intervalMs * 4 : intervalMs);
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) run();
  });
  run();
  return { now: run };
}

setInterval(() => {
  tickTimes();
  showLive();
}, 1000);
