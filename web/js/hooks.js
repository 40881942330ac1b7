// window.__logstream: what tests and benchmarks read from the viewer (state, rendered rows,
// cached lines) and the few actions they drive. Nothing in the page itself uses it. It goes
// through the viewer's public interface only (see the comment above class Viewer).

import { plainText } from "./ansi.js";
import { copied } from "./copy.js";

/** The runs of a rendered row as the DOM shows them: [{text, fg, bg, bold, href}], where fg/bg
 * is a palette index 0-15 (from the theme class), "#rrggbb" (inline colour) or null. */
function domRuns(row) {
  const names = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];
  const colour = (node, kind) => {
    for (let at = node; at && !at.classList.contains("tx"); at = at.parentElement) {
      for (const cls of at.classList) {
        const m = new RegExp(`^ansi-${kind}-(bright-)?([a-z]+)$`).exec(cls);
        if (m && names.includes(m[2])) return names.indexOf(m[2]) + (m[1] ? 8 : 0);
      }
      const inline = kind === "fg" ? at.dataset.fg || at.style.color : at.style.backgroundColor;
      if (inline) {
        if (inline.startsWith("#")) return inline;
        const [r, g, b] = inline.match(/\d+/g).map(Number);
        return `#${[r, g, b].map((v) => v.toString(16).padStart(2, "0")).join("")}`;
      }
    }
    return null;
  };
  const out = [];
  const walker = document.createTreeWalker(row.querySelector(".tx"), NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    const link = parent.closest("a.loglink");
    out.push({
      text: node.data, fg: colour(parent, "fg"), bg: colour(parent, "bg"),
      bold: !!parent.closest(".ansi-bold"), href: link ? link.getAttribute("href") : null,
    });
  }
  return out;
}

export function hooks(viewer) {
  return {
    ready: () => viewer.ready,
    state: () => viewer.snapshot(),
    /** Rows in the DOM whose text is loaded, in line order: [{n, text}]. */
    renderedLines: () => viewer.renderedRows()
      .filter((row) => !row.pending)
      .map(({ n, text }) => ({ n, text })),
    /** Every row in the DOM, pending or not: [{n, text, pending, top, height}]. */
    renderedRows: () => viewer.renderedRows(),
    /** Lines visible in the pane right now: [{n, text, pending, top, height}]. */
    visibleLines: () => viewer.renderedRows({ visibleOnly: true }),
    /** The styled runs of rendered row n (see domRuns), or null when it is not in the DOM. */
    styledRow: (n) => {
      const row = document.querySelector(`#log .row[data-n="${n}"]`);
      return row ? domRuns(row) : null;
    },
    /** Cached lines from..to as [{n, text}] with the visible text (undefined if not loaded). */
    lines: (from, to) => {
      const out = [];
      for (let n = from; n <= to; n++) {
        const raw = viewer.lineText(n);
        out.push({ n, text: raw === undefined ? undefined : plainText(raw) });
      }
      return out;
    },
    lastCopied: () => copied.last,
    scrollToLine: (n) => viewer.scrollToLine(n),
    follow: () => viewer.resumeFollowing(),
    setWrap: (on) => viewer.setWrap(on),
    nextError: (after = 0) => viewer.annotations.next(after),
    search: (query) => viewer.search.run(query),
    searchNext: () => viewer.search.step(1),
    searchGo: (index) => viewer.search.go(index),
  };
}
