// Row geometry of the log pane: where each display row is, in virtual (unscaled) pixels.
//
// Without wrapping every row is ROW_H high and a row's y is arithmetic. With wrapping a line
// takes 1 + extra(n) rows of ROW_H: extra(n) is first estimated from the line's width in
// terminal columns (the pane's font is monospace and wrapping breaks anywhere, like a
// terminal, so the estimate is nearly always exact), and corrected from the row's measured
// height once it has been on screen. Extras live beside the lines in the LineStore's pages, so
// they are bounded like the lines; a line not held counts as one row. Lines hidden by collapsed
// sections count for nothing.

import { PAGE } from "./lines.js";
import { parseLine } from "./term.js";

export const ROW_H = 20; // px, must match --row-h in app.css
export const PAD = 8; // px above the first row and below the last

export class Geometry {
  constructor(store, sections) {
    this.store = store;
    this.sections = sections;
    this.wrap = false;
    this.cols = 80; // terminal columns one visual row holds when wrapping
    this.generation = 0; // bumped when extras change (the layout must be recomputed)
  }

  /** Wrapping on or off, at `cols` columns per visual row; true when that changed. */
  configure(wrap, cols) {
    cols = Math.max(8, Math.floor(cols));
    if (wrap === this.wrap && (!wrap || cols === this.cols)) return false;
    this.wrap = wrap;
    this.cols = cols;
    for (const page of this.store.pages.values()) page.extra = null;
    this.generation++;
    return true;
  }

  /** The page's extras (estimated on first use), or null when not wrapping. */
  _extras(index) {
    const page = this.store.pages.get(index);
    if (!page || !this.wrap) return null;
    if (!page.extra) {
      page.extra = new Uint16Array(PAGE);
      page.extraSum = 0;
      for (let i = 0; i < PAGE; i++) {
        const text = page.text[i];
        if (text === undefined) continue;
        const e = this._estimate(text);
        page.extra[i] = e;
        page.extraSum += e;
      }
    }
    return page;
  }

  _estimate(text) {
    const width = parseLine(text).width;
    return Math.min(65535, Math.max(0, Math.ceil(width / this.cols) - 1));
  }

  /** A line arrived (or changed): estimate its extra rows. */
  lineChanged(n) {
    if (!this.wrap) return;
    const index = Math.floor((n - 1) / PAGE);
    const page = this.store.pages.get(index);
    if (!page) return;
    if (!page.extra) { this.generation++; return; } // estimated as a whole on first use
    this.setExtra(n, this._estimate(page.text[(n - 1) % PAGE]));
  }

  /** A page was filled: its extras are estimated again on first use. */
  pageChanged(index) {
    const page = this.store.pages.get(index);
    if (page) page.extra = null;
    if (this.wrap) this.generation++;
  }

  extra(n) {
    const page = this._extras(Math.floor((n - 1) / PAGE));
    return page ? page.extra[(n - 1) % PAGE] : 0;
  }

  /** Set line n's extra rows (from its measured height); true when it changed. */
  setExtra(n, e) {
    const page = this._extras(Math.floor((n - 1) / PAGE));
    if (!page) return false;
    const i = (n - 1) % PAGE;
    e = Math.min(65535, Math.max(0, e));
    if (page.extra[i] === e) return false;
    page.extraSum += e - page.extra[i];
    page.extra[i] = e;
    this.generation++;
    return true;
  }

  /** Sum of extras of lines a..b (inclusive), hidden or not. */
  _sum(a, b) {
    if (!this.wrap || b < a) return 0;
    let total = 0;
    for (const index of this.store.pages.keys()) {
      const first = index * PAGE + 1;
      const last = first + PAGE - 1;
      if (last < a || first > b) continue;
      const page = this._extras(index);
      if (a <= first && last <= b) {
        total += page.extraSum;
      } else {
        for (let n = Math.max(a, first); n <= Math.min(b, last); n++) total += page.extra[n - first];
      }
    }
    return total;
  }

  /** Extra rows of the shown lines before line n. */
  extraBefore(n) {
    if (!this.wrap) return 0;
    let total = this._sum(1, n - 1);
    for (const [a, b] of this.sections.collapsedRanges) {
      if (a >= n) break;
      total -= this._sum(a, Math.min(b, n - 1));
    }
    return total;
  }

  /** Virtual y of the top of display row r (line `line`, if the caller knows it). */
  rowY(r, line = this.sections.rowToLine(r)) {
    return PAD + ROW_H * (r + this.extraBefore(line));
  }

  /** The full virtual height for `rowCount` rows of `lineCount` lines. */
  height(rowCount, lineCount) {
    return 2 * PAD + ROW_H * (rowCount + this.extraBefore(lineCount + 1));
  }

  /** The display row under virtual y (clamped to 0..rowCount-1). */
  rowAt(y, rowCount) {
    if (rowCount <= 0) return 0;
    if (!this.wrap) return Math.max(0, Math.min(rowCount - 1, Math.floor((y - PAD) / ROW_H)));
    let lo = 0;
    let hi = rowCount - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.rowY(mid) <= y) lo = mid; else hi = mid - 1;
    }
    return lo;
  }

  /** Height in px of line n's row. */
  rowHeight(n) {
    return ROW_H * (1 + this.extra(n));
  }
}
