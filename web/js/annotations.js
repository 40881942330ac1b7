// Annotations and errors: GitHub's `::error ...::msg`, `::warning::`, `::notice::` (and Azure's
// `##[error]msg`, `##[warning]`) shown as annotations with a summary at the top of the job, and
// "jump to the next error": an error annotation, a line with red text (SGR red, carried over
// from the line before as in a terminal), or a line matching the reader's pattern.
//
// Lines are classified as they pass through the page. A log too big to load whole is also
// asked of the server's search (`::error`, `::warning`, `::notice`), so the summary counts
// lines not loaded yet; the error jump reads on page by page (at most MAX_SCAN_PAGES) to find
// red lines and pattern matches that only the page can see.

import { el, getJSON, formatCount } from "./common.js";
import { PAGE } from "./lines.js";
import { parseLine, plainText } from "./term.js";

const GITHUB = /^::(error|warning|notice)(?:\s+([^:]*?))?::(.*)$/;
const AZURE = /^##\[(error|warning|notice)\](.*)$/;
const LEVELS = ["error", "warning", "notice"];
const LABEL = { error: "Error", warning: "Warning", notice: "Notice" };
const MAX_SCAN_PAGES = 300;
export const DEFAULT_ERROR_PATTERN = "\\b(error|fatal|failed)\\b";

/** {level, message, where, title} for an annotation line's visible text, or null. */
export function parseAnnotation(plain) {
  if (plain.indexOf("::") === -1 && plain.indexOf("##[") === -1) return null;
  const text = plain.trimStart();
  let m = GITHUB.exec(text);
  if (m) {
    const props = {};
    for (const pair of (m[2] || "").split(",")) {
      const eq = pair.indexOf("=");
      if (eq > 0) props[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
    }
    const where = props.file ? `${props.file}${props.line ? `:${props.line}` : ""}` : "";
    return { level: m[1], message: m[3], where, title: props.title || "" };
  }
  m = AZURE.exec(text);
  if (m) return { level: m[1], message: m[2], where: "", title: "" };
  return null;
}

/** The row body of an annotation line: a badge, where and title, the message. */
export function annotationNode(a, message) {
  return el("span", { class: `annotation annotation-${a.level}` },
    el("span", { class: "annotation-badge" }, LABEL[a.level]),
    a.where ? el("span", { class: "annotation-where" }, a.where) : null,
    a.title ? el("strong", { class: "annotation-title" }, a.title) : null,
    message);
}

export class Annotations {
  /** The job's lines (LineStore), their start pens (PenChain), and where to scroll. */
  constructor(jobId, store, pens, scrollToLine) {
    this.jobId = jobId;
    this.store = store;
    this.pens = pens;
    this.scrollToLine = scrollToLine;
    this.lines = { error: new Set(), warning: new Set(), notice: new Set() };
    this.messages = new Map(); // line -> {level, message} for lines seen
    this.setPattern(localStorage.getItem("logstream.errorPattern") ?? DEFAULT_ERROR_PATTERN);
    this.lastError = 0;
    this.generation = 0;
  }

  setPattern(source) {
    this.patternSource = source;
    try {
      this.pattern = source ? new RegExp(source, "i") : null;
      this.patternError = null;
    } catch (error) {
      this.pattern = null;
      this.patternError = error.message;
    }
  }

  /** A line passed through the page. */
  observe(n, raw) {
    if (raw.indexOf("::") === -1 && raw.indexOf("##[") === -1) return;
    const a = parseAnnotation(plainText(raw));
    if (!a) return;
    if (!this.lines[a.level].has(n)) this.generation++;
    this.lines[a.level].add(n);
    this.messages.set(n, a);
  }

  /** Ask the server where annotations are in the whole log (for logs too big to load). */
  async fetchCounts() {
    const id = this.jobId;
    for (const level of LEVELS) { // one after the other: each scans the whole log
      try {
        const body = await getJSON(`/api/jobs/${id}/search?q=${encodeURIComponent(`::${level}`)}&limit=1000`);
        for (const n of body.lines || []) this.lines[level].add(n);
        this.generation++;
      } catch (_) {
        return; // an older server without search: the lines seen are all there is
      }
    }
    this.render();
  }

  /** Is line n an error (annotation, red text, the pattern)? undefined when not loaded. */
  isError(n) {
    const raw = this.store.text(n);
    if (raw === undefined) return undefined;
    if (this.lines.error.has(n)) return true;
    if (parseLine(raw, this.pens.startPen(n)).red) return true;
    return !!this.pattern && this.pattern.test(plainText(raw));
  }

  /** Scroll to the first error after line `after` (0: the first of the log); the line or 0. */
  async next(after = 0) {
    const total = this.store.lineCount;
    const annotated = [...this.lines.error].filter((n) => n > after).sort((a, b) => a - b)[0];
    let pages = 0;
    for (let n = after + 1; n <= total; n++) {
      if (annotated !== undefined && n === annotated) return this._go(n);
      let verdict = this.isError(n);
      if (verdict === undefined) {
        if (pages++ >= MAX_SCAN_PAGES) break;
        await this.store.load(Math.floor((n - 1) / PAGE));
        verdict = this.isError(n);
      }
      if (verdict) return this._go(n);
    }
    if (annotated !== undefined) return this._go(annotated);
    this._say(after ? "No more errors" : "No errors found");
    return 0;
  }

  _go(n) {
    this.lastError = n;
    this.scrollToLine(n);
    this._say("");
    return n;
  }

  _say(text) {
    const node = document.getElementById("error-status");
    if (node) node.textContent = text;
  }

  /** The summary at the top of the job: counts, and the first messages with their lines. */
  render() {
    const box = document.getElementById("annotations");
    if (!box || this.renderedGen === this.generation) return;
    this.renderedGen = this.generation;
    const counts = LEVELS.map((level) => [level, this.lines[level].size]).filter(([, c]) => c);
    box.hidden = counts.length === 0;
    if (!counts.length) return;
    const chips = counts.map(([level, count]) => el("button", {
      type: "button", class: `annotation-chip annotation-${level}`, "data-level": level,
      onclick: () => this.step(level),
    }, `${formatCount(count)} ${LABEL[level].toLowerCase()}${count === 1 ? "" : "s"}`));
    const list = el("ul", { class: "annotation-list" });
    const seen = [...this.messages.entries()].sort((a, b) => a[0] - b[0]).slice(0, 5);
    for (const [n, a] of seen) {
      list.append(el("li", {}, el("a", { href: `#L${n}`, class: `annotation-${a.level}` },
        `${LABEL[a.level]} · line ${n}`), ` ${a.title ? `${a.title}: ` : ""}${a.message}`));
    }
    box.replaceChildren(el("div", { class: "annotation-chips" }, ...chips), list);
  }

  /** Jump to the next annotation of a level after the one last shown. */
  step(level) {
    const lines = [...this.lines[level]].sort((a, b) => a - b);
    if (!lines.length) return;
    const from = this.stepAt && this.stepAt.level === level ? this.stepAt.n : 0;
    const n = lines.find((x) => x > from) || lines[0];
    this.stepAt = { level, n };
    this.scrollToLine(n);
  }
}
