// Helpers shared by the job list and the log viewer: DOM building, JSON fetches, formatting.

/** Build an element: el("span", {class: "x", title: "y"}, "text", child). Text is textContent. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export class HttpError extends Error {
  constructor(status, body) {
    super(`HTTP ${status}${body && body.message ? ": " + body.message : ""}`);
    this.status = status;
    this.body = body;
  }
}

/** GET a JSON document; throws HttpError for a non-2xx answer. */
export async function getJSON(url, options = {}) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, ...options });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) throw new HttpError(response.status, body);
  return body;
}

// The final statuses (logstream/protocol.py STATUSES_FINAL): "lost" is the server's own end
// for a job whose runner stopped sending (no append, no keepalive).
export const FINAL = new Set(["succeeded", "failed", "canceled", "lost"]);

const STATUS_LABEL = {
  running: "Running",
  succeeded: "Succeeded",
  failed: "Failed",
  canceled: "Canceled",
  lost: "Lost",
};

/** A coloured status badge; running ones carry a spinner. */
export function statusBadge(status) {
  const known = STATUS_LABEL[status] ? status : "unknown";
  return el(
    "span",
    { class: `badge badge-${known}`, "data-status": status },
    el("span", { class: "badge-icon", "aria-hidden": "true" }),
    STATUS_LABEL[status] || String(status),
  );
}

/** 3.2s, 4m 05s, 2h 03m. */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
  if (seconds < 0) seconds = 0;
  if (seconds < 10) return `${seconds.toFixed(1)}s`;
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  return `${h}h ${String(m % 60).padStart(2, "0")}m`;
}

/** "just now", "5 min ago", "3 h ago", or a date for older ones. */
export function formatAgo(iso, now = Date.now()) {
  if (!iso) return "";
  const then = Date.parse(iso);
  const seconds = Math.round((now - then) / 1000);
  if (seconds < 10) return "just now";
  if (seconds < 60) return `${seconds}s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  return new Date(then).toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

export function formatDateTime(iso) {
  if (!iso) return "";
  return new Date(Date.parse(iso)).toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

/** Local wall-clock time with milliseconds, for per-line timestamps. */
export function formatClock(ms) {
  if (ms === null || ms === undefined) return "";
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** The job's duration: final for finished jobs, growing for running ones. */
export function jobDuration(job, now = Date.now()) {
  if (job.duration !== null && job.duration !== undefined) return job.duration;
  if (job.status === "running" && job.created_at) return (now - Date.parse(job.created_at)) / 1000;
  if (job.finished_at && job.created_at) {
    return (Date.parse(job.finished_at) - Date.parse(job.created_at)) / 1000;
  }
  return null;
}

export function formatCount(n) {
  return Number(n || 0).toLocaleString("en-US");
}
