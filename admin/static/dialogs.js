// The two dialogs of the overview: a key's audit history, and the settings editor that checks the
// JSON before sending it (the server checks again and its answer is shown in the dialog).

import { request, toast, ApiError } from "./api.js";
import { exact, h, relative } from "./format.js";

function wireClose(dialog) {
  if (dialog.dataset.wired) return;
  dialog.dataset.wired = "1";
  for (const button of dialog.querySelectorAll("[data-close]")) button.addEventListener("click", () => dialog.close());
  // A click on the backdrop (outside the dialog's box) closes it too.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
}

// ---- audit history ----------------------------------------------------------------------------

function describeValue(value, kind) {
  if (value === null || value === undefined) return "—";
  if (kind === "flag") return value ? "On" : "Off";
  return value === "***" ? "hidden" : JSON.stringify(value);
}

function describeChange(row) {
  const old = describeValue(row.old_value, row.kind);
  const now = describeValue(row.new_value, row.kind);
  if (row.operation === "INSERT") return h("span", {}, "created as ", h("strong", {}, now));
  if (row.operation === "DELETE") return h("span", {}, "deleted (was ", h("strong", {}, old), ")");
  return h("span", { class: "change" }, h("span", { class: "old" }, old), h("span", { class: "arrow", "aria-label": "changed to" }, " → "), h("strong", {}, now));
}

export async function openAudit(key) {
  const dialog = document.getElementById("audit-dialog");
  wireClose(dialog);
  document.getElementById("audit-key").textContent = key;
  const body = document.getElementById("audit-rows");
  const empty = document.getElementById("audit-empty");
  body.replaceChildren(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "Loading…")));
  empty.hidden = true;
  dialog.showModal();
  try {
    const rows = await request("GET", `/api/audit?key=${encodeURIComponent(key)}&limit=100`);
    body.replaceChildren(...rows.map((r) => h("tr", {},
      h("td", { class: "nowrap" }, h("time", { datetime: r.changed_at, title: exact(r.changed_at) }, relative(r.changed_at)), h("span", { class: "exact" }, exact(r.changed_at))),
      h("td", {}, h("strong", {}, r.actor)),
      h("td", {}, describeChange(r)),
      h("td", { class: "muted" }, r.db_role, r.application_name ? ` (${r.application_name})` : ""),
    )));
    empty.hidden = rows.length > 0;
  } catch (error) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 4 }, `Could not load the history: ${error.message}`)));
  }
}

// ---- the settings editor ----------------------------------------------------------------------

const KEY = /^[a-z0-9_]{1,200}$/;

function showError(input, box, message) {
  box.textContent = message || "";
  box.hidden = !message;
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

/** Returns {ok, value} after checking the form, and shows what is wrong next to each field. */
function check(form, { quietEmpty = false } = {}) {
  const key = form.elements.key;
  const text = form.elements.value;
  const keyError = document.getElementById("setting-key-error");
  const valueError = document.getElementById("setting-value-error");
  let ok = true;
  let value;
  if (!key.value.trim()) {
    showError(key, keyError, quietEmpty ? "" : "Enter a key, such as reddit_batch_size.");
    ok = false;
  } else if (!KEY.test(key.value.trim())) {
    showError(key, keyError, "Use only lowercase letters, digits and _.");
    ok = false;
  } else showError(key, keyError, "");
  if (!text.value.trim()) {
    showError(text, valueError, quietEmpty ? "" : "Enter a JSON value.");
    ok = false;
  } else {
    try {
      value = JSON.parse(text.value);
      if (value === null) {
        showError(text, valueError, "null is not a value a setting can hold.");
        ok = false;
      } else showError(text, valueError, "");
    } catch (error) {
      showError(text, valueError, `Not valid JSON: ${error.message.replace(/^JSON\.parse: /, "")}. Text needs double quotes, e.g. "abc".`);
      ok = false;
    }
  }
  return { ok, key: key.value.trim(), value };
}

let onSaved = null;

export function openSettingEditor(existing, saved) {
  const dialog = document.getElementById("setting-dialog");
  const form = document.getElementById("setting-form");
  wireClose(dialog);
  onSaved = saved;
  const key = form.elements.key;
  const text = form.elements.value;
  document.getElementById("setting-title").textContent = existing ? "Edit setting" : "Add a setting";
  key.value = existing ? existing.key : "";
  key.readOnly = Boolean(existing);
  // A secret's value is never sent to the browser: the field starts empty and must be re-entered.
  text.value = existing && !existing.masked ? JSON.stringify(existing.value, null, 2) : "";
  text.placeholder = existing && existing.masked ? "The current value is secret and not shown. Enter a new JSON value." : "";
  document.getElementById("setting-server-error").hidden = true;
  check(form, { quietEmpty: true });
  if (!form.dataset.wired) {
    form.dataset.wired = "1";
    form.addEventListener("input", () => check(form, { quietEmpty: true }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      submit(form, dialog);
    });
  }
  dialog.showModal();
  (existing ? text : key).focus();
}

async function submit(form, dialog) {
  const result = check(form);
  const serverError = document.getElementById("setting-server-error");
  serverError.hidden = true;
  if (!result.ok) {
    form.querySelector('[aria-invalid="true"]')?.focus();
    return;
  }
  const save = document.getElementById("setting-save");
  save.disabled = true;
  try {
    const row = await request("PUT", `/api/settings/${encodeURIComponent(result.key)}`, { value: result.value });
    dialog.close();
    toast(`Saved ${row.key}. A worker picks it up at its next cycle.`, "success");
    if (onSaved) onSaved(row);
  } catch (error) {
    serverError.textContent = `The manager refused it: ${error instanceof ApiError ? error.message : "no answer"}`;
    serverError.hidden = false;
  } finally {
    save.disabled = false;
  }
}
