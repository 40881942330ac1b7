// Building one row of the log pane: line number (a permalink), timestamp, and the line as a
// terminal shows it (starting with the pen the line before ended with), or a section header
// (a toggle button with aria-expanded, the title, duration and size, a copy button), or an
// annotation. A row is rebuilt only when something it shows changed (its key).

import { el, formatClock, formatCount, formatDuration } from "./common.js";
import { parseLine, renderRuns } from "./ansi.js";
import { penKey } from "./term.js";
import { annotationNode, parseAnnotation } from "./annotations.js";

export class RowPainter {
  /** parts: {store, sections, search, pens, view} where view has selection and showTs. */
  constructor(parts) {
    Object.assign(this, parts);
    this.built = 0;
  }

  _key(n, text) {
    const { sections, search, store, view } = this;
    const header = sections.header(n);
    const selected = view.selection && n >= view.selection.a && n <= view.selection.b;
    return [
      text === undefined ? 0 : 1, search.generation, search.isMatch(n) ? 1 : 0,
      search.isCurrent(n) ? 1 : 0, view.showTs ? store.ts(n) || 0 : 0,
      header ? `${header.collapsed}:${header.end}:${this.sectionDuration(n, header)}` : "",
      selected ? 1 : 0, text === undefined ? "" : penKey(this.pens.startPen(n)),
      document.documentElement.dataset.theme, // colours made readable differ per theme
    ].join("|");
  }

  /** Fill `row` with line n; false when it already showed that. */
  fill(row, n) {
    const text = this.store.text(n);
    const key = this._key(n, text);
    if (row._key === key) return false;
    row._key = key;
    this.built++;
    const { sections, search, view } = this;
    const header = sections.header(n);
    const classes = ["row"];
    if (text === undefined) classes.push("pending");
    if (view.selection && n >= view.selection.a && n <= view.selection.b) classes.push("hl");
    if (search.isMatch(n)) classes.push("match");
    if (search.isCurrent(n)) classes.push("current");
    if (header) classes.push("section-header", header.collapsed ? "collapsed" : "expanded");
    const parts = [el("a", { class: "ln", href: `#L${n}`, "data-n": n, tabindex: -1 }, String(n))];
    if (view.showTs) {
      const ts = this.store.ts(n);
      parts.push(el("span", { class: "ts" }, ts ? formatClock(ts) : ""));
    }
    const body = el("span", { class: "tx" });
    let after = null;
    if (text === undefined) {
      body.append(el("span", { class: "placeholder" }));
    } else if (header) {
      after = this._header(body, n, header);
    } else {
      const line = parseLine(text, this.pens.startPen(n));
      const plain = line.runs.map((run) => run.text).join("");
      const annotation = parseAnnotation(plain);
      if (annotation) {
        classes.push("annotation-row", `annotation-row-${annotation.level}`);
        body.append(annotationNode(annotation, renderRuns(
          [{ text: annotation.message, pen: null }], search.highlight())));
      } else {
        if (line.red) classes.push("red");
        body.append(renderRuns(line.runs, search.highlight()));
      }
    }
    row.className = classes.join(" ");
    parts.push(body);
    if (after) parts.push(after);
    // A header rebuilt while its button has the focus (it was just toggled) keeps the focus.
    const focused = document.activeElement;
    const refocus = focused && row.contains(focused) && focused.dataset.toggle
      ? ".caret" : focused && row.contains(focused) && focused.dataset.copySection ? ".section-copy" : null;
    row.replaceChildren(...parts);
    if (refocus) {
      const again = row.querySelector(refocus);
      if (again) again.focus({ preventScroll: true });
    }
    return true;
  }

  _header(body, n, header) {
    const d = header.details;
    const title = d.titleRaw
      ? renderRuns(parseLine(d.titleRaw, this.pens.startPen(n)).runs, this.search.highlight())
      : renderRuns([{ text: d.title, pen: null }], this.search.highlight());
    const expanded = !header.collapsed;
    body.append(
      el("button", {
        type: "button", class: "caret", "data-toggle": n, "aria-expanded": String(expanded),
        "aria-label": `${expanded ? "Collapse" : "Expand"} section ${d.title}`,
      }),
      el("span", { class: "section-title" }, title),
    );
    const duration = this.sectionDuration(n, header);
    if (duration) body.append(el("span", { class: "section-duration" }, duration));
    if (header.collapsed && header.end) {
      body.append(el("span", { class: "section-count" }, `${formatCount(header.end - n)} lines`));
    }
    return el("button", {
      type: "button", class: "section-copy", "data-copy-section": n,
      "aria-label": `Copy section ${d.title}`, title: "Copy this section's text",
    }, "Copy");
  }

  sectionDuration(n, header) {
    if (!header.end || !header.details) return "";
    if (header.details.kind === "gitlab") {
      const end = this.sections.endDetails(header.end);
      return end && end.ts !== null ? formatDuration(end.ts - header.details.ts) : "";
    }
    const a = this.store.ts(n);
    const b = this.store.ts(header.end);
    return a && b ? formatDuration((b - a) / 1000) : "";
  }
}
