// Styled runs of a log line (term.js: what a terminal shows) -> DOM, with web addresses as links
// and search hits marked. The 16 named colours get theme classes (app.css sets them per theme);
// 256-colour and truecolour ones an inline rgb(). The DOM is built with text nodes and
// textContent only: log text is never parsed as HTML.

import { BOLD, DIM, ITALIC, UNDERLINE, BLINK, INVERSE, HIDDEN, STRIKE, penKey } from "./term.js";

export { parseLine, plainText } from "./term.js";

const NAMES = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];
const FLAG_CLASSES = [
  [BOLD, "ansi-bold"], [DIM, "ansi-dim"], [ITALIC, "ansi-italic"], [UNDERLINE, "ansi-underline"],
  [BLINK, "ansi-blink"], [HIDDEN, "ansi-hidden"], [STRIKE, "ansi-strikethrough"],
];

/** The xterm palette: index 16-255 -> "rgb(...)" (0-15 are theme classes). */
function paletteRgb(index) {
  if (index >= 232) {
    const v = 8 + (index - 232) * 10;
    return `rgb(${v}, ${v}, ${v})`;
  }
  const i = index - 16;
  const level = (v) => (v === 0 ? 0 : 55 + v * 40);
  return `rgb(${level(Math.floor(i / 36))}, ${level(Math.floor(i / 6) % 6)}, ${level(i % 6)})`;
}

function colourStyle(value, kind, classes) {
  // -> an inline colour, or null after adding a theme class
  if (value === null) return null;
  if (typeof value === "string") return value;
  if (value < 16) {
    classes.push(`ansi-${kind}-${value >= 8 ? "bright-" : ""}${NAMES[value % 8]}`);
    return null;
  }
  return paletteRgb(value);
}

const styles = new Map(); // theme + pen key -> {cls, fg, bg, fgWanted}

function luminance([r, g, b]) {
  const f = (c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
  return 0.2126 * f(r / 255) + 0.7152 * f(g / 255) + 0.0722 * f(b / 255);
}

/** A 256/truecolour foreground on the theme's own background, mixed towards white (dark) or
 * black (light) until it is readable (contrast 4.5, as terminals' "minimum contrast" does). */
function readable(colour, light) {
  const rgb = colour.startsWith("#")
    ? [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16)) : colour.match(/\d+/g).map(Number);
  const bg = light ? 1 : luminance([1, 4, 9]);
  const ratio = (c) => { const l = luminance(c); return (Math.max(l, bg) + 0.05) / (Math.min(l, bg) + 0.05); };
  let c = rgb;
  for (let t = 0.1; ratio(c) < 4.5 && t <= 1; t += 0.1) {
    c = rgb.map((v) => Math.round(light ? v * (1 - t) : v + (255 - v) * t));
  }
  return c === rgb ? colour : `rgb(${c.join(", ")})`;
}

/** {cls, fg, bg} for a pen, or null for the default one. */
export function penStyle(pen) {
  let key = penKey(pen);
  if (key === null) return null;
  const light = document.documentElement.dataset.theme === "light";
  key = `${light ? "l" : "d"}${key}`;
  let style = styles.get(key);
  if (style) return style;
  const classes = [];
  let fg = pen.fg;
  let bg = pen.bg;
  if (pen.flags & INVERSE) {
    [fg, bg] = [bg, fg];
    if (fg === null) classes.push("ansi-fg-inverse");
    if (bg === null) classes.push("ansi-bg-inverse");
  }
  style = { cls: "", fg: colourStyle(fg, "fg", classes), bg: colourStyle(bg, "bg", classes) };
  style.fgWanted = style.fg;
  if (style.fg && bg === null) style.fg = readable(style.fg, light);
  for (const [flag, cls] of FLAG_CLASSES) if (pen.flags & flag) classes.push(cls);
  style.cls = classes.join(" ");
  if (styles.size > 4096) styles.clear();
  styles.set(key, style);
  return style;
}

function styledNode(text, pen) {
  const style = penStyle(pen);
  if (!style) return document.createTextNode(text);
  const span = document.createElement("span");
  if (style.cls) span.className = style.cls;
  if (style.fg) span.style.color = style.fg;
  if (style.fg !== style.fgWanted) span.dataset.fg = style.fgWanted; // what the log asked for
  if (style.bg) span.style.backgroundColor = style.bg;
  span.textContent = text;
  return span;
}

/** Match ranges [start, end) of `needle` (already lower-cased) in `plain`, case-insensitive. */
function matchRanges(plain, needle, caseSensitive) {
  if (!needle) return [];
  const hay = caseSensitive ? plain : plain.toLowerCase();
  if (hay.length !== plain.length) return []; // case mapping changed lengths: skip marking
  const ranges = [];
  let at = hay.indexOf(needle);
  while (at !== -1 && ranges.length < 200) {
    ranges.push([at, at + needle.length]);
    at = hay.indexOf(needle, at + needle.length);
  }
  return ranges;
}

// Web addresses in log text become links (opened in a new tab). Only http(s), built with the
// DOM (never parsed as HTML); trailing punctuation that usually ends a sentence is left out.
const URL_RE = /\bhttps?:\/\/[^\s<>"'`\x00-\x1f]+/g;
const URL_TRAILING = /[.,;:!?'")\]}>]+$/;

function linkRanges(plain) {
  if (!plain.includes("http")) return [];
  const ranges = [];
  for (const match of plain.matchAll(URL_RE)) {
    const url = match[0].replace(URL_TRAILING, "");
    if (url.length > 10) ranges.push([match.index, match.index + url.length, url]);
  }
  return ranges;
}

/** Cut runs at link boundaries; the pieces inside a link carry its `href` (a pen's own OSC 8
 * link wins over an address found in the text). */
function withLinks(runs, links) {
  if (!links.length) return runs.map((run) => (run.pen && run.pen.link ? { ...run, href: run.pen.link } : run));
  const out = [];
  let pos = 0;
  let l = 0;
  for (const run of runs) {
    const end = pos + run.text.length;
    let start = pos;
    while (start < end) {
      while (l < links.length && links[l][1] <= start) l++;
      const link = links[l];
      if (!link || link[0] >= end) {
        out.push({ text: run.text.slice(start - pos), pen: run.pen, href: run.pen && run.pen.link });
        start = end;
      } else if (link[0] > start) {
        out.push({ text: run.text.slice(start - pos, link[0] - pos), pen: run.pen, href: run.pen && run.pen.link });
        start = link[0];
      } else {
        const stop = Math.min(end, link[1]);
        out.push({ text: run.text.slice(start - pos, stop - pos), pen: run.pen, href: (run.pen && run.pen.link) || link[2] });
        start = stop;
      }
    }
    pos = end;
  }
  return out;
}

function pieceNode(text, run) {
  const node = styledNode(text, run.pen);
  if (!run.href) return node;
  const a = document.createElement("a");
  a.href = run.href;
  if (run.pen && run.href === run.pen.link) a.title = run.href; // the text may say otherwise
  a.target = "_blank";
  a.rel = "noopener noreferrer nofollow";
  a.className = "loglink";
  a.append(node);
  return a;
}

/**
 * Runs -> a DocumentFragment of text nodes and styled spans; web addresses as links, search
 * hits wrapped in <mark>. `search` is {needle, caseSensitive} or null.
 */
export function renderRuns(runs, search) {
  const fragment = document.createDocumentFragment();
  const plain = runs.map((run) => run.text).join("");
  runs = withLinks(runs, linkRanges(plain));
  const ranges = search ? matchRanges(plain, search.needle, search.caseSensitive) : [];
  if (ranges.length === 0) {
    for (const run of runs) if (run.text) fragment.append(pieceNode(run.text, run));
    return fragment;
  }
  let pos = 0;
  let r = 0;
  for (const run of runs) {
    let start = pos;
    const end = pos + run.text.length;
    while (start < end) {
      while (r < ranges.length && ranges[r][1] <= start) r++;
      const range = ranges[r];
      if (!range || range[0] >= end) {
        fragment.append(pieceNode(run.text.slice(start - pos), run));
        start = end;
      } else if (range[0] > start) {
        fragment.append(pieceNode(run.text.slice(start - pos, range[0] - pos), run));
        start = range[0];
      } else {
        const stop = Math.min(end, range[1]);
        const mark = document.createElement("mark");
        mark.append(pieceNode(run.text.slice(start - pos, stop - pos), run));
        fragment.append(mark);
        start = stop;
      }
    }
    pos = end;
  }
  return fragment;
}
