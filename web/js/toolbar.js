// The viewer's toolbar and selection bar: timestamps, line wrapping (remembered; on by default
// on narrow screens), jump to the next error and its pattern, collapse/expand all, the raw
// download, and copying the selected lines, their permalink or a section.

import { DEFAULT_ERROR_PATTERN } from "./annotations.js";
import { copyText, linesText, permalink, sectionText } from "./copy.js";

const NARROW = "(max-width: 700px)";

function pressed(button, on) {
  button.setAttribute("aria-pressed", String(on));
}

/** Whether lines wrap: the reader's choice if made, else on for narrow screens. */
export function wrapWanted() {
  const stored = localStorage.getItem("logstream.wrap");
  if (stored === "1" || stored === "0") return stored === "1";
  return window.matchMedia(NARROW).matches;
}

export function wireToolbar(viewer) {
  const $ = (id) => document.getElementById(id);
  const { store, sections } = viewer.parts;

  const ts = $("ts-toggle");
  pressed(ts, viewer.showTs);
  viewer.pane.classList.toggle("with-ts", viewer.showTs);
  ts.addEventListener("click", () => {
    viewer.setTimestamps(!viewer.showTs);
    pressed(ts, viewer.showTs);
  });

  const wrap = $("wrap-toggle");
  viewer.setWrap(wrapWanted());
  pressed(wrap, viewer.wrap);
  wrap.addEventListener("click", () => {
    viewer.setWrap(!viewer.wrap);
    localStorage.setItem("logstream.wrap", viewer.wrap ? "1" : "0");
    pressed(wrap, viewer.wrap);
  });

  const download = $("download");
  download.href = `/api/jobs/${viewer.jobId}/log?format=text`;
  download.setAttribute("download", `job-${viewer.jobId}.log`);

  const errors = viewer.annotations;
  const errorButton = $("first-error");
  errorButton.addEventListener("click", async () => {
    errorButton.disabled = true;
    try {
      const from = errorButton.dataset.next === "1" ? errors.lastError : 0;
      const n = await errors.next(from);
      errorButton.dataset.next = n ? "1" : "0";
      errorButton.querySelector(".label").textContent = n ? "Next error" : "First error";
    } finally {
      errorButton.disabled = false;
    }
  });
  const pattern = $("error-pattern");
  pattern.value = errors.patternSource;
  pattern.placeholder = DEFAULT_ERROR_PATTERN;
  pattern.addEventListener("change", () => {
    errors.setPattern(pattern.value);
    localStorage.setItem("logstream.errorPattern", pattern.value);
    pattern.setCustomValidity(errors.patternError ? `Not a valid pattern: ${errors.patternError}` : "");
    pattern.reportValidity();
    errorButton.dataset.next = "0";
  });

  $("collapse-all").addEventListener("click", () => viewer.setAllSections(true));
  $("expand-all").addEventListener("click", () => viewer.setAllSections(false));

  // The selection bar: what the clicked line numbers picked (#L12 or #L12-L14).
  const bar = $("selection-bar");
  const status = $("copy-status");
  const say = (ok, what) => {
    status.textContent = ok ? `Copied ${what}` : "Could not copy";
    clearTimeout(bar._timer);
    bar._timer = setTimeout(() => { status.textContent = ""; }, 2500);
  };
  $("copy-lines").addEventListener("click", async () => {
    const { a, b } = viewer.selection;
    say(await copyText(await linesText(store, sections, a, b)), a === b ? "the line" : "the lines");
  });
  $("copy-link").addEventListener("click", async () => {
    const { a, b } = viewer.selection;
    say(await copyText(permalink(a, b)), "the link");
  });
  $("clear-selection").addEventListener("click", () => {
    viewer.selection = null;
    history.replaceState(null, "", location.pathname + location.search);
    viewer.scheduleRender();
  });
  const label = $("sel-label");
  return {
    /** After each render: the selection bar shows what is selected. */
    render() {
      const sel = viewer.selection;
      bar.hidden = !sel;
      if (sel) {
        const text = sel.a === sel.b ? `Line ${sel.a}` : `Lines ${sel.a}–${sel.b}`;
        if (label.textContent !== text) label.textContent = text;
      }
    },
    async copySection(n) {
      say(await copyText(await sectionText(store, sections, n)), "the section");
    },
  };
}
