// Collapsible sections: GitLab's `section_start:<ts>:<name>[opts]` / `section_end:<ts>:<name>`
// markers and GitHub's `::group::<title>` / `::endgroup::`, and the mapping between display
// rows and line numbers when some sections are collapsed.
//
// Markers are learned as lines pass through the page (history pages and live lines); in a log
// too big to load, a section's end is found by reading on from its start when it is collapsed.

const GITLAB = /section_(start|end):(\d+):([A-Za-z0-9_.\-]+)(?:\[([^\]]*)\])?/;

/**
 * Classify a line: {type: "start"|"end", kind, name, ts, options, title} or null.
 * `toPlain(raw)` gives the visible text; it is called only for lines that may be markers.
 */
export function parseMarker(raw, toPlain) {
  const gitlab = raw.indexOf("section_") !== -1;
  if (!gitlab && raw.indexOf("::") === -1) return null;
  const plain = toPlain(raw);
  if (gitlab) {
    const m = GITLAB.exec(raw);
    // The marker must not be ordinary output: it is at the start, after an erase, or after CR.
    if (m && /^(?:\x1b\[[0-9;]*[A-Za-z])*$/.test(raw.slice(0, m.index).replace(/\r/g, ""))) {
      const title = plain.replace(GITLAB, "").trim();
      return {
        type: m[1], kind: "gitlab", name: m[3], ts: Number(m[2]),
        options: m[4] || "", title: title || m[3],
      };
    }
  }
  const trimmed = plain.trimStart();
  if (trimmed.startsWith("::group::")) {
    return { type: "start", kind: "github", name: "", ts: null, options: "",
             title: trimmed.slice(9).trim() || "group" };
  }
  if (trimmed.startsWith("::endgroup::")) {
    return { type: "end", kind: "github", name: "", ts: null, options: "", title: "" };
  }
  return null;
}

export class Sections {
  constructor() {
    this.markers = new Map(); // line -> {type, details}
    this.pairs = new Map(); // start line -> end line
    this.open = new Set(); // start lines of sections with no end yet
    this.seen = []; // merged [first, last] ranges of lines observed
    this.collapsed = new Set(); // start lines
    this.userTouched = new Set(); // start lines the user toggled (defaults no longer apply)
    this.dirty = false;
    this.generation = 0;
    this.hidden = []; // sorted, merged [first, last] hidden line ranges
  }

  /** Record the line's marker if it is one; true when the structure changed. */
  observe(n, raw, toPlain) {
    const marker = parseMarker(raw, toPlain);
    if (!marker || this.markers.has(n)) return false;
    this.markers.set(n, { type: marker.type, details: marker });
    if (marker.type === "start" && /collapsed=true/.test(marker.options)
        && !this.userTouched.has(n)) {
      this.collapsed.add(n);
    }
    this.dirty = true;
    return true;
  }

  /** Lines a..b have all been seen (a loaded page, a run of live lines). */
  scanned(a, b) {
    if (b < a) return;
    const ranges = this.seen || (this.seen = []);
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
    for (const [x, y] of this.seen || []) if (x <= a && b <= y) return true;
    return false;
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
    for (const n of lines) {
      if (!this.isScanned(previous + 1, n - 1)) stack = []; // unseen lines: ends unknown
      previous = n;
      const d = this.markers.get(n).details;
      if (d.type === "start") {
        // GitHub groups do not nest: a new group ends the open one.
        const top = stack[stack.length - 1];
        if (d.kind === "github" && top !== undefined
            && this.markers.get(top).details.kind === "github") {
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
    const ranges = [];
    for (const start of [...this.collapsed].sort((a, b) => a - b)) {
      const end = this.pairs.has(start) ? this.pairs.get(start) : lineCount;
      if (end <= start) continue;
      const last = ranges[ranges.length - 1];
      if (last && start + 1 <= last[1] + 1) last[1] = Math.max(last[1], end);
      else ranges.push([start + 1, end]);
    }
    this.hidden = ranges;
    this.generation++;
    return true;
  }

  hiddenCount() {
    let total = 0;
    for (const [a, b] of this.hidden) total += b - a + 1;
    return total;
  }

  /** 0-based display row -> line number. */
  rowToLine(row) {
    let line = row + 1;
    for (const [a, b] of this.hidden) {
      if (a <= line) line += b - a + 1;
      else break;
    }
    return line;
  }

  /** Line number -> 0-based display row (a hidden line maps to its section's header row). */
  lineToRow(line) {
    let skipped = 0;
    for (const [a, b] of this.hidden) {
      if (b < line) skipped += b - a + 1;
      else if (a <= line) return a - 2 - skipped;
      else break;
    }
    return line - 1 - skipped;
  }

  /** Section info for a header row: {title, collapsed, end, duration, kind} or null. */
  header(n) {
    const marker = this.markers.get(n);
    if (!marker || marker.type !== "start") return null;
    const d = marker.details;
    const end = this.pairs.has(n) ? this.pairs.get(n) : null;
    return { details: d, collapsed: this.collapsed.has(n), end, open: this.open.has(n) };
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
    this.userTouched.add(n);
    if (this.collapsed.has(n)) this.collapsed.delete(n);
    else this.collapsed.add(n);
    this.dirty = true;
  }

  /** Expand every collapsed section that hides line n; true when something changed. */
  reveal(n) {
    let changed = false;
    for (const start of [...this.collapsed]) {
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
