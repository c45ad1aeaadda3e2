// Restart / stop / start buttons, on the overview rows and on a worker's page: which ones make sense
// in which state, and what happens when one is pressed.

import { isAdmin, request, toast, ApiError } from "./api.js";

const RUNNING_LIKE = new Set(["starting", "running", "backoff", "stopping"]);

/** Shows and enables the buttons that make sense for the worker's state, with the reason when not. */
export function updateActionButtons(container, w) {
  if (!container) return;
  const restart = container.querySelector('[data-action="restart"]');
  const stop = container.querySelector('[data-action="stop"]');
  const start = container.querySelector('[data-action="start"]');
  const run = container.querySelector('[data-action="run"]');
  const compact = container.closest("tr") !== null; // overview rows show Stop or Start, not both
  let why = "";
  if (w.state === "disabled") why = `${w.name} has enabled: false in the config; the manager never runs it`;
  else if (w.state === "paused") why = `Paused by its flag: turn ${w.flag} on to resume it`;
  for (const button of [restart, stop, start]) {
    if (!button) continue;
    if (why) button.title = why;
    else button.removeAttribute("title");
  }
  if (restart) restart.disabled = Boolean(why) || w.state === "stopping";
  if (run) run.disabled = Boolean(why) || w.state !== "running";
  if (stop) {
    stop.disabled = Boolean(why) || !RUNNING_LIKE.has(w.state) || w.state === "stopping";
    if (compact) stop.hidden = !(RUNNING_LIKE.has(w.state) || why);
  }
  if (start) {
    start.disabled = Boolean(why) || RUNNING_LIKE.has(w.state);
    if (compact) start.hidden = !stop.hidden;
  }
}

const WORDS = {
  restart: (n) => `Restart requested for ${n}.`,
  stop: (n) => `Stopping ${n} gracefully; it stays stopped until started.`,
  start: (n) => `Starting ${n}.`,
  run: (n) => `A cycle of ${n} was asked for; it starts within a second.`,
};

/** One listener for every action button under `root`; `onDone(status)` gets the worker's new status. */
export function bindWorkerActions(root, onDone) {
  if (!isAdmin) return;
  root.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || button.disabled || button.getAttribute("aria-busy") === "true") return;
    const { action, worker } = button.dataset;
    button.setAttribute("aria-busy", "true");
    try {
      const answer = await request("POST", `/api/workers/${encodeURIComponent(worker)}/${action}`);
      toast(WORDS[action](worker), "success");
      if (answer && answer.worker && typeof answer.worker === "object") onDone(answer.worker);
    } catch (error) {
      toast(error instanceof ApiError ? `Could not ${action} ${worker}: ${error.message}` : `Could not ${action} ${worker}.`, "error");
    } finally {
      button.removeAttribute("aria-busy");
    }
  });
}
