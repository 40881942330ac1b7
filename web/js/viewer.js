// The log viewer (/jobs/{id}): a virtualised list of rows over a bounded line cache.
//
// Only the rows on screen (plus a few) exist in the DOM. A spacer gives the pane the height of
// the whole log; past MAX_SCROLL pixels (browsers cap element heights) the spacer is scaled and
// scroll positions are mapped onto the log. Rows are ROW_H high, or with wrapping a multiple of
// it (layout.js). History comes in pages from /lines as the reader scrolls; live lines come
// from the SSE tail (stream.js), which starts after the line count the page saw at open, so the
// two never overlap. A hidden tab closes its stream and resumes it by line id when shown again.

import { el, getJSON, HttpError, formatCount } from "./common.js";
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
import { hooks } from "./hooks.js";

const MAX_SCROLL = 15_000_000; // px of real scroll height at most
const OVERSCAN = 12; // rows rendered beyond each edge
const SMALL_LOG = 20_000; // lines: load it all (sections and offline search see everything)
const TIMES_EVERY_MS = 500; // at most this often, a request for the server times of live lines

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

  // --- layout and rendering ------------------------------------------------------------------

  scheduleRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      this._render();
    });
  }

  _setScrollTop(top) {
    this.pane.scrollTop = top;
    this.expectScrollTop = this.pane.scrollTop;
    this.lastScrollTop = this.pane.scrollTop;
  }

  /** The virtual (unscaled) y of the top of the pane. */
  _virtualTop(scrollTop = this.pane.scrollTop) {
    const { H, S, vh } = this.layout;
    if (S <= vh || H <= S) return scrollTop;
    return scrollTop * ((H - vh) / (S - vh));
  }

  _anchorNow() {
    if (!this.layout.rowCount) return null;
    const vt = this._virtualTop();
    const row = this.geometry.rowAt(vt, this.layout.rowCount);
    const line = this.sections.rowToLine(row);
    return { line, offset: this.geometry.rowY(row, line) - vt };
  }

  /** Columns of text one visual row holds (for wrapping). */
  _columns() {
    if (!this.charWidth) {
      const probe = el("span", { class: "probe" }, "0".repeat(100));
      this.spacer.append(probe);
      this.charWidth = probe.getBoundingClientRect().width / 100 || 8;
      probe.remove();
    }
    const digits = Math.max(4, String(this.store.lineCount).length);
    const gutter = digits * this.charWidth + 26 + (this.showTs ? 104 : 0) + 12;
    return Math.floor((this.pane.clientWidth - gutter) / this.charWidth);
  }

  /** Recompute heights; keep the reader's anchor line still unless following. */
  _relayout() {
    this.sections.update(this.store.lineCount);
    this.geometry.configure(!!this.wrap, this.wrap ? this._columns() : 80);
    const rowCount = Math.max(0, this.store.lineCount - this.sections.hiddenCount());
    const gen = `${this.sections.generation}:${this.geometry.generation}:${this.geometry.wrap}`;
    const vh = this.pane.clientHeight;
    const old = this.layout;
    if (old.rowCount === rowCount && old.vh === vh && old.gen === gen) return false;
    const H = this.geometry.height(rowCount, this.store.lineCount);
    const S = Math.min(H, MAX_SCROLL);
    this.layout = { rowCount, H, S, vh, gen };
    this.spacer.style.height = `${S}px`;
    const digits = String(this.store.lineCount).length;
    if (digits !== this.gutterDigits) {
      this.gutterDigits = digits; // the line-number gutter fits the largest number
      this.pane.style.setProperty("--ln-digits", String(Math.max(4, digits)));
    }
    if (this.following) {
      this._setScrollTop(S);
    } else if (this.anchor) {
      const y = this.geometry.rowY(this.sections.lineToRow(this.anchor.line), this.anchor.line);
      const virtualY = y - this.anchor.offset;
      const top = H > vh ? Math.max(0, Math.min(virtualY, H - vh)) * ((S - vh) / (H - vh)) : 0;
      if (Math.abs(top - this.pane.scrollTop) >= 1) this._setScrollTop(top);
    }
    return true;
  }

  _render() {
    const started = performance.now();
    this._relayout();
    if (this.following && this.pane.scrollTop + this.layout.vh < this.layout.S - 1) {
      this._setScrollTop(this.layout.S);
    }
    const { rowCount, vh } = this.layout;
    const scrollTop = this.pane.scrollTop;
    const vt = this._virtualTop(scrollTop);
    const geometry = this.geometry;
    const wanted = new Map(); // line -> virtual y
    if (rowCount > 0) {
      let r = Math.max(0, geometry.rowAt(vt, rowCount) - OVERSCAN);
      let line = this.sections.rowToLine(r);
      let y = geometry.rowY(r, line);
      for (let after = 0; r < rowCount && after <= OVERSCAN; r++) {
        wanted.set(line, y);
        y += geometry.rowHeight(line);
        if (y > vt + vh) after++;
        line = this.sections.rowToLine(r + 1);
      }
    }
    for (const [n, row] of this.rows) {
      if (!wanted.has(n)) {
        row.remove();
        this.rows.delete(n);
      }
    }
    const pages = new Set();
    const built = [];
    for (const [n, y] of wanted) {
      pages.add(Math.floor((n - 1) / PAGE));
      let row = this.rows.get(n);
      if (!row) {
        row = document.createElement("div");
        row.dataset.n = String(n);
        this.rows.set(n, row);
        this.spacer.append(row);
      }
      const top = y - vt + scrollTop;
      if (row._top !== top) {
        row.style.transform = `translateY(${top}px)`;
        row._top = top;
      }
      if (this.painter.fill(row, n) || row._wrapGen !== geometry.generation) built.push([n, row]);
    }
    if (geometry.wrap) this._measure(built);
    this._requestPages(pages);
    if (wanted.size) this._refreshTimes(Math.min(...wanted.keys()), Math.max(...wanted.keys()));
    this._renderFollowButton(scrollTop);
    this._renderHeaderCount();
    this._renderEmpty();
    this.annotations.render();
    if (this.toolbar) this.toolbar.render();
    this.stats.renders++;
    this.stats.lastRenderMs = performance.now() - started;
    this.stats.totalRenderMs += this.stats.lastRenderMs;
  }

  /** Wrapping: correct the estimated heights of rows just built from what they measure. */
  _measure(built) {
    let changed = false;
    for (const [n, row] of built) {
      if (row.classList.contains("pending")) continue;
      const rows = Math.max(1, Math.round(row.offsetHeight / ROW_H));
      if (this.geometry.setExtra(n, rows - 1)) changed = true;
    }
    for (const [, row] of built) row._wrapGen = this.geometry.generation;
    if (changed) this.scheduleRender();
  }

  /** With timestamps shown, give live lines on screen the server's time instead of the time
   * they arrived here (one small /lines request at a time, at most every TIMES_EVERY_MS). */
  _refreshTimes(first, last) {
    if (!this.showTs || this.timesInFlight) return;
    const from = this.store.firstInexact(first, last);
    if (!from) return;
    const wait = (this.timesAt || -Infinity) + TIMES_EVERY_MS - performance.now();
    if (wait > 0) {
      if (!this.timesTimer) {
        this.timesTimer = setTimeout(() => { this.timesTimer = null; this.scheduleRender(); }, wait);
      }
      return;
    }
    this.timesInFlight = true;
    this.timesAt = performance.now();
    // Collapsed sections can put far-apart lines on screen: at most a page per request.
    this.store.fetchTimes(from, Math.min(last, from + PAGE - 1))
      .catch(() => {}) // a later render asks again
      .finally(() => { this.timesInFlight = false; this.scheduleRender(); });
  }

  _requestPages(visiblePages) {
    const sorted = [...visiblePages].sort((a, b) => a - b);
    const keep = new Set(sorted);
    const wanted = [...sorted];
    if (sorted.length) {
      wanted.push(sorted[sorted.length - 1] + 1, sorted[0] - 1); // read ahead both ways
    }
    const total = Math.ceil(this.store.lineCount / PAGE);
    if (this.store.lineCount <= SMALL_LOG && total <= this.store.maxPages) {
      for (let i = total - 1; i >= 0; i--) if (!keep.has(i)) wanted.push(i);
    }
    this.store.want(wanted);
    const centre = sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0;
    this.store.evict(centre, keep);
  }

  _renderFollowButton(scrollTop) {
    // scrollTop is read before the rows changed: reading it now would force a layout.
    const button = this.$("follow-btn");
    const { S, vh } = this.layout;
    const atBottom = scrollTop + vh >= S - ROW_H;
    const show = !this.following && !atBottom;
    button.hidden = !show;
    if (show) {
      const running = this.job && this.job.status === "running";
      const label = running ? "Resume following" : "Jump to bottom";
      const extra = this.pendingNew ? ` · ${formatCount(this.pendingNew)} new` : "";
      const text = `↓ ${label}${extra}`;
      if (button.textContent !== text) button.textContent = text;
    }
    this.pane.dataset.follow = this.following ? "1" : "0";
  }

  _renderHeaderCount() {
    if (!this.job) return;
    const count = formatCount(Math.max(this.job.line_count, this.store.lineCount));
    const node = this.$("job-lines");
    if (node.textContent !== count) node.textContent = count;
  }

  /** No lines yet: say so, rather than show a blank pane. */
  _renderEmpty() {
    const node = this.$("log-empty");
    const empty = this.store.lineCount === 0;
    const text = !empty ? "" : this.job.status === "running"
      ? "Waiting for output… the job has started but printed nothing yet."
      : "This job printed nothing.";
    node.hidden = !empty;
    if (node.textContent !== text) node.textContent = text;
  }
}

const jobId = Number(location.pathname.split("/").filter(Boolean)[1]);
const viewer = new Viewer(jobId);
window.__logstream = hooks(viewer);
viewer.start();
