// The job list (/): newest first, kept live by the SSE stream GET /api/events.
//
// The page loads /api/jobs, then follows /api/events from the `events_cursor` of that answer:
// `job` events (created / finished) insert or update a row, `progress` events update line
// counts. A server without the events stream (no cursor, or the stream fails before it ever
// opened) gets the list reloaded every 5 s instead. A hidden tab closes the events stream and
// reloads the list and follows on when shown again (HTTP/1.1 allows six connections per
// server: hidden tabs must not hold them). On a narrow screen the table shows as cards.

import {
  el, getJSON, HttpError, statusBadge, formatDuration, formatAgo, formatDateTime, jobDuration,
  formatCount,
} from "./common.js";
import { metaList } from "./meta.js";
import { showAccount, signedOutNotice } from "./account.js";

const POLL_MS = 5000;
const PAGE_SIZE = 100;

// The filter the page's URL carries (/?status=failed&name=deploy&meta.branch=main): the server
// filters the listing; live events carry the job, so `shows` filters them here the same way.
const FILTER = new URLSearchParams([...new URLSearchParams(location.search)].filter(
  ([key]) => ["status", "name", "name_prefix"].includes(key) || key.startsWith("meta.")));
const FILTER_QUERY = FILTER.toString() ? `&${FILTER}` : "";

function shows(job) {
  const statuses = FILTER.getAll("status").flatMap((s) => s.split(",")).map((s) => s.trim())
    .filter(Boolean);
  if (statuses.length && !statuses.includes(job.status)) return false;
  for (const [key, value] of FILTER) {
    if (key === "name" && value && job.name !== value) return false;
    if (key === "name_prefix" && !job.name.startsWith(value)) return false;
    if (key.startsWith("meta.") && (job.meta || {})[key.slice(5)] !== value) return false;
  }
  return true;
}

class JobList {
  constructor() {
    this.jobs = new Map(); // id -> job
    this.rows = new Map(); // id -> <tr>
    this.body = document.getElementById("jobs-body");
    this.mode = "loading"; // "sse" | "polling"
    this.nextCursor = null;
    this.source = null;
    this.everOpened = false;
    this.attempt = 0;
  }

  async start() {
    if (FILTER_QUERY) {
      const shown = [...FILTER].map(([key, value]) => `${key}=${value}`).join(" · ");
      document.querySelector(".list-head .sub").replaceChildren(
        `Only ${shown} · `, el("a", { href: "/" }, "all jobs"));
    }
    document.getElementById("more").addEventListener("click", () => this.loadMore());
    this.body.addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-id]");
      if (row && !event.target.closest("a") && !window.getSelection().toString()) {
        location.href = `/jobs/${row.dataset.id}`;
      }
    });
    document.addEventListener("visibilitychange", () => this.visibility());
    await this.reload();
    setInterval(() => this.tick(), 1000);
  }

  async reload() {
    let page;
    if (this.mode === "signed-out") return;
    try {
      page = await getJSON(`/api/jobs?limit=${PAGE_SIZE}${FILTER_QUERY}`);
    } catch (error) {
      if (error instanceof HttpError && (error.status === 401 || error.status === 403)) {
        this.signedOut();
        return;
      }
      if (error instanceof HttpError && error.status === 400) {
        this.setMode("offline", error.message); // a filter in the URL the server refuses
        return;
      }
      this.setMode("offline", `Cannot reach the server (${error.message}); retrying…`);
      clearTimeout(this.pollTimer);
      this.pollTimer = setTimeout(() => this.reload(), POLL_MS);
      return;
    }
    this.merge(page.jobs);
    if (!this.loadedOnce) {
      this.loadedOnce = true;
      this.nextCursor = page.next_cursor;
      document.getElementById("more").hidden = !this.nextCursor;
    }
    if (this.mode === "sse") return;
    const cursor = page.events_cursor;
    if (cursor === undefined || cursor === null || this.mode === "polling-only") {
      this.startPolling();
    } else {
      this.openEvents(cursor);
    }
  }

  async loadMore() {
    if (!this.nextCursor) return;
    const page = await getJSON(`/api/jobs?limit=${PAGE_SIZE}${FILTER_QUERY}&cursor=${encodeURIComponent(this.nextCursor)}`);
    this.merge(page.jobs);
    this.nextCursor = page.next_cursor;
    document.getElementById("more").hidden = !this.nextCursor;
  }

  /** Hidden: let the events stream go. Shown: resume it from the last event id. */
  visibility() {
    if (document.visibilityState === "hidden") {
      if (this.source && this.mode === "sse") {
        this.source.close();
        this.source = null;
        this.paused = true;
        this.setMode("sse", "Paused (tab hidden)", "paused");
      }
    } else if (this.paused) {
      this.paused = false; // what changed meanwhile (progress events have no id): reload
      this.mode = "loading";
      this.reload();
    }
  }

  openEvents(cursor) {
    clearTimeout(this.pollTimer);
    if (this.source) this.source.close();
    const source = new EventSource(`/api/events?after=${encodeURIComponent(cursor)}`);
    this.source = source;
    source.onopen = () => {
      this.everOpened = true;
      this.attempt = 0;
      this.setMode("sse", "Live");
    };
    source.addEventListener("job", (event) => {
      const job = JSON.parse(event.data);
      delete job.kind;
      if (shows(job)) this.merge([job]);
      else this.drop(job.id); // (it no longer matches: a `status=running` job has finished)
    });
    source.addEventListener("progress", (event) => {
      const { jobs } = JSON.parse(event.data);
      for (const { id, line_count: count } of jobs || []) {
        const job = this.jobs.get(id);
        if (job && count > job.line_count) {
          job.line_count = count;
          this.renderRow(job);
        }
      }
    });
    source.addEventListener("signed_out", () => {
      if (source === this.source) this.signedOut();
    });
    source.onerror = () => {
      if (source !== this.source) return;
      if (source.readyState !== EventSource.CLOSED) {
        this.setMode("sse", "Reconnecting…", "reconnecting");
        return;
      }
      source.close();
      this.source = null;
      if (!this.everOpened) {
        // No events stream on this server: poll.
        this.mode = "polling-only";
        this.startPolling();
        return;
      }
      // Closed for good (a proxy error, a restart): reload the list and follow from its cursor.
      this.mode = "loading";
      this.setMode("loading", "Reconnecting…", "reconnecting");
      const delay = Math.min(10000, 1000 * 2 ** this.attempt++);
      setTimeout(() => this.reload(), delay);
    };
  }

  /** The session ended: stop the stream and every timer, say so, link to the sign-in page. */
  signedOut() {
    this.mode = "signed-out";
    clearTimeout(this.pollTimer);
    if (this.source) this.source.close();
    this.source = null;
    this.setMode("signed-out", "Signed out");
    const notice = document.getElementById("signed-out");
    notice.replaceChildren(...signedOutNotice());
    notice.hidden = false;
  }

  startPolling() {
    if (this.mode !== "polling-only") this.mode = "polling";
    this.setMode(this.mode, `Refreshing every ${POLL_MS / 1000} s`);
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(() => this.reload(), POLL_MS);
  }

  setMode(mode, label, state = mode) {
    if (this.mode === "signed-out" && mode !== "signed-out") return;
    if (mode !== "offline") this.mode = mode === "polling-only" ? "polling-only" : mode;
    const pill = document.getElementById("live");
    pill.dataset.state = state;
    pill.querySelector(".conn-label").textContent = label;
  }

  /** Insert or update jobs. */
  merge(jobs) {
    for (const job of jobs) {
      const known = this.jobs.get(job.id);
      // A progress event may have counted further than this (older) snapshot.
      if (known && known.line_count > job.line_count && job.status === "running") {
        job.line_count = known.line_count;
      }
      this.jobs.set(job.id, job);
      this.renderRow(job);
    }
    this.order();
    document.getElementById("empty").hidden = this.jobs.size > 0;
    document.getElementById("jobs-table").hidden = this.jobs.size === 0;
  }

  drop(id) {
    if (!this.jobs.delete(id)) return;
    this.rows.get(id).remove();
    this.rows.delete(id);
    document.getElementById("empty").hidden = this.jobs.size > 0;
    document.getElementById("jobs-table").hidden = this.jobs.size === 0;
  }

  order() {
    const ids = [...this.rows.keys()].sort((a, b) => b - a);
    let previous = null;
    for (const id of ids) {
      const row = this.rows.get(id);
      const expected = previous ? previous.nextSibling : this.body.firstChild;
      if (row !== expected) this.body.insertBefore(row, expected);
      previous = row;
    }
  }

  renderRow(job) {
    let row = this.rows.get(job.id);
    if (!row) {
      row = el("tr", { "data-id": job.id, class: "job-row" });
      this.rows.set(job.id, row);
      this.body.prepend(row);
    }
    const key = `${job.status}|${job.line_count}|${job.name}|${job.exit_code}|${JSON.stringify(job.meta || null)}`;
    row.dataset.status = job.status;
    if (row._key !== key) {
      row._key = key;
      const exit = job.exit_code !== null && job.exit_code !== undefined && job.status !== "running"
        ? el("span", { class: "exit" }, `exit ${job.exit_code}`) : null;
      const meta = metaList(job.meta, { limit: 5 });
      row.replaceChildren(
        el("td", { class: "c-status" }, statusBadge(job.status)),
        el("td", { class: "c-name" },
          el("a", { href: `/jobs/${job.id}`, class: "job-link" }, job.name),
          el("span", { class: "job-num" }, `#${job.id}`), exit,
          meta.childElementCount ? el("div", { class: "job-meta" }, meta) : null),
        el("td", { class: "c-lines num", "data-lines": job.line_count, "data-label": "Lines" }, formatCount(job.line_count)),
        el("td", { class: "c-started", "data-label": "Started" }, el("time", { datetime: job.created_at, title: formatDateTime(job.created_at) }, formatAgo(job.created_at))),
        el("td", { class: "c-duration num", "data-label": "Duration" }, formatDuration(jobDuration(job))),
      );
    }
  }

  /** Running durations and "x min ago" move on by themselves. */
  tick() {
    const now = Date.now();
    for (const [id, job] of this.jobs) {
      const row = this.rows.get(id);
      if (!row) continue;
      const time = row.querySelector("time");
      const ago = formatAgo(job.created_at, now);
      if (time && time.textContent !== ago) time.textContent = ago;
      if (job.status === "running") {
        const cell = row.querySelector(".c-duration");
        const text = formatDuration(jobDuration(job, now));
        if (cell.textContent !== text) cell.textContent = text;
      }
    }
  }
}

const list = new JobList();
window.__logstream = {
  mode: () => list.mode,
  jobs: () => [...document.querySelectorAll("#jobs-body tr")].map((row) => ({
    id: Number(row.dataset.id), status: row.dataset.status,
    lines: Number(row.querySelector(".c-lines").dataset.lines),
    name: row.querySelector(".job-link").textContent,
  })),
};
list.start();
showAccount();
