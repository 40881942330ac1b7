// The page's bounded cache of log lines, in pages of PAGE lines fetched on demand from
// GET /api/jobs/{id}/lines. Live lines from the SSE stream are put into the same pages, so a line
// has one place whatever way it came. When more than `maxPages` pages are cached, the pages
// farthest from what is on screen are dropped; they are fetched again if the reader goes back.

export const PAGE = 1000;

/** Give the held line its time as the server stored it (from a /lines answer). */
function stamp(page, line) {
  if (!line.ts) return;
  const i = (line.n - 1) % PAGE;
  page.ts[i] = Date.parse(line.ts);
  page.exact[i] = 1;
}

export class LineStore {
  constructor(jobId, { maxPages = 120, maxInFlight = 4, onLoaded = () => {}, onError = () => {} } = {}) {
    this.jobId = jobId;
    this.maxPages = maxPages;
    this.maxInFlight = maxInFlight;
    this.onLoaded = onLoaded; // (pageIndex, response) after a page arrived
    this.onError = onError;
    this.pages = new Map(); // index -> {text: Array, ts: Array, exact: Uint8Array, filled, used}
    this.inFlight = new Map(); // index -> AbortController
    this.pinned = new Set(); // pages being loaded by load(): not aborted by want()
    this.wanted = []; // page indexes, most wanted first
    this.failedAt = new Map(); // index -> time of the last failure (retry after a pause)
    this.lineCount = 0; // highest line number known to exist
    this.centre = 0; // page the reader looks at, and the pages on screen (never evicted)
    this.keep = new Set();
    this.clock = 0;
  }

  _page(index, create) {
    let page = this.pages.get(index);
    if (!page && create) {
      // exact[i]: ts[i] is the server's (from /lines), not the time a live line arrived here.
      page = { text: new Array(PAGE), ts: new Array(PAGE), exact: new Uint8Array(PAGE), filled: 0, used: 0 };
      this.pages.set(index, page);
      // Stay within budget at every moment, not only when the view next renders.
      if (this.pages.size > this.maxPages) this.evict(this.centre, new Set([...this.keep, index]));
    }
    if (page) page.used = ++this.clock;
    return page;
  }

  /** The text of line n, or undefined while it is not loaded. */
  text(n) {
    const page = this.pages.get(Math.floor((n - 1) / PAGE));
    return page ? page.text[(n - 1) % PAGE] : undefined;
  }

  /** Time of line n in ms: the server's, or until it is fetched the arrival time of a live
   * line; undefined while the line is not held. */
  ts(n) {
    const page = this.pages.get(Math.floor((n - 1) / PAGE));
    return page ? page.ts[(n - 1) % PAGE] : undefined;
  }

  /** Store line n; `ts` in ms (the time it arrived; a server time already held is kept).
   * Returns true if the line was new to the cache. */
  put(n, text, ts) {
    if (n > this.lineCount) this.lineCount = n;
    const page = this._page(Math.floor((n - 1) / PAGE), true);
    const i = (n - 1) % PAGE;
    const fresh = page.text[i] === undefined;
    if (fresh) page.filled++;
    page.text[i] = text;
    if (ts !== undefined && ts !== null && !page.exact[i]) page.ts[i] = ts;
    return fresh;
  }

  /** The first line in first..last that is held with only its arrival time, or 0. */
  firstInexact(first, last) {
    for (let n = first; n <= last; n++) {
      const page = this.pages.get(Math.floor((n - 1) / PAGE));
      const i = (n - 1) % PAGE;
      if (page && page.text[i] !== undefined && !page.exact[i]) return n;
    }
    return 0;
  }

  /** Fetch the server's times of lines first..last (those held get them; resolves when done). */
  async fetchTimes(first, last) {
    const body = await this._get(first - 1, last - first + 1);
    for (const line of body.lines) {
      const page = this.pages.get(Math.floor((line.n - 1) / PAGE));
      if (page && page.text[(line.n - 1) % PAGE] !== undefined) stamp(page, line);
    }
  }

  /** GET /lines after `after` (at most `limit`): the decoded answer, or an error thrown. */
  async _get(after, limit, signal) {
    const url = `/api/jobs/${this.jobId}/lines?after=${after}&limit=${limit}`;
    const response = await fetch(url, { signal, headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return response.json();
  }

  /** Lines the page at `index` should hold given what is known to exist. */
  _expected(index) {
    return Math.max(0, Math.min(PAGE, this.lineCount - index * PAGE));
  }

  isComplete(index) {
    const page = this.pages.get(index);
    return !!page && page.filled >= this._expected(index);
  }

  /** Ask for these pages (most wanted first); fetches start at once up to the concurrency. */
  want(indexes) {
    this.wanted = indexes.filter((i) => i >= 0 && i * PAGE < this.lineCount && !this.isComplete(i));
    // Abort fetches nobody wants any more (the reader scrolled far away meanwhile).
    for (const [index, controller] of this.inFlight) {
      if (!this.wanted.includes(index) && !this.pinned.has(index)) {
        controller.abort();
        this.inFlight.delete(index);
      }
    }
    this._pump();
  }

  _pump() {
    const now = Date.now();
    for (const index of this.wanted) {
      if (this.inFlight.size >= this.maxInFlight) break;
      if (this.inFlight.has(index) || this.isComplete(index)) continue;
      if (now - (this.failedAt.get(index) || 0) < 1000) {
        if (!this.retryTimer) {
          this.retryTimer = setTimeout(() => { this.retryTimer = null; this._pump(); }, 1000);
        }
        continue;
      }
      this._fetch(index);
    }
  }

  /** Fetch page `index` now, whoever wants it (resolves when it is in the cache). */
  async load(index) {
    if (this.isComplete(index)) return;
    const running = this.inFlight.get(index);
    if (running) this.inFlight.delete(index); // superseded: this call's answer is used
    if (running) running.abort();
    this.pinned.add(index);
    try {
      await this._fetch(index, false);
    } finally {
      this.pinned.delete(index);
    }
  }

  async _fetch(index, pump = true) {
    const controller = new AbortController();
    this.inFlight.set(index, controller);
    try {
      const body = await this._get(index * PAGE, PAGE, controller.signal);
      if (this.inFlight.get(index) !== controller) return; // aborted or superseded
      if (body.line_count > this.lineCount) this.lineCount = body.line_count;
      const page = this._page(index, true);
      for (const line of body.lines) {
        const i = (line.n - 1) % PAGE;
        if (Math.floor((line.n - 1) / PAGE) !== index) continue;
        if (page.text[i] === undefined) page.filled++;
        page.text[i] = line.text;
        stamp(page, line);
      }
      this.failedAt.delete(index);
      this.inFlight.delete(index);
      this.onLoaded(index, body);
    } catch (error) {
      if (this.inFlight.get(index) === controller) {
        this.inFlight.delete(index);
        this.failedAt.set(index, Date.now());
        this.onError(error);
      }
    } finally {
      if (pump) this._pump();
    }
  }

  /** Drop the pages farthest from `centre` (a page index) beyond the budget; never `keep`. */
  evict(centre, keep) {
    this.centre = centre;
    this.keep = keep;
    if (this.pages.size <= this.maxPages) return 0;
    const candidates = [...this.pages.keys()]
      .filter((i) => !keep.has(i))
      .sort((a, b) => Math.abs(b - centre) - Math.abs(a - centre));
    let dropped = 0;
    while (this.pages.size > this.maxPages && candidates.length) {
      this.pages.delete(candidates.shift());
      dropped++;
    }
    return dropped;
  }

  /** Every cached line as [n, text], ascending (for the offline search fallback and tests). */
  *cached() {
    const indexes = [...this.pages.keys()].sort((a, b) => a - b);
    for (const index of indexes) {
      const page = this.pages.get(index);
      for (let i = 0; i < PAGE; i++) {
        if (page.text[i] !== undefined) yield [index * PAGE + i + 1, page.text[i]];
      }
    }
  }
}
