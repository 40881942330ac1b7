// The log viewer (/jobs/{id}): a virtualised list of rows over a bounded line cache.
//
// Only the rows on screen (plus a few) exist in the DOM. A spacer gives the pane the height of
// the whole log; past MAX_SCROLL pixels (browsers cap element heights) the spacer is scaled and
// scroll positions are mapped onto the log. Rows are ROW_H high, or with wrapping a multiple of
// it (layout.js). History comes in pages from /lines as the reader scrolls; live lines come
// from the SSE tail (stream.js), which starts after the line count the page saw at open, so the
// two never overlap. A hidden tab closes its stream and resumes it by line id when shown again.

import { el, getJSON, HttpError } from "./common.js";
import { plainText } from "./ansi.js";
import { LineStore, PAGE } from "./lines.js";
import { Sections } from "./sections.js";
import { LogStream } from "./stream.js";
import { Search } from "./search.js";
import { ConnectionPill, renderHeader, showEnd } from "./header.js";
import { Geometry, ROW_H, PAD } from "./layout.js";
import { PenChain } from "./pens.js";
import { RowPainter } from "./rows.js";
import { Annotations } from "./annotations.js";
import { wireToolbar } from "./toolbar.js";
import { wireKeys } from "./keys.js";
import { SMALL_LOG, Viewport } from "./viewport.js";
import { hooks } from "./hooks.js";
import { showAccount } from "./account.js";


function parseHash(hash) {
  const m = /^#L(\d+)(?:-L?(\d+))?$/.exec(hash);
  if (!m) return null;
  const a = Number(m[1]);
  const b = m[2] ? Number(m[2]) : a;
  return { a: Math.min(a, b), b: Math.max(a, b) };
}

// The viewer's public interface: what search.js, toolbar.js and hooks.js use. Everything else
// (fields and the _methods) is its own and may change.
//   jobId                       the job's id
//   ready                       true once the job has loaded
//   topLine()                   the line at the top of the pane, or null before the first layout
//   lineText(n)                 line n's raw text if the page holds it, else undefined
//   cachedLines()               [n, raw text] of every line the page holds
//   scheduleRender()            render on the next animation frame (calls in between coalesce)
//   scrollToLine(n, {select})   put line n a third down the pane (and select it unless select: false)
//   resumeFollowing()           follow the end of the log again
//   selection                   {a, b}: the lines picked (by line number or permalink), or null
//   toggleSection(n)            collapse or expand the section that starts at line n
//   setAllSections(collapsed)   collapse (true) or expand (false) every section known
//   setWrap(on), wrap           wrap long lines (true) or scroll them sideways
//   setTimestamps(on), showTs   show the time the server stored each line
//   renderedRows({visibleOnly}) rows in the DOM (or only those in the pane), in line order:
//                               [{n, text, pending, top, height}] with the row's shown text
//   snapshot()                  the viewer's state as plain data, for tests and benchmarks
//   search                      the Search (search.js: run, step, go, summary)
//   annotations                 the Annotations (annotations.js: next, setPattern, render)
//   parts                       {store, sections, pens}: the line cache, sections, start pens
class Viewer {
  constructor(jobId) {
    this.jobId = jobId;
    this.$ = (id) => document.getElementById(id);
    this.pane = this.$("log");
    this.spacer = this.$("spacer");
    this.rows = new Map(); // line number -> row element
    this.following = true;
    this.pendingNew = 0;
    this.selection = parseHash(location.hash);
    this.showTs = localStorage.getItem("logstream.timestamps") === "1";
    this.layout = { rowCount: 0, H: 0, S: 0, vh: 0, gen: -1 };
    this.anchor = null; // {line, offset}: what the reader looks at, kept in place on relayout
    this.expectScrollTop = null;
    this.renderQueued = false;
    this.sections = new Sections();
    // ?cache_pages=N shrinks the line cache (tests and benchmarks of eviction).
    const cachePages = Number(new URLSearchParams(location.search).get("cache_pages")) || 120;
    this.connection = new ConnectionPill();
    this.store = new LineStore(jobId, {
      maxPages: Math.max(4, cachePages),
      onLoaded: (index, body) => this._pageLoaded(index, body),
      onError: () => this.scheduleRender(),
    });
    this.pens = new PenChain(this.store);
    this.geometry = new Geometry(this.store, this.sections);
    this.parts = { store: this.store, sections: this.sections, pens: this.pens };
    this.search = new Search(this);
    this.annotations = new Annotations(jobId, this.store, this.pens, (n) => this.scrollToLine(n));
    this.painter = new RowPainter({ ...this.parts, search: this.search, view: this });
    this.stats = { renders: 0, lastRenderMs: 0, totalRenderMs: 0 };
  }

  get ready() {
    return !!this.job;
  }

  topLine() {
    const anchor = this._anchorNow();
    return anchor ? anchor.line : null;
  }

  lineText(n) {
    return this.store.text(n);
  }

  cachedLines() {
    return this.store.cached();
  }

  renderedRows({ visibleOnly = false } = {}) {
    let entries = [...this.rows.entries()];
    const box = this.pane.getBoundingClientRect();
    const rects = new Map(entries.map(([n, row]) => [n, row.getBoundingClientRect()]));
    if (visibleOnly) {
      entries = entries.filter(([n]) => {
        const r = rects.get(n);
        return r.bottom > box.top + 1 && r.top < box.bottom - 1;
      });
    }
    return entries
      .sort((a, b) => a[0] - b[0])
      .map(([n, row]) => ({
        n, text: row.querySelector(".tx").textContent, pending: row.classList.contains("pending"),
        top: rects.get(n).top - box.top, height: rects.get(n).height,
      }));
  }

  snapshot() {
    return {
      jobId: this.jobId,
      status: this.job && this.job.status,
      exitCode: this.job && this.job.exit_code,
      lineCount: this.store.lineCount,
      lastStreamed: this.stream ? this.stream.last : null,
      connection: this.$("conn").dataset.state,
      following: this.following,
      cachedPages: this.store.pages.size,
      inFlight: this.store.inFlight.size,
      domRows: this.rows.size,
      search: this.search.summary(),
      firstPaintMs: this.firstPaintMs || null,
      renders: this.stats.renders,
      lastRenderMs: this.stats.lastRenderMs,
      totalRenderMs: this.stats.totalRenderMs,
      rowsBuilt: this.painter.built,
      reconnects: this.stream ? this.stream.reconnects : 0,
      connectionLog: [...this.connection.log],
      maxPages: this.store.maxPages,
      wrap: this.geometry.wrap,
      cols: this.geometry.cols,
      paused: !!(this.stream && this.stream.paused),
      selection: this.selection,
    };
  }

  async start() {
    let job;
    try {
      job = await getJSON(`/api/jobs/${this.jobId}`);
    } catch (error) {
      if (error instanceof HttpError && (error.status === 401 || error.status === 403)) {
        this.connection.show("signed-out");
        this.pane.replaceChildren(el("div", { class: "log-message" }, "Signed out."));
        return;
      }
      this._fatal(error instanceof HttpError && error.status === 404
        ? `Job #${this.jobId} does not exist.` : `Could not load job #${this.jobId}: ${error.message}`);
      return;
    }
    this.job = job;
    this.store.lineCount = job.line_count;
    this.openedAt = performance.now();
    this._wireUi();
    renderHeader(this.job, this.store.lineCount);
    if (this.selection) this.scrollToLine(this.selection.a, { select: false });
    if (job.status === "running") {
      this.stream = new LogStream(this.jobId, job.line_count, {
        onLines: (batch) => this._onLines(batch),
        onEnd: (end) => this._onEnd(end),
        onState: (state) => this.connection.show(state),
      });
      this.stream.start();
      document.addEventListener("visibilitychange", () => {
        if (document.visibilityState === "hidden") this.stream.pause();
        else this.stream.resume();
      });
      if (document.visibilityState === "hidden") this.stream.pause();
    } else {
      this.connection.show("ended");
      showEnd(this.job);
    }
    // Where the annotations of a big log are: asked of the server's search once the page shows
    // (three scans of the whole log must not hold up the first page).
    if (job.line_count > SMALL_LOG) setTimeout(() => this.annotations.fetchCounts(), 2000);
    this.ticker = setInterval(() => renderHeader(this.job, this.store.lineCount), 1000);
    this._render();
  }

  _fatal(message) {
    this.$("job-title").textContent = "Not found";
    this.pane.replaceChildren(el("div", { class: "log-message" }, message));
  }

  // --- UI wiring ---------------------------------------------------------------------------

  _wireUi() {
    this.pane.addEventListener("scroll", () => this._onScroll(), { passive: true });
    new ResizeObserver(() => this.scheduleRender()).observe(this.pane);
    this.pane.addEventListener("click", (event) => this._onClick(event));
    window.addEventListener("hashchange", () => {
      const selection = parseHash(location.hash);
      if (selection) {
        this.selection = selection;
        this.scrollToLine(selection.a, { select: false });
      }
    });
    this.$("follow-btn").addEventListener("click", () => this.resumeFollowing());
    new MutationObserver(() => this.scheduleRender()) // the theme changed: rows rebuild
      .observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
    this.toolbar = wireToolbar(this);
    wireKeys(this.pane, {
      by: (dy) => this._scrollBy(dy),
      page: (sign) => this._scrollBy(sign * Math.max(ROW_H, this.layout.vh - 2 * ROW_H)),
      top: () => this._scrollBy(-Infinity),
      bottom: () => this.resumeFollowing(),
      nextError: () => this.annotations.next(this.annotations.lastError),
      collapseAll: () => this.setAllSections(true),
      expandAll: () => this.setAllSections(false),
    }, ROW_H);
    this.search.wire();
  }

  /** Turn timestamps on or off (the toolbar's toggle). */
  setTimestamps(on) {
    this.showTs = on;
    localStorage.setItem("logstream.timestamps", on ? "1" : "0");
    this.pane.classList.toggle("with-ts", on);
    this.scheduleRender();
  }

  setWrap(on) {
    this.wrap = on;
    this.pane.classList.toggle("wrap", on);
    this.anchor = this._anchorNow();
    this.scheduleRender();
  }

  _scrollBy(dy) {
    this._relayout();
    const { H, S, vh } = this.layout;
    this.following = false;
    const virtualY = Math.max(0, Math.min(this._virtualTop() + dy, Math.max(0, H - vh)));
    this._setScrollTop(H > vh ? virtualY * ((S - vh) / (H - vh)) : 0);
    this.anchor = this._anchorNow();
    this._render();
  }

  _onScroll() {
    const st = this.pane.scrollTop;
    const ours = this.expectScrollTop !== null && Math.abs(st - this.expectScrollTop) < 2;
    this.expectScrollTop = null;
    if (!ours) {
      const atBottom = st + this.pane.clientHeight >= this.pane.scrollHeight - ROW_H;
      if (atBottom) {
        if (!this.following) this.resumeFollowing();
      } else if (st < (this.lastScrollTop ?? st) - 0.5 || !this.following) {
        this.following = false; // the reader scrolled up: stop following until they come back
      }
    }
    this.lastScrollTop = st;
    // Our own scrolls put the anchor where it is; recomputing it here could read heights that
    // changed since (a page arrived in between) and move the view.
    if (!ours) this.anchor = this._anchorNow();
    this.scheduleRender();
  }

  _onClick(event) {
    const copy = event.target.closest("[data-copy-section]");
    if (copy) {
      this.toolbar.copySection(Number(copy.dataset.copySection));
      return;
    }
    const link = event.target.closest("a.ln");
    if (link) {
      event.preventDefault();
      const n = Number(link.dataset.n);
      if (event.shiftKey && this.selection) {
        const pivot = this.selection.a; // shift-click extends from the first line picked
        this.selection = { a: Math.min(pivot, n), b: Math.max(pivot, n) };
      } else {
        this.selection = { a: n, b: n };
      }
      const { a, b } = this.selection;
      history.replaceState(null, "", a === b ? `#L${a}` : `#L${a}-L${b}`);
      this.following = false;
      this.scheduleRender();
      return;
    }
    const header = event.target.closest(".section-header");
    if (header && (!event.target.closest("a") || event.target.closest(".caret"))) {
      this.toggleSection(Number(header.dataset.n));
    }
  }

  toggleSection(n) {
    this.anchor = this._anchorNow();
    this.sections.toggle(n);
    this.sections.update(this.store.lineCount);
    const header = this.sections.header(n);
    if (header && header.collapsed && !header.end && !header.open) this._findSectionEnd(n);
    this.scheduleRender();
  }

  setAllSections(collapsed) {
    this.anchor = this._anchorNow();
    this.sections.setAll(collapsed);
    this.sections.update(this.store.lineCount);
    if (this.anchor && this.sections.isHidden(this.anchor.line)) {
      this.anchor = { line: this.sections.rowToLine(this.sections.lineToRow(this.anchor.line)), offset: 0 };
    }
    this.scheduleRender();
  }

  resumeFollowing() {
    this.following = true;
    this.pendingNew = 0;
    this.scheduleRender();
  }

  /** Scroll so line n is a third down the pane; expands sections that hide it. */
  scrollToLine(n, { select = true } = {}) {
    n = Math.max(1, Math.min(n, Math.max(1, this.store.lineCount)));
    if (this.sections.reveal(n)) this.sections.update(this.store.lineCount);
    if (select) this.selection = { a: n, b: n };
    this.following = false;
    this._relayout();
    const { H, S, vh } = this.layout;
    const y = this.geometry.rowY(this.sections.lineToRow(n), n);
    const virtualY = Math.max(0, y - PAD - Math.floor(vh / 3));
    const top = H > vh ? Math.min(virtualY, H - vh) * ((S - vh) / (H - vh)) : 0;
    this._setScrollTop(top);
    // Line n itself is the anchor: rows above it that grow (wrapping) do not push it away.
    this.anchor = { line: n, offset: y - this._virtualTop() };
    this._render();
  }

  // --- data --------------------------------------------------------------------------------

  _onLines(batch) {
    if (batch.length) this.sections.scanned(batch[0].n, batch[batch.length - 1].n);
    for (const line of batch) {
      this.store.put(line.n, line.text, line.ts);
      this.pens.lineAdded(line.n);
      this.geometry.lineChanged(line.n);
      this.sections.observe(line.n, line.text, plainText);
      this.annotations.observe(line.n, line.text);
    }
    if (!this.following) this.pendingNew += batch.length;
    if (this.job.line_count < this.store.lineCount) this.job.line_count = this.store.lineCount;
    this.scheduleRender();
  }

  _pageLoaded(index, body) {
    const got = body.lines;
    if (got.length) this.sections.scanned(got[0].n, got[got.length - 1].n);
    const first = index * PAGE + 1;
    for (let n = first; n < first + PAGE; n++) {
      const text = this.store.text(n);
      if (text === undefined) continue;
      this.sections.observe(n, text, plainText);
      this.annotations.observe(n, text);
    }
    this.pens.pageChanged(index);
    this.geometry.pageChanged(index);
    if (this.store.lineCount > this.job.line_count && this.job.status === "running") {
      this.job.line_count = this.store.lineCount;
    }
    if (!this.firstPaintMs) this.firstPaintMs = performance.now() - this.openedAt;
    this.scheduleRender();
  }

  _onEnd(end) {
    Object.assign(this.job, {
      status: end.status || this.job.status,
      exit_code: end.exit_code === undefined ? this.job.exit_code : end.exit_code,
    });
    if (typeof end.line_count === "number") {
      this.job.line_count = end.line_count;
      if (end.line_count > this.store.lineCount) this.store.lineCount = end.line_count;
    }
    // Duration and finished_at come from the job itself.
    getJSON(`/api/jobs/${this.jobId}`).then((job) => {
      this.job = job;
      renderHeader(this.job, this.store.lineCount);
      showEnd(this.job);
    }).catch(() => {});
    renderHeader(this.job, this.store.lineCount);
    showEnd(this.job);
    if (this.store.lineCount > SMALL_LOG) this.annotations.fetchCounts();
    this.scheduleRender();
  }

  /** Collapsing a section whose end was not seen: read on from its start until it shows. */
  async _findSectionEnd(n) {
    if (this.scanning) return;
    this.scanning = true;
    try {
      for (let index = Math.floor((n - 1) / PAGE), pages = 0; pages < 200; index++, pages++) {
        this.sections.update(this.store.lineCount);
        const header = this.sections.header(n);
        if (!header || !header.collapsed || header.end || header.open) break;
        if (index * PAGE >= this.store.lineCount) break;
        await this.store.load(index);
        this.scheduleRender();
      }
    } finally {
      this.scanning = false;
    }
  }

}

// Layout and rendering live in viewport.js.
for (const name of Object.getOwnPropertyNames(Viewport.prototype)) {
  if (name !== "constructor") {
    Object.defineProperty(Viewer.prototype, name, Object.getOwnPropertyDescriptor(Viewport.prototype, name));
  }
}

const jobId = Number(location.pathname.split("/").filter(Boolean)[1]);
const viewer = new Viewer(jobId);
window.__logstream = hooks(viewer);
viewer.start();
showAccount();
