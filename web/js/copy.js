// Copying from the log: the selected line(s), a section, the permalink. What is copied is the
// visible text (what a terminal shows), one line per line; the page only holds part of a big
// log, so the lines needed are fetched first.

import { PAGE } from "./lines.js";
import { plainText } from "./term.js";

const MAX_COPY_LINES = 100_000;

export const copied = { last: null }; // the last text copied (the test hook reads it)

/** Put text on the clipboard (the async API where the page may use it, else execCommand). */
export async function copyText(text) {
  copied.last = text;
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch (_) {
    // not allowed here: the old way below
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch (_) {
    ok = false;
  }
  area.remove();
  return ok;
}

/** The visible text of lines a..b (fetching what the page does not hold), marker lines out. */
export async function linesText(store, sections, a, b) {
  b = Math.min(b, a + MAX_COPY_LINES - 1, store.lineCount);
  for (let index = Math.floor((a - 1) / PAGE); index <= Math.floor((b - 1) / PAGE); index++) {
    if (!store.isComplete(index)) await store.load(index);
  }
  const out = [];
  for (let n = a; n <= b; n++) {
    const raw = store.text(n);
    if (raw === undefined) continue;
    const header = sections.header(n);
    if (header) out.push(header.details.title);
    else if (!sections.isMarkerLine(n)) out.push(plainText(raw));
  }
  return out.join("\n");
}

/** The text of the section starting at line `start`: its title, then its lines. */
export function sectionText(store, sections, start) {
  const header = sections.header(start);
  if (!header) return Promise.resolve("");
  const end = header.end || store.lineCount;
  return linesText(store, sections, start, end);
}

/** The permalink of lines a..b. */
export function permalink(a, b) {
  return `${location.origin}${location.pathname}${a === b ? `#L${a}` : `#L${a}-L${b}`}`;
}
