// Search over the whole log through GET /api/jobs/{id}/search (the page holds only part of a big
// log), with next/previous navigation that scrolls to each hit. Without that endpoint (an older
// server) it searches the lines this page has loaded and says so.

import { getJSON, HttpError, formatCount } from "./common.js";
import { plainText } from "./ansi.js";

const LIMIT = 1000;

export class Search {
  constructor(viewer) {
    this.viewer = viewer;
    this.query = "";
    this.caseSensitive = false;
    this.matches = []; // ascending line numbers
    this.matchSet = new Set();
    this.count = 0;
    this.truncated = false;
    this.partial = false; // searched only the loaded lines
    this.index = -1;
    this.generation = 0;
    this.pending = null;
    this.error = null;
    this.loadingMore = false;
  }

  wire() {
    const $ = (id) => document.getElementById(id);
    this.input = $("search");
    this.counter = $("search-count");
    const caseButton = $("search-case");
    let timer = null;
    this.input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.run(this.input.value), 300);
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        clearTimeout(timer);
        if (this.input.value !== this.query) this.run(this.input.value);
        else this.step(event.shiftKey ? -1 : 1);
      } else if (event.key === "Escape") {
        this.input.value = "";
        this.run("");
        this.input.blur();
      }
    });
    $("search-next").addEventListener("click", () => this.step(1));
    $("search-prev").addEventListener("click", () => this.step(-1));
    caseButton.addEventListener("click", () => {
      this.caseSensitive = !this.caseSensitive;
      caseButton.setAttribute("aria-pressed", String(this.caseSensitive));
      if (this.query) this.run(this.query, { force: true });
    });
    // The page shows only part of the log: the browser's own find cannot see the rest.
    window.addEventListener("keydown", (event) => {
      if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "f") {
        event.preventDefault();
        this.input.focus();
        this.input.select();
      }
    });
  }

  /** The highlight for rendered rows: {needle, caseSensitive} or null. */
  highlight() {
    if (!this.query) return null;
    return { needle: this.caseSensitive ? this.query : this.query.toLowerCase(), caseSensitive: this.caseSensitive };
  }

  isMatch(n) { return this.matchSet.has(n); }

  isCurrent(n) { return this.index >= 0 && this.matches[this.index] === n; }

  summary() {
    return {
      query: this.query, count: this.count, matches: this.matches.length, index: this.index,
      current: this.index >= 0 ? this.matches[this.index] : null, truncated: this.truncated,
      partial: this.partial, error: this.error, searching: !!this.searching,
    };
  }

  async run(query, { force = false } = {}) {
    if (query === this.query && !force) return this.summary();
    this.query = query;
    const token = (this.runToken = (this.runToken || 0) + 1);
    this.error = null;
    this.searching = false;
    if (!query) {
      this._set([], 0, false, false);
      return this.summary();
    }
    this._set([], 0, false, false);
    this.searching = true;
    this._showCounter("Searching…");
    let matches;
    let count;
    let truncated = false;
    let partial = false;
    try {
      const url = `/api/jobs/${this.viewer.jobId}/search?q=${encodeURIComponent(query)}`
        + `&case=${this.caseSensitive ? 1 : 0}&limit=${LIMIT}`;
      const body = await getJSON(url);
      matches = body.lines || [];
      count = body.count ?? matches.length;
      truncated = !!body.truncated;
    } catch (error) {
      if (!(error instanceof HttpError) || error.status === 400) {
        if (token === this.runToken) {
          this.searching = false;
          this.error = error.message;
          this._set([], 0, false, false);
          this._showCounter(error instanceof HttpError ? "Invalid search" : "Search failed");
        }
        return this.summary();
      }
      // No search endpoint on this server: look through what this page has loaded.
      ({ matches, count, truncated } = this._searchLoaded(query));
      partial = true;
    }
    if (token !== this.runToken) return this.summary(); // a newer search started
    this.searching = false;
    this._set(matches, count, truncated, partial);
    if (matches.length) {
      const from = this.viewer.topLine() ?? 1;
      let index = matches.findIndex((n) => n >= from);
      if (index < 0) index = 0;
      this.go(index);
    }
    return this.summary();
  }

  _searchLoaded(query) {
    const needle = this.caseSensitive ? query : query.toLowerCase();
    const matches = [];
    let count = 0;
    for (const [n, raw] of this.viewer.cachedLines()) {
      const text = plainText(raw);
      if ((this.caseSensitive ? text : text.toLowerCase()).includes(needle)) {
        count++;
        if (matches.length < LIMIT) matches.push(n);
      }
    }
    return { matches, count, truncated: count > matches.length };
  }

  _set(matches, count, truncated, partial) {
    this.matches = matches;
    this.matchSet = new Set(matches);
    this.count = count;
    this.truncated = truncated;
    this.partial = partial;
    this.index = -1;
    this.generation++;
    this._renderCounter();
    this.viewer.scheduleRender();
  }

  async step(delta) {
    if (!this.matches.length) return this.summary();
    if (delta > 0 && this.index === this.matches.length - 1 && this.truncated && !this.partial) {
      // Past the last hit this page holds, and the log has more: fetch the next page of hits.
      if (await this._loadMore()) {
        this.go(this.index + 1);
        return this.summary();
      }
    }
    const size = this.matches.length;
    this.go(((this.index < 0 ? (delta > 0 ? -1 : 0) : this.index) + delta + size) % size);
    return this.summary();
  }

  /** The next page of hits after the last one held (the server counts from there). */
  async _loadMore() {
    if (this.loadingMore) return false;
    const token = this.runToken;
    const last = this.matches[this.matches.length - 1];
    this.loadingMore = true;
    try {
      const body = await getJSON(`/api/jobs/${this.viewer.jobId}/search?q=`
        + `${encodeURIComponent(this.query)}&case=${this.caseSensitive ? 1 : 0}`
        + `&limit=${LIMIT}&after=${last}`);
      if (token !== this.runToken) return false; // a newer search started meanwhile
      const more = (body.lines || []).filter((n) => n > last);
      this.truncated = !!body.truncated && more.length > 0;
      if (!more.length) return false;
      this.matches = this.matches.concat(more);
      for (const n of more) this.matchSet.add(n);
      this.generation++;
      this.viewer.scheduleRender();
      return true;
    } catch (error) {
      return false; // the hits held stay navigable; the next step tries again
    } finally {
      this.loadingMore = false;
    }
  }

  /** Make hit `index` the current one and scroll to it. */
  go(index) {
    this.index = index;
    this.generation++;
    this._renderCounter();
    this.viewer.scrollToLine(this.matches[index], { select: false });
  }

  _renderCounter() {
    if (!this.query) return this._showCounter("");
    if (!this.matches.length) return this._showCounter("No results");
    // The server counts every hit in the log, also those past the pages of hits fetched so far.
    const total = formatCount(Math.max(this.count, this.matches.length));
    const where = this.partial ? " (loaded lines)" : "";
    this._showCounter(`${formatCount(this.index + 1)} / ${total}${where}`);
  }

  _showCounter(text) {
    if (this.counter) this.counter.textContent = text;
    const box = this.input && this.input.closest(".search");
    if (box) box.dataset.state = !this.query ? "" : this.matches.length ? "found" : "none";
  }
}
