// The live tail of one job: an EventSource on /api/jobs/{id}/log that never gives up.
//
// EventSource reconnects by itself after a dropped connection, sending Last-Event-ID (the last
// line number), so the server resumes exactly after it. But any non-200 answer (a proxy's 502
// during a deploy, or the 204 that means "finished") closes it for good: then this class asks
// the job API what happened and either reports the end or opens a new EventSource with
// `?after=<last line>`. A watchdog covers a stream that silently stops delivering.
//
// On a server that needs tokens, a session that ends (expired, signed out, token revoked) ends
// the stream with `event: signed_out`, and a reconnect is refused with 401/403: either way the
// stream stops for good in the "signed-out" state, so a signed-out tab never hammers the server.

import { getJSON, FINAL, HttpError } from "./common.js";

const WATCHDOG_MS = 15000;

export class LogStream {
  /**
   * handlers: onLines([{n, text, ts}]), onEnd({status, exit_code, line_count}),
   * onState("connecting" | "live" | "reconnecting" | "recovered" | "ended" | "signed-out").
   */
  constructor(jobId, after, handlers) {
    this.jobId = jobId;
    this.last = after; // the last line number received (the resume point)
    this.handlers = handlers;
    this.source = null;
    this.ended = false;
    this.attempt = 0;
    this.lostAt = null; // when the connection was lost (null while healthy)
    this.lastActivity = Date.now();
    this.pending = [];
    this.flushQueued = false;
    this.reconnects = 0;
  }

  start() {
    this._open();
    this.watchdog = setInterval(() => this._checkAlive(), WATCHDOG_MS);
  }

  /** The tab was hidden: close the connection, keep the resume point (the last line). */
  pause() {
    if (this.ended || this.paused) return;
    this.paused = true;
    clearInterval(this.watchdog);
    clearTimeout(this.retryTimer);
    if (this.source) this.source.close();
    this.source = null;
    this._flush();
    this._state("paused");
  }

  /** The tab is shown again: reopen after the last line received. */
  resume() {
    if (this.ended || !this.paused) return;
    this.paused = false;
    this.lostAt = null;
    this.attempt = 0;
    this.lastActivity = Date.now();
    this._open();
    this.watchdog = setInterval(() => this._checkAlive(), WATCHDOG_MS);
  }

  stop() {
    this.ended = true;
    clearInterval(this.watchdog);
    clearTimeout(this.retryTimer);
    if (this.source) this.source.close();
    this.source = null;
  }

  _state(state) {
    this.state = state;
    this.handlers.onState(state);
  }

  _open() {
    if (this.ended || this.paused) return;
    if (this.source) this.source.close();
    const url = `/api/jobs/${this.jobId}/log?after=${this.last}`;
    const source = new EventSource(url);
    this.source = source;
    this._state(this.lostAt ? "reconnecting" : "connecting");
    source.onopen = () => {
      if (source !== this.source) return;
      this.attempt = 0;
      this.lastActivity = Date.now();
      if (this.lostAt) {
        this.lostAt = null;
        this._state("recovered");
      } else {
        this._state("live");
      }
    };
    source.onmessage = (event) => {
      if (source !== this.source) return;
      this.lastActivity = Date.now();
      const n = Number(event.lastEventId);
      if (!Number.isSafeInteger(n) || n <= this.last) return; // already have it
      this.last = n;
      // The wire turns each CR of a stored line into a line break: restore the CR.
      this.pending.push({ n, text: event.data.replace(/\n/g, "\r"), ts: Date.now() });
      this._queueFlush();
    };
    source.addEventListener("end", (event) => {
      if (source !== this.source) return;
      let end = {};
      try {
        end = JSON.parse(event.data);
      } catch (_) {
        end = {};
      }
      this._flush();
      this._finish(end);
    });
    source.addEventListener("signed_out", () => {
      if (source !== this.source) return;
      this._flush();
      this._signedOut();
    });
    source.onerror = () => {
      if (source !== this.source || this.ended || this.paused) return;
      if (!this.lostAt) this.lostAt = Date.now();
      this._flush();
      if (source.readyState === EventSource.CLOSED) {
        // Not retried by the browser (a non-200 answer, or a 204: "finished").
        this._recover();
      } else {
        this._state("reconnecting"); // the browser retries with Last-Event-ID
      }
    };
  }

  _queueFlush() {
    if (this.flushQueued) return;
    this.flushQueued = true;
    // A macrotask, not requestAnimationFrame: background tabs must keep taking lines.
    setTimeout(() => this._flush(), 0);
  }

  _flush() {
    this.flushQueued = false;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.handlers.onLines(batch);
  }

  _finish(end) {
    this.ended = true;
    clearInterval(this.watchdog);
    if (this.source) this.source.close();
    this.source = null;
    this.lostAt = null;
    this._state("ended");
    this.handlers.onEnd(end);
  }

  /** The credential is gone: stop for good (no reconnect, no watchdog). */
  _signedOut() {
    this.ended = true;
    clearInterval(this.watchdog);
    clearTimeout(this.retryTimer);
    if (this.source) this.source.close();
    this.source = null;
    this._state("signed-out");
  }

  /** The EventSource is closed for good: find out why, then end or reopen after `last`. */
  async _recover() {
    if (this.source) this.source.close();
    this.source = null;
    this._state("reconnecting");
    const delay = Math.min(10000, 500 * 2 ** this.attempt);
    this.attempt++;
    try {
      const job = await getJSON(`/api/jobs/${this.jobId}`);
      if (this.ended || this.paused) return;
      if (FINAL.has(job.status) && job.line_count <= this.last) {
        this._finish({ status: job.status, exit_code: job.exit_code, line_count: job.line_count });
        return;
      }
      if (FINAL.has(job.status)) {
        this._open(); // the rest of the lines, then `end`
        return;
      }
    } catch (error) {
      if (error instanceof HttpError && (error.status === 401 || error.status === 403)) {
        this._signedOut(); // the stream was refused for the same reason: stop, do not retry
        return;
      }
      // The server is unreachable: try again after the delay.
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this._open(), delay);
  }

  /** A stream that delivers nothing while the job grows or ends is reopened. */
  async _checkAlive() {
    if (this.ended || Date.now() - this.lastActivity < WATCHDOG_MS) return;
    if (!this.source || this.source.readyState !== EventSource.OPEN) return;
    try {
      const job = await getJSON(`/api/jobs/${this.jobId}`);
      if (this.ended || Date.now() - this.lastActivity < WATCHDOG_MS) return;
      if (job.line_count > this.last || FINAL.has(job.status)) {
        this.reconnects++;
        this._open();
      }
    } catch (_) {
      // unreachable: EventSource's own error handling will notice
    }
  }
}
