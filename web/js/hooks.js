// window.__logstream: what tests and benchmarks read from the viewer (state, rendered rows,
// cached lines) and the few actions they drive. Nothing in the page itself uses it.

import { plainText } from "./ansi.js";

export function hooks(viewer) {
  return {
    ready: () => !!viewer.job,
    state: () => ({
      jobId: viewer.jobId,
      status: viewer.job && viewer.job.status,
      exitCode: viewer.job && viewer.job.exit_code,
      lineCount: viewer.store.lineCount,
      lastStreamed: viewer.stream ? viewer.stream.last : null,
      connection: viewer.$("conn").dataset.state,
      following: viewer.following,
      cachedPages: viewer.store.pages.size,
      inFlight: viewer.store.inFlight.size,
      domRows: viewer.rows.size,
      search: viewer.search.summary(),
      firstPaintMs: viewer.firstPaintMs || null,
      renders: viewer.stats.renders,
      lastRenderMs: viewer.stats.lastRenderMs,
      totalRenderMs: viewer.stats.totalRenderMs,
      rowsBuilt: viewer.stats.rowsBuilt,
      reconnects: viewer.stream ? viewer.stream.reconnects : 0,
      connectionLog: [...viewer.connectionLog],
      maxPages: viewer.store.maxPages,
    }),
    /** Rows in the DOM whose text is loaded, in line order: [{n, text}]. */
    renderedLines: () => [...viewer.rows.entries()]
      .filter(([, row]) => !row.classList.contains("pending"))
      .sort((a, b) => a[0] - b[0])
      .map(([n, row]) => ({ n, text: row.querySelector(".tx").textContent })),
    /** Lines visible in the pane right now: [{n, text}]. */
    visibleLines: () => {
      const box = viewer.pane.getBoundingClientRect();
      return [...viewer.rows.entries()]
        .filter(([, row]) => {
          const r = row.getBoundingClientRect();
          return r.bottom > box.top + 1 && r.top < box.bottom - 1;
        })
        .sort((a, b) => a[0] - b[0])
        .map(([n, row]) => ({ n, text: row.querySelector(".tx").textContent, pending: row.classList.contains("pending") }));
    },
    /** Cached lines from..to as [{n, text}] with the visible text (undefined if not loaded). */
    lines: (from, to) => {
      const out = [];
      for (let n = from; n <= to; n++) {
        const raw = viewer.store.text(n);
        out.push({ n, text: raw === undefined ? undefined : plainText(raw) });
      }
      return out;
    },
    scrollToLine: (n) => viewer.scrollToLine(n),
    follow: () => viewer.resumeFollowing(),
    search: (query) => viewer.search.run(query),
    searchNext: () => viewer.search.step(1),
    searchGo: (index) => viewer.search._go(index),
  };
}
