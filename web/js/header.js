// The job header (name, status badge, start, duration, line count, exit code), the connection
// pill and banner, and the end-of-job bar of the log viewer.

import {
  el, FINAL, statusBadge, formatDuration, formatDateTime, jobDuration, formatCount, HttpError,
} from "./common.js";
import { metaList } from "./meta.js";
import { signedOutNotice } from "./account.js";

const SLOW_CONNECT_MS = 4000; // still connecting after this long: say why it may be

const $ = (id) => document.getElementById(id);

/** Fill the header from the job; `lineCount` is the lines the page knows of (may be ahead). */
export function renderHeader(job, lineCount) {
  if (!job) return;
  $("job-title").textContent = job.name;
  $("crumb-name").textContent = job.name;
  $("job-id").textContent = `#${job.id}`;
  const badge = $("job-status");
  if (badge.dataset.status !== job.status) {
    badge.replaceChildren(statusBadge(job.status));
    badge.dataset.status = job.status;
  }
  const started = $("job-started");
  if (started.getAttribute("datetime") !== job.created_at) {
    started.textContent = formatDateTime(job.created_at);
    started.setAttribute("datetime", job.created_at || "");
  }
  $("job-duration").textContent = formatDuration(jobDuration(job)) || "–";
  $("job-lines").textContent = formatCount(Math.max(job.line_count, lineCount));
  const meta = $("job-meta");
  const metaKey = JSON.stringify(job.meta || null);
  if (meta && meta.dataset.key !== metaKey) {
    meta.dataset.key = metaKey;
    const list = metaList(job.meta);
    meta.hidden = list.childElementCount === 0;
    meta.replaceChildren(list);
  }
  const exit = $("job-exit");
  exit.hidden = !FINAL.has(job.status) || job.exit_code === null || job.exit_code === undefined;
  exit.querySelector("b").textContent = String(job.exit_code);
  document.title = `#${job.id} ${job.name} · ${job.status} — logstream`;
  renderCancel(job);
}

// The Cancel button: shown to those the server lets cancel (`can_cancel`) while the job runs.
// The runner hears of it on its next append or keepalive, stops the command and finishes the
// job as canceled; until then the button says "Canceling…".
const cancel = { job: null, sending: false, error: null };

function renderCancel(job) {
  const button = $("cancel-btn");
  if (!button) return;
  cancel.job = job;
  button.hidden = !job.can_cancel || FINAL.has(job.status);
  if (!button.dataset.wired) {
    button.dataset.wired = "1";
    button.addEventListener("click", () => cancelJob());
  }
  const canceling = Boolean(job.cancel_requested_at) || cancel.sending;
  button.disabled = canceling;
  if (cancel.error) {
    button.textContent = "Cancel failed — retry";
    button.title = cancel.error;
  } else {
    button.textContent = canceling ? "Canceling…" : "Cancel";
  }
}

async function cancelJob() {
  const job = cancel.job;
  if (!job) return;
  cancel.sending = true;
  cancel.error = null;
  renderCancel(job);
  try {
    const response = await fetch(`/api/jobs/${job.id}/cancel`, {
      method: "POST", headers: { Accept: "application/json", "Content-Type": "application/json" },
      body: "{}",
    });
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new HttpError(response.status, body);
    if (body && body.cancel_requested_at) job.cancel_requested_at = body.cancel_requested_at;
  } catch (error) {
    cancel.error = error.message;
  } finally {
    cancel.sending = false;
    renderCancel(cancel.job);
  }
}

/** The connection pill and banner; `log` keeps every state shown, in order (repeats once). */
export class ConnectionPill {
  constructor() {
    this.log = [];
    this.recoveredTimer = null;
  }

  show(state) {
    if (this.log[this.log.length - 1] !== state) this.log.push(state);
    const pill = $("conn");
    pill.dataset.state = state;
    const label = {
      connecting: "Connecting…", live: "Live", reconnecting: "Connection lost · reconnecting…",
      recovered: "Reconnected", ended: "Finished", paused: "Paused (tab hidden)",
      "signed-out": "Signed out",
    }[state] || state;
    pill.querySelector(".conn-label").textContent = label;
    const banner = $("conn-banner");
    if (state === "signed-out") {
      banner.replaceChildren(...signedOutNotice());
      banner.dataset.kind = "signed-out";
    }
    banner.hidden = state !== "reconnecting" && state !== "signed-out";
    clearTimeout(this.slowTimer);
    $("conn-slow").hidden = true;
    if (state === "connecting" || state === "reconnecting") {
      this.slowTimer = setTimeout(showSlow, SLOW_CONNECT_MS);
    }
    clearTimeout(this.recoveredTimer);
    if (state === "recovered") {
      this.recoveredTimer = setTimeout(() => {
        if (pill.dataset.state === "recovered") this.show("live");
      }, 3000);
    }
  }
}

/** Over HTTP/1.1 a browser opens at most six connections to a server: with six other live
 * tabs (in other windows: hidden tabs let theirs go) this one waits for a free one. */
function showSlow() {
  const nav = performance.getEntriesByType("navigation")[0];
  const protocol = nav && nav.nextHopProtocol;
  const box = $("conn-slow");
  box.textContent = protocol === "h2" || protocol === "h3"
    ? "Still connecting to the live log…"
    : "Still connecting: over HTTP/1.1 a browser opens at most six connections to one server, "
      + "and other logstream tabs or windows showing live logs may hold them all. Close or hide "
      + "some (hidden tabs let theirs go), or serve logstream over HTTPS (--certfile/--keyfile) "
      + "so that every tab shares one HTTP/2 connection.";
  box.hidden = false;
}

/** The end-of-job bar, once the job is final. */
export function showEnd(job) {
  if (!FINAL.has(job.status)) return;
  const bar = $("end-banner");
  bar.hidden = false;
  bar.dataset.status = job.status;
  const words = {
    succeeded: "Job succeeded", failed: "Job failed", canceled: "Job canceled",
    lost: "Job lost: its runner stopped sending",
  };
  const parts = [el("strong", {}, words[job.status] || job.status)];
  if (job.exit_code !== null && job.exit_code !== undefined) {
    parts.push(el("span", { class: "sep" }, "·"), el("span", {}, "exit code ", el("b", { class: "exit-code" }, String(job.exit_code))));
  }
  parts.push(el("span", { class: "sep" }, "·"), `${formatCount(job.line_count)} lines`);
  const duration = formatDuration(jobDuration(job));
  if (duration) parts.push(el("span", { class: "sep" }, "·"), duration);
  bar.replaceChildren(el("span", { class: "end-icon", "aria-hidden": "true" }), ...parts);
}
