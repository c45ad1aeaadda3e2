// Talking to the manager's JSON API with the session cookie, plus the console's feedback channels:
// toasts for the operator's own actions and a polite live region for status changes.

const csrfToken = document.querySelector('meta[name="csrf-token"]')?.content || "";

export const isAdmin = document.body.dataset.role === "admin";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function describe(status, data) {
  const detail = data && data.detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".") || "value"}: ${d.msg}`).join("; ");
  }
  if (typeof detail === "string") return detail;
  if (status === 403) return "Not allowed.";
  return `The manager answered ${status}.`;
}

/** fetch() with the CSRF header on every change; throws ApiError with the server's message. */
export async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.status === 401 && document.body.dataset.via === "cookie") {
    // The session expired (or the token was rotated): sign in again and come back here.
    window.location.assign(`/workers/login?next=${encodeURIComponent(window.location.pathname)}`);
  }
  if (!response.ok) throw new ApiError(response.status, describe(response.status, data));
  return data;
}

export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const item = document.createElement("div");
  item.className = `toast toast-${kind}`;
  item.textContent = message;
  box.append(item);
  setTimeout(() => item.classList.add("toast-leaving"), kind === "error" ? 7000 : 4000);
  setTimeout(() => item.remove(), kind === "error" ? 7400 : 4400);
}

let pending = [];
let timer = null;

/** Says something to screen readers, batching what happens within half a second. */
export function announce(message) {
  pending.push(message);
  if (timer) return;
  timer = setTimeout(() => {
    document.getElementById("announcer").textContent = pending.join(" ");
    pending = [];
    timer = null;
  }, 500);
}
