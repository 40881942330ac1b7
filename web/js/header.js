// The job header (name, status badge, start, duration, line count, exit code), the connection
// pill and banner, and the end-of-job bar of the log viewer.

import {
  el, FINAL, statusBadge, formatDuration, formatDateTime, jobDuration, formatCount,
} from "./common.js";

export function renderHeader(viewer) {
  const job = viewer.job;
  if (!job) return;
  viewer.$("job-title").textContent = job.name;
  viewer.$("crumb-name").textContent = job.name;
  viewer.$("job-id").textContent = `#${job.id}`;
  const badge = viewer.$("job-status");
  if (badge.dataset.status !== job.status) {
    badge.replaceChildren(statusBadge(job.status));
    badge.dataset.status = job.status;
  }
  const started = viewer.$("job-started");
  if (started.getAttribute("datetime") !== job.created_at) {
    started.textContent = formatDateTime(job.created_at);
    started.setAttribute("datetime", job.created_at || "");
  }
  viewer.$("job-duration").textContent = formatDuration(jobDuration(job)) || "–";
  viewer.$("job-lines").textContent = formatCount(Math.max(job.line_count, viewer.store.lineCount));
  const exit = viewer.$("job-exit");
  exit.hidden = !FINAL.has(job.status) || job.exit_code === null || job.exit_code === undefined;
  exit.querySelector("b").textContent = String(job.exit_code);
  document.title = `#${job.id} ${job.name} · ${job.status} — logstream`;
}

export function showConnection(viewer, state) {
  if (viewer.connectionLog[viewer.connectionLog.length - 1] !== state) viewer.connectionLog.push(state);
  const pill = viewer.$("conn");
  pill.dataset.state = state;
  const label = {
    connecting: "Connecting…", live: "Live", reconnecting: "Connection lost · reconnecting…",
    recovered: "Reconnected", ended: "Finished",
  }[state] || state;
  pill.querySelector(".conn-label").textContent = label;
  const banner = viewer.$("conn-banner");
  banner.hidden = state !== "reconnecting";
  clearTimeout(viewer.recoveredTimer);
  if (state === "recovered") {
    viewer.recoveredTimer = setTimeout(() => {
      if (pill.dataset.state === "recovered") showConnection(viewer, "live");
    }, 3000);
  }
}

export function showEnd(viewer) {
  const job = viewer.job;
  if (!FINAL.has(job.status)) return;
  const bar = viewer.$("end-banner");
  bar.hidden = false;
  bar.dataset.status = job.status;
  const words = { succeeded: "Job succeeded", failed: "Job failed", canceled: "Job canceled" };
  const parts = [el("strong", {}, words[job.status] || job.status)];
  if (job.exit_code !== null && job.exit_code !== undefined) {
    parts.push(el("span", { class: "sep" }, "·"), el("span", {}, "exit code ", el("b", { class: "exit-code" }, String(job.exit_code))));
  }
  parts.push(el("span", { class: "sep" }, "·"), `${formatCount(job.line_count)} lines`);
  const duration = formatDuration(jobDuration(job));
  if (duration) parts.push(el("span", { class: "sep" }, "·"), duration);
  bar.replaceChildren(el("span", { class: "end-icon", "aria-hidden": "true" }), ...parts);
}
