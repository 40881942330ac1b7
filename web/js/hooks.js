// window.__logstream: what tests and benchmarks read from the viewer (state, rendered rows,
// cached lines) and the few actions they drive. Nothing in the page itself uses it. It goes
// through the viewer's public interface only (see the comment above class Viewer).

import { plainText } from "./ansi.js";

export function hooks(viewer) {
  return {
    ready: () => viewer.ready,
    state: () => viewer.snapshot(),
    /** Rows in the DOM whose text is loaded, in line order: [{n, text}]. */
    renderedLines: () => viewer.renderedRows()
      .filter((row) => !row.pending)
      .map(({ n, text }) => ({ n, text })),
    /** Lines visible in the pane right now: [{n, text, pending}]. */
    visibleLines: () => viewer.renderedRows({ visibleOnly: true }),
    /** Cached lines from..to as [{n, text}] with the visible text (undefined if not loaded). */
    lines: (from, to) => {
      const out = [];
      for (let n = from; n <= to; n++) {
        const raw = viewer.lineText(n);
        out.push({ n, text: raw === undefined ? undefined : plainText(raw) });
      }
      return out;
    },
    scrollToLine: (n) => viewer.scrollToLine(n),
    follow: () => viewer.resumeFollowing(),
    search: (query) => viewer.search.run(query),
    searchNext: () => viewer.search.step(1),
    searchGo: (index) => viewer.search.go(index),
  };
}
