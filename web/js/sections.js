// Collapsible sections in the four syntaxes CI systems print, and the mapping between display
// rows and line numbers when some lines are hidden (collapsed sections, marker lines):
// - GitLab: `section_start:<ts>:<name>[opts]` ... `section_end:<ts>:<name>` (with the usual
//   `\r\e[0K` after the marker, or without it: the title is whatever follows the marker);
// - GitHub Actions `::group::<title>` / `::endgroup::`, Azure's `##[group]` / `##[endgroup]`;
// - Buildkite `--- <title>` (collapsed), `+++ <title>` (expanded), `~~~ <title>` (collapsed),
//   each ending at the next; `^^^ +++` expands the one it is in. Unified diff headers
//   (`--- a/...`, `+++ b/...`, `/dev/null`) are not sections.
// End markers show nothing of their own and are hidden.
//
// Markers are learned as lines pass through the page (history pages and live lines); in a log
// too big to load, a section's end is found by reading on from its start when it is collapsed.

const GITLAB = /section_(start|end):(\d+):([A-Za-z0-9_.\-]+)(?:\[([^\]]*)\])?/;
const GROUP = /^(?:::group::|##\[group\])(.*)$/;
const ENDGROUP = /^(?:::endgroup::|##\[endgroup\])\s*$/;
const BUILDKITE = /^(---|\+\+\+|~~~) (.*\S.*)$/;
const DIFF_HEADER = /^(?:---|\+\+\+) (?:[ab]\/|\/dev\/null)/;
const REOPEN = /^\^\^\^ \+\+\+\s*$/;

function marker(type, kind, title, extra = {}) {
  return { type, kind, name: "", ts: null, options: "", title, titleRaw: null, ...extra };
}

/**
 * Classify a line: {type: "start"|"end"|"reopen", kind, name, ts, options, title, titleRaw}
 * or null. `toPlain(raw)` gives the visible text; it is called only for lines that may be
 * markers.
 */
export function parseMarker(raw, toPlain) {
  const gitlab = raw.indexOf("section_") !== -1;
  if (!gitlab && raw.indexOf("::") === -1 && raw.indexOf("##[") === -1
      && !/^[^\S\r]*(?:\x1b\[[0-9;]*m)*(?:---|\+\+\+|~~~|\^\^\^) /.test(raw)) {
    return null;
  }
  if (gitlab) {
    const m = GITLAB.exec(raw);
    // The marker must not be ordinary output: it is at the start, after an erase, or after CR.
    if (m && /^(?:\x1b\[[0-9;]*[A-Za-z])*$/.test(raw.slice(0, m.index).replace(/\r/g, ""))) {
      // The title is what follows the marker (after the usual `\r\e[0K`, which erases it).
      const titleRaw = raw.slice(m.index + m[0].length).replace(/^\r?(?:\x1b\[0?K)?/, "");
      const title = toPlain(titleRaw).trim();
      return {
        type: m[1], kind: "gitlab", name: m[3], ts: Number(m[2]),
        options: m[4] || "", title: title || m[3], titleRaw: title ? titleRaw : null,
        empty: !title,
      };
    }
  }
  const plain = toPlain(raw).trimStart();
  const group = GROUP.exec(plain);
  if (group) return marker("start", "github", group[1].trim() || "group");
  if (ENDGROUP.test(plain)) return marker("end", "github", "", { empty: true });
  if (REOPEN.test(plain)) return marker("reopen", "buildkite", "", { empty: true });
  const bk = BUILDKITE.exec(plain);
  if (bk && !DIFF_HEADER.test(plain)) {
    return marker("start", "buildkite", bk[2].trim(), { folded: bk[1] !== "+++" });
  }
  return null;
}

export class Sections {
  constructor() {
    this.markers = new Map(); // line -> {type, details}
    this.pairs = new Map(); // start line -> end line
    this.open = new Set(); // start lines of sections with no end yet
    this.seen = []; // merged [first, last] ranges of lines observed
    this.collapsed = new Set(); // start lines collapsed by the reader (or GitLab's option)
    this.folded = new Set(); // Buildkite starts collapsed by default once they have ended
    this.userTouched = new Set(); // start lines the user toggled (defaults no longer apply)
    this.dirty = false;
    this.generation = 0;
    this.hidden = []; // sorted, merged [first, last] hidden line ranges
    this.hiddenBefore = [0]; // hiddenBefore[i]: lines hidden by the ranges before hidden[i]
    this.collapsedRanges = []; // the merged ranges hidden by collapsed sections alone
  }

  /** Record the line's marker if it is one; true when the structure changed. */
  observe(n, raw, toPlain) {
    const marker = parseMarker(raw, toPlain);
    if (!marker || this.markers.has(n)) return false;
    this.markers.set(n, { type: marker.type, details: marker });
    if (marker.type === "start" && !this.userTouched.has(n)) {
      if (/collapsed=true/.test(marker.options)) this.collapsed.add(n);
      if (marker.folded) this.folded.add(n);
    }
    this.dirty = true;
    return true;
  }

  /** Lines a..b have all been seen (a loaded page, a run of live lines). */
  scanned(a, b) {
    if (b < a) return;
    const ranges = this.seen;
    ranges.push([a, b]);
    ranges.sort((x, y) => x[0] - y[0]);
    const merged = [];
    for (const r of ranges) {
      const last = merged[merged.length - 1];
      if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
      else merged.push([r[0], r[1]]);
    }
    this.seen = merged;
    this.dirty = true;
  }

  /** True when every line from a to b has been seen. */
  isScanned(a, b) {
    if (b < a) return true;
    for (const [x, y] of this.seen) if (x <= a && b <= y) return true;
    return false;
  }

  isCollapsed(n) {
    return this.collapsed.has(n)
      || (this.folded.has(n) && !this.userTouched.has(n) && this.pairs.has(n));
  }

  /**
   * Pair starts and ends; recompute the hidden ranges. A start and an end pair up only if every
   * line between them has been seen (an unseen stretch could hold the real end), and GitLab
   * markers only with the same name. `lineCount` bounds sections still open.
   */
  update(lineCount) {
    if (!this.dirty && this.lastCount === lineCount) return false;
    this.dirty = false;
    this.lastCount = lineCount;
    const lines = [...this.markers.keys()].sort((a, b) => a - b);
    let stack = [];
    let previous = 0;
    this.pairs = new Map();
    this.open = new Set(); // starts whose section runs to the end of what exists (no end yet)
    const markerLines = [];
    for (const n of lines) {
      if (!this.isScanned(previous + 1, n - 1)) stack = []; // unseen lines: ends unknown
      previous = n;
      const d = this.markers.get(n).details;
      if (d.empty && d.type !== "start") markerLines.push(n);
      const top = stack[stack.length - 1];
      const topKind = top === undefined ? null : this.markers.get(top).details.kind;
      if (d.type === "reopen") {
        if (topKind === "buildkite" && !this.userTouched.has(top)) this.folded.delete(top);
      } else if (d.type === "start") {
        // GitHub groups and Buildkite sections do not nest: a new one ends the open one.
        if ((d.kind === "github" || d.kind === "buildkite") && topKind === d.kind) {
          stack.pop();
          this.pairs.set(top, n - 1);
        }
        stack.push(n);
      } else {
        for (let i = stack.length - 1; i >= 0; i--) {
          const sd = this.markers.get(stack[i]).details;
          if (sd.kind === d.kind && sd.name === d.name) {
            this.pairs.set(stack[i], n);
            stack = stack.slice(0, i);
            break;
          }
        }
      }
    }
    if (this.isScanned(previous + 1, lineCount)) for (const n of stack) this.open.add(n);
    this.collapsedRanges = merge(this._collapsedStarts().map((start) => {
      const end = this.pairs.has(start) ? this.pairs.get(start) : lineCount;
      return [start + 1, end];
    }));
    this.hidden = merge([...this.collapsedRanges, ...markerLines.map((n) => [n, n])]);
    this.hiddenBefore = [0];
    for (const [a, b] of this.hidden) {
      this.hiddenBefore.push(this.hiddenBefore[this.hiddenBefore.length - 1] + b - a + 1);
    }
    this.generation++;
    return true;
  }

  _collapsedStarts() {
    const starts = new Set(this.collapsed);
    for (const n of this.folded) if (this.isCollapsed(n)) starts.add(n);
    return [...starts].sort((a, b) => a - b);
  }

  hiddenCount() {
    return this.hiddenBefore[this.hiddenBefore.length - 1];
  }

  /** The index of the last hidden range starting at or before line n, or -1. */
  _rangeAt(n) {
    let lo = 0;
    let hi = this.hidden.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.hidden[mid][0] <= n) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return found;
  }

  isHidden(n) {
    const i = this._rangeAt(n);
    return i >= 0 && n <= this.hidden[i][1];
  }

  /** 0-based display row -> line number. */
  rowToLine(row) {
    // The last range with fewer visible rows before it than `row`... is the one row follows.
    let lo = 0;
    let hi = this.hidden.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.hidden[mid][0] - 1 - this.hiddenBefore[mid] <= row) { found = mid; lo = mid + 1; }
      else hi = mid - 1;
    }
    return row + 1 + (found < 0 ? 0 : this.hiddenBefore[found + 1]);
  }

  /** Line number -> 0-based display row (a hidden line maps to the row before it). */
  lineToRow(line) {
    const i = this._rangeAt(line);
    if (i < 0) return line - 1;
    const [a, b] = this.hidden[i];
    if (line <= b) return Math.max(0, a - 2 - this.hiddenBefore[i]);
    return line - 1 - this.hiddenBefore[i + 1];
  }

  /** Section info for a header row: {details, collapsed, end, open} or null. */
  header(n) {
    const marker = this.markers.get(n);
    if (!marker || marker.type !== "start") return null;
    const end = this.pairs.has(n) ? this.pairs.get(n) : null;
    return { details: marker.details, collapsed: this.isCollapsed(n), end, open: this.open.has(n) };
  }

  /** The start lines of the sections known so far. */
  starts() {
    return [...this.markers.keys()].filter((n) => this.markers.get(n).type === "start")
      .sort((a, b) => a - b);
  }

  /** The innermost section holding line n: its start line, or null. */
  enclosing(n) {
    let best = null;
    for (const start of this.starts()) {
      if (start > n) break;
      const end = this.pairs.has(start) ? this.pairs.get(start) : (this.open.has(start) ? Infinity : start);
      if (n <= end) best = start;
    }
    return best;
  }

  /** A marker line with nothing of its own to show (an end marker, `^^^ +++`): hidden. */
  isMarkerLine(n) {
    const marker = this.markers.get(n);
    return !!marker && marker.type !== "start" && !!marker.details.empty;
  }

  isEnd(n) {
    const marker = this.markers.get(n);
    return !!marker && marker.type === "end";
  }

  endDetails(n) {
    const marker = this.markers.get(n);
    return marker && marker.type === "end" ? marker.details : null;
  }

  toggle(n) {
    const collapse = !this.isCollapsed(n);
    this.userTouched.add(n);
    if (collapse) this.collapsed.add(n);
    else this.collapsed.delete(n);
    this.dirty = true;
  }

  /** Collapse (true) or expand (false) every section known. */
  setAll(collapse) {
    for (const n of this.starts()) {
      this.userTouched.add(n);
      if (collapse) this.collapsed.add(n);
      else this.collapsed.delete(n);
    }
    this.dirty = true;
  }

  /** Expand every collapsed section that hides line n; true when something changed. */
  reveal(n) {
    let changed = false;
    for (const start of this._collapsedStarts()) {
      const end = this.pairs.has(start) ? this.pairs.get(start) : Infinity;
      if (start < n && n <= end) {
        this.collapsed.delete(start);
        this.userTouched.add(start);
        changed = true;
      }
    }
    if (changed) this.dirty = true;
    return changed;
  }
}

function merge(ranges) {
  ranges = ranges.filter(([a, b]) => b >= a).sort((x, y) => x[0] - y[0]);
  const out = [];
  for (const [a, b] of ranges) {
    const last = out[out.length - 1];
    if (last && a <= last[1] + 1) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}
