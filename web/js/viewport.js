// The viewer's viewport: layout (heights, the scaled spacer, the anchor that keeps what the
// reader looks at in place) and rendering (the rows on screen, their pages, the follow button).
// Methods of the Viewer (viewer.js copies them onto its prototype); split out for size only.

import { el, formatCount } from "./common.js";
import { PAGE } from "./lines.js";
import { ROW_H, PAD } from "./layout.js";

const MAX_SCROLL = 15_000_000; // px of real scroll height at most
const OVERSCAN = 12; // rows rendered beyond each edge
const TIMES_EVERY_MS = 500; // at most this often, a request for the server times of live lines
export const SMALL_LOG = 20_000; // lines: load it all (sections and offline search see everything)

export class Viewport {
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
  }}
