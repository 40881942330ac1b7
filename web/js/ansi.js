// One stored log line -> what a terminal would show at the end of it, as styled runs -> DOM.
//
// SGR (colours, bold, italic, underline, ...) is parsed by the vendored `anser` library
// (window.Anser). Before it sees the text, everything anser does not understand is removed
// (OSC titles and hyperlinks, cursor movement, charset switches, stray control characters), so
// no escape sequence ever shows as garbage, and erase-in-line (`ESC[K`) is kept as a marker.
// Carriage returns then get terminal semantics: the cursor goes back to column 0 and later text
// overwrites earlier text (`50%\r100%` shows `100%`; GitLab's `section_start:...\r\e[0KTitle`
// shows `Title`). The DOM is built with textContent only: log text is never parsed as HTML.

const ERASE_RIGHT = "\x01"; // ESC[K / ESC[0K: erase from the cursor to the end of the line
const ERASE_LEFT = "\x02"; // ESC[1K: erase from the start of the line to the cursor
const ERASE_ALL = "\x03"; // ESC[2K: erase the whole line (the cursor stays)

// One alternation per kind of sequence; the callback decides what survives.
const ESCAPES = new RegExp(
  [
    "\\x1b\\[([\\x30-\\x3f]*)([\\x20-\\x2f]*)([\\x40-\\x7e])", // CSI: SGR, erase, cursor, modes
    "\\x1b\\[[\\x30-\\x3f]*[\\x20-\\x2f]*$", // a CSI cut off at the end of the line
    "\\x1b\\][^\\x07\\x1b]*(?:\\x07|\\x1b\\\\)?", // OSC: window title, hyperlink (text stays)
    "\\x1b[PX^_][^\\x1b]*(?:\\x1b\\\\)?", // DCS, SOS, PM, APC strings
    "\\x1b[\\x20-\\x2f]*[\\x30-\\x7e]?", // two-character escapes: charsets, keypad modes, ...
    "[\\x00-\\x08\\x0a-\\x0c\\x0e-\\x1a\\x1c-\\x1f\\x7f]", // other C0 controls (TAB, CR kept)
  ].join("|"),
  "g",
);

function normaliseSgr(params) {
  // ITU T.416 colon forms (38:2::r:g:b, 38:5:n, 4:3) into the semicolon forms anser reads.
  if (params.indexOf(":") === -1) return params;
  return params
    .split(";")
    .map((part) => {
      if (part.indexOf(":") === -1) return part;
      const sub = part.split(":");
      if ((sub[0] === "38" || sub[0] === "48") && sub[1] === "2") {
        const rgb = sub.length >= 6 ? sub.slice(3, 6) : sub.slice(2, 5);
        return [sub[0], "2", ...rgb.map((v) => v || "0")].join(";");
      }
      if ((sub[0] === "38" || sub[0] === "48") && sub[1] === "5") return `${sub[0]};5;${sub[2] || 0}`;
      if (sub[0] === "4") return sub[1] === "0" ? "24" : "4";
      return "";
    })
    .join(";");
}

/** Keep only SGR sequences (for anser) and erase-in-line markers; drop every other control. */
export function sanitise(text) {
  return text.replace(ESCAPES, (match, params, inter, final) => {
    if (final === undefined) return "";
    if (inter !== "") return "";
    if (final === "m" && /^[0-9;:]*$/.test(params)) return `\x1b[${normaliseSgr(params)}m`;
    if (final === "K") {
      if (params === "" || params === "0") return ERASE_RIGHT;
      if (params === "1") return ERASE_LEFT;
      if (params === "2") return ERASE_ALL;
    }
    return "";
  });
}

// The 16 standard colours anser reports as RGB strings; they get theme classes instead.
const NAMED = {
  "0, 0, 0": "black", "187, 0, 0": "red", "0, 187, 0": "green", "187, 187, 0": "yellow",
  "0, 0, 187": "blue", "187, 0, 187": "magenta", "0, 187, 187": "cyan", "255,255,255": "white",
  "85, 85, 85": "bright-black", "255, 85, 85": "bright-red", "0, 255, 0": "bright-green",
  "255, 255, 85": "bright-yellow", "85, 85, 255": "bright-blue", "255, 85, 255": "bright-magenta",
  "85, 255, 255": "bright-cyan", "255, 255, 255": "bright-white",
};

function chunkStyle(chunk) {
  // -> {cls: "ansi-fg-red ansi-bold", fg: "rgb(...)", bg: "rgb(...)"} or null for plain text
  if (!chunk.fg && !chunk.bg && (!chunk.decorations || chunk.decorations.length === 0)) return null;
  const classes = [];
  const style = { cls: "", fg: null, bg: null };
  if (chunk.fg) {
    if (NAMED[chunk.fg]) classes.push(`ansi-fg-${NAMED[chunk.fg]}`);
    else style.fg = `rgb(${chunk.fg})`;
  }
  if (chunk.bg) {
    if (NAMED[chunk.bg]) classes.push(`ansi-bg-${NAMED[chunk.bg]}`);
    else style.bg = `rgb(${chunk.bg})`;
  }
  for (const decoration of new Set(chunk.decorations || [])) classes.push(`ansi-${decoration}`);
  style.cls = classes.join(" ");
  return style;
}

/** The line as runs [{text, style}] of what a terminal shows at its end. */
export function parseLine(raw) {
  const clean = sanitise(raw);
  let chunks;
  if (clean.indexOf("\x1b") === -1) {
    chunks = [{ content: clean, style: null }];
  } else {
    chunks = new window.Anser()
      .ansiToJson(clean, { remove_empty: true, use_classes: false })
      .map((chunk) => ({ content: chunk.content, style: chunkStyle(chunk) }));
  }
  if (!/[\r\x01-\x03]/.test(clean)) {
    return chunks.map((c) => ({ text: c.content, style: c.style }));
  }
  // Terminal overwrite: one cell per character; CR moves the cursor back to column 0.
  const cells = [];
  let cursor = 0;
  for (const chunk of chunks) {
    for (const ch of chunk.content) {
      if (ch === "\r") cursor = 0;
      else if (ch === ERASE_RIGHT) cells.length = Math.min(cells.length, cursor);
      else if (ch === ERASE_LEFT) {
        for (let i = 0; i < Math.min(cursor + 1, cells.length); i++) cells[i] = [" ", null];
      } else if (ch === ERASE_ALL) cells.length = 0;
      else {
        while (cells.length < cursor) cells.push([" ", null]);
        cells[cursor++] = [ch, chunk.style];
      }
    }
  }
  const runs = [];
  for (const [ch, style] of cells) {
    const last = runs[runs.length - 1];
    if (last && last.style === style) last.text += ch;
    else runs.push({ text: ch, style });
  }
  return runs;
}

/** The visible text of a line (no escapes, CR overwrite applied). */
export function plainText(raw) {
  if (raw.indexOf("\x1b") === -1 && !/[\r\x00-\x08\x0b-\x1f\x7f]/.test(raw)) return raw;
  return parseLine(raw).map((run) => run.text).join("");
}

function styledNode(text, style) {
  if (!style) return document.createTextNode(text);
  const span = document.createElement("span");
  if (style.cls) span.className = style.cls;
  if (style.fg) span.style.color = style.fg;
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

/** Cut runs at link boundaries; the pieces inside a link carry its `href`. */
function withLinks(runs, links) {
  if (!links.length) return runs;
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
        out.push({ text: run.text.slice(start - pos), style: run.style });
        start = end;
      } else if (link[0] > start) {
        out.push({ text: run.text.slice(start - pos, link[0] - pos), style: run.style });
        start = link[0];
      } else {
        const stop = Math.min(end, link[1]);
        out.push({ text: run.text.slice(start - pos, stop - pos), style: run.style, href: link[2] });
        start = stop;
      }
    }
    pos = end;
  }
  return out;
}

function pieceNode(text, run) {
  const node = styledNode(text, run.style);
  if (!run.href) return node;
  const a = document.createElement("a");
  a.href = run.href;
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
