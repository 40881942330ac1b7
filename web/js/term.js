// One stored log line -> what a terminal shows on that row at the end of it, as styled runs.
//
// A small terminal for one row: a cursor and a row of cells. Printable characters are written
// at the cursor (wide characters take two cells, combining marks join the cell before); CR,
// backspace, TAB, `ESC[nG`, `ESC[nC`/`ESC[nD`, `ESC[n``, `ESC[na` move the cursor; `ESC[K`
// (0/1/2), `ESC[J` (0/1/2, within this row), `ESC[nX`, `ESC[nP`, `ESC[n@` erase, delete and
// insert; `ESC 7`/`ESC 8` save and restore the cursor and pen. SGR (16, 256 and truecolour
// colours, bold, dim, italic, underline, blink, inverse, hidden, strike) sets the pen, and OSC 8
// hyperlinks set the pen's link (kept only for http and https targets). Every other sequence
// is dropped. The pen at the end of a line is where the next line starts (`parseLine(raw,
// start)`), so a colour set on one line carries on like in a terminal. Moving the cursor to
// other rows (`ESC[A`, `ESC[H`, ...) is out of scope: each stored line is one row.

export const DEFAULT_PEN = Object.freeze({ fg: null, bg: null, flags: 0, link: null });

export const BOLD = 1, DIM = 2, ITALIC = 4, UNDERLINE = 8, BLINK = 16, INVERSE = 32, HIDDEN = 64,
  STRIKE = 128;

const MAX_MOVE = 2000; // columns: an explicit cursor move goes no further (`ESC[99999G`)

/** A pen's identity as a string (null for the default pen). */
export function penKey(pen) {
  if (!pen || (pen.fg === null && pen.bg === null && pen.flags === 0 && pen.link === null)) {
    return null;
  }
  return `${pen.fg}|${pen.bg}|${pen.flags}|${pen.link}`;
}

function colour(params, i) {
  // 38;5;n / 38;2;r;g;b (semicolons) -> [value, params consumed after the 38/48]
  const mode = params[i + 1];
  if (mode === 5 && i + 2 < params.length) return [params[i + 2] & 255, 2];
  if (mode === 2 && i + 4 < params.length) {
    const [r, g, b] = [params[i + 2], params[i + 3], params[i + 4]].map((v) => Math.min(255, v));
    return [`#${[r, g, b].map((v) => v.toString(16).padStart(2, "0")).join("")}`, 4];
  }
  return [undefined, params.length];
}

function subColour(parts) {
  // ITU T.416 colon forms: 38:5:n, 38:2::r:g:b or 38:2:r:g:b
  const nums = parts.map((p) => (p === "" ? 0 : Number(p)));
  if (nums[1] === 5) return nums[2] & 255;
  if (nums[1] === 2) {
    const rgb = parts.length >= 6 ? nums.slice(3, 6) : nums.slice(2, 5);
    return `#${rgb.map((v) => Math.min(255, v || 0).toString(16).padStart(2, "0")).join("")}`;
  }
  return undefined;
}

/** The pen after the SGR parameters `text` (the part between `ESC[` and `m`). */
export function applySgr(pen, text) {
  let { fg, bg, flags } = pen;
  const parts = text === "" ? ["0"] : text.split(";");
  const params = parts.map((p) => (p.indexOf(":") === -1 ? (p === "" ? 0 : Number(p)) : p));
  for (let i = 0; i < params.length; i++) {
    const p = params[i];
    if (typeof p === "string") {
      const sub = p.split(":");
      const head = Number(sub[0]);
      if (head === 38 || head === 48) {
        const value = subColour(sub);
        if (value !== undefined) { if (head === 38) fg = value; else bg = value; }
      } else if (head === 4) {
        flags = sub[1] === "0" ? flags & ~UNDERLINE : flags | UNDERLINE;
      }
      continue;
    }
    if (p === 0) { fg = null; bg = null; flags = 0; }
    else if (p === 1) flags |= BOLD;
    else if (p === 2) flags |= DIM;
    else if (p === 3) flags |= ITALIC;
    else if (p === 4 || p === 21) flags |= UNDERLINE;
    else if (p === 5 || p === 6) flags |= BLINK;
    else if (p === 7) flags |= INVERSE;
    else if (p === 8) flags |= HIDDEN;
    else if (p === 9) flags |= STRIKE;
    else if (p === 22) flags &= ~(BOLD | DIM);
    else if (p === 23) flags &= ~ITALIC;
    else if (p === 24) flags &= ~UNDERLINE;
    else if (p === 25) flags &= ~BLINK;
    else if (p === 27) flags &= ~INVERSE;
    else if (p === 28) flags &= ~HIDDEN;
    else if (p === 29) flags &= ~STRIKE;
    else if (p >= 30 && p <= 37) fg = p - 30;
    else if (p === 39) fg = null;
    else if (p >= 40 && p <= 47) bg = p - 40;
    else if (p === 49) bg = null;
    else if (p >= 90 && p <= 97) fg = p - 90 + 8;
    else if (p >= 100 && p <= 107) bg = p - 100 + 8;
    else if (p === 38 || p === 48) {
      const [value, used] = colour(params, i);
      if (value !== undefined) { if (p === 38) fg = value; else bg = value; }
      i += used;
    }
  }
  if (fg === pen.fg && bg === pen.bg && flags === pen.flags) return pen;
  return { fg, bg, flags, link: pen.link };
}

function withLink(pen, osc) {
  // OSC 8 ; params ; URI -- an empty URI ends the link; only http(s) targets are kept
  const semi = osc.indexOf(";", 2);
  if (semi === -1) return pen;
  const uri = osc.slice(semi + 1);
  const link = /^https?:\/\/[^\s\x00-\x1f\x7f]+$/i.test(uri) ? uri : null;
  if (link === pen.link) return pen;
  return { ...pen, link };
}

/** Columns a code point takes: 0 (combining), 2 (wide) or 1. */
export function charWidth(cp) {
  if (cp < 0x300) return 1;
  if ((cp >= 0x300 && cp <= 0x36f) || (cp >= 0x483 && cp <= 0x489) || (cp >= 0x591 && cp <= 0x5bd)
      || (cp >= 0x610 && cp <= 0x61a) || (cp >= 0x64b && cp <= 0x65f) || (cp >= 0x1ab0 && cp <= 0x1aff)
      || (cp >= 0x1dc0 && cp <= 0x1dff) || (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x20d0 && cp <= 0x20ff)
      || (cp >= 0xfe00 && cp <= 0xfe0f) || (cp >= 0xfe20 && cp <= 0xfe2f)) return 0;
  if (cp < 0x1100) return 1;
  if ((cp <= 0x115f) || cp === 0x231a || cp === 0x231b || cp === 0x2329 || cp === 0x232a
      || (cp >= 0x23e9 && cp <= 0x23ec) || cp === 0x23f0 || cp === 0x23f3 || cp === 0x25fd
      || cp === 0x25fe || cp === 0x2614 || cp === 0x2615 || (cp >= 0x2648 && cp <= 0x2653)
      || cp === 0x267f || cp === 0x2693 || cp === 0x26a1 || cp === 0x26aa || cp === 0x26ab
      || cp === 0x26bd || cp === 0x26be || cp === 0x26c4 || cp === 0x26c5 || cp === 0x26ce
      || cp === 0x26d4 || cp === 0x26ea || cp === 0x26f2 || cp === 0x26f3 || cp === 0x26f5
      || cp === 0x26fa || cp === 0x26fd || cp === 0x2705 || cp === 0x270a || cp === 0x270b
      || cp === 0x2728 || cp === 0x274c || cp === 0x274e || (cp >= 0x2753 && cp <= 0x2755)
      || cp === 0x2757 || (cp >= 0x2795 && cp <= 0x2797) || cp === 0x27b0 || cp === 0x27bf
      || cp === 0x2b1b || cp === 0x2b1c || cp === 0x2b50 || cp === 0x2b55
      || (cp >= 0x2e80 && cp <= 0x303e) || (cp >= 0x3041 && cp <= 0x33ff)
      || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x4e00 && cp <= 0x9fff)
      || (cp >= 0xa000 && cp <= 0xa4cf) || (cp >= 0xa960 && cp <= 0xa97f)
      || (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff)
      || (cp >= 0xfe10 && cp <= 0xfe19) || (cp >= 0xfe30 && cp <= 0xfe6f)
      || (cp >= 0xff00 && cp <= 0xff60) || (cp >= 0xffe0 && cp <= 0xffe6)
      || (cp >= 0x1f300 && cp <= 0x1f64f) || (cp >= 0x1f680 && cp <= 0x1f6ff)
      || (cp >= 0x1f900 && cp <= 0x1f9ff) || (cp >= 0x1fa70 && cp <= 0x1faff)
      || (cp >= 0x20000 && cp <= 0x3fffd)) return 2;
  return 1;
}

// CSI (params, intermediates, final) | OSC (to BEL/ST) | DCS/SOS/PM/APC | other two-byte ESC
const SEQUENCE = /\x1b(?:\[([\x30-\x3f]*)([\x20-\x2f]*)([\x40-\x7e])?|\]([^\x07\x1b]*)(?:\x07|\x1b\\)?|[PX^_][^\x1b]*(?:\x1b\\)?|[\x20-\x2f]*([\x30-\x7e])?)/y;
const CONTROL = /[\x00-\x1f\x7f]/;

/** One row being written: cells of [char, pen, span] (span 0: the right half of a wide char
 * or a TAB's gap; those show nothing). */
class Row {
  constructor() {
    this.ch = [];
    this.pen = [];
    this.span = [];
    this.cursor = 0;
  }

  /** Cells a..b-1 are about to change: a wide char or TAB cut in two becomes blanks. */
  _split(a, b) {
    const { ch, span } = this;
    for (let p = a; p < b && p < ch.length; p++) {
      if (span[p] === 0) {
        let lead = p;
        while (lead > 0 && span[lead] === 0) lead--;
        this._blank(lead, lead + span[lead]);
      } else if (span[p] > 1) {
        this._blank(p, p + span[p]);
      }
    }
    if (b < ch.length && span[b] === 0) this._split(b, b + 1);
  }

  _blank(a, b) {
    for (let p = a; p < b && p < this.ch.length; p++) {
      this.ch[p] = " "; this.pen[p] = null; this.span[p] = 1;
    }
  }

  _pad(to) {
    while (this.ch.length < to) { this.ch.push(" "); this.pen.push(null); this.span.push(1); }
  }

  write(text, width, pen) {
    const at = this.cursor;
    if (width === 0) {
      let lead = Math.min(at, this.ch.length) - 1;
      while (lead > 0 && this.span[lead] === 0) lead--;
      if (lead >= 0) this.ch[lead] += text;
      return;
    }
    this._split(at, at + width);
    this._pad(at);
    this.ch[at] = text; this.pen[at] = pen; this.span[at] = width;
    for (let k = 1; k < width; k++) {
      this.ch[at + k] = ""; this.pen[at + k] = pen; this.span[at + k] = 0;
    }
    this.cursor = at + width;
  }

  tab() {
    const stop = (Math.floor(this.cursor / 8) + 1) * 8;
    if (this.cursor >= this.ch.length) {
      this._pad(this.cursor);
      this.ch.push("\t"); this.pen.push(null); this.span.push(stop - this.cursor);
      while (this.ch.length < stop) { this.ch.push(""); this.pen.push(null); this.span.push(0); }
    }
    this.cursor = stop;
  }

  eraseRight() {
    const at = this.cursor;
    if (at >= this.ch.length) return;
    this._split(at, at + 1);
    this.ch.length = this.pen.length = this.span.length = at;
  }

  eraseLeft() {
    const to = Math.min(this.cursor + 1, this.ch.length);
    this._split(0, to);
    this._blank(0, to);
  }

  eraseChars(n) {
    const to = Math.min(this.cursor + n, this.ch.length);
    this._split(this.cursor, to);
    this._blank(this.cursor, to);
  }

  deleteChars(n) {
    if (this.cursor >= this.ch.length) return;
    this._split(this.cursor, this.cursor + n);
    for (const a of [this.ch, this.pen, this.span]) a.splice(this.cursor, n);
  }

  insertChars(n) {
    if (this.cursor >= this.ch.length) return;
    this._split(this.cursor, this.cursor + 1);
    this.ch.splice(this.cursor, 0, ...Array(n).fill(" "));
    this.pen.splice(this.cursor, 0, ...Array(n).fill(null));
    this.span.splice(this.cursor, 0, ...Array(n).fill(1));
  }

  move(to) {
    this.cursor = Math.max(0, Math.min(to, Math.max(this.ch.length, MAX_MOVE)));
  }
}

function isRed(pen) {
  if (!pen) return false;
  const fg = pen.flags & INVERSE ? pen.bg : pen.fg;
  return fg === 1 || fg === 9 || fg === 160 || fg === 196;
}

function csi(row, pen, params, final, saved) {
  const n = Math.max(1, Number(params.split(";")[0]) || 0);
  const z = params === "" ? 0 : Number(params.split(";")[0]);
  switch (final) {
    case "m": return applySgr(pen, params);
    case "K": case "J":
      if (z === 0) row.eraseRight();
      else if (z === 1) row.eraseLeft();
      else if (z === 2 || z === 3) { row._blank(0, row.ch.length); row.ch.length = row.pen.length = row.span.length = 0; }
      return pen;
    case "G": case "`": row.move(n - 1); return pen;
    case "C": case "a": row.move(row.cursor + n); return pen;
    case "D": row.move(row.cursor - n); return pen;
    case "X": row.eraseChars(n); return pen;
    case "P": row.deleteChars(n); return pen;
    case "@": row.insertChars(Math.min(n, MAX_MOVE)); return pen;
    case "s": saved.cursor = row.cursor; return pen;
    case "u": if (saved.cursor !== undefined) row.move(saved.cursor); return pen;
    default: return pen; // other rows, modes, reports: out of scope
  }
}

/**
 * The row a terminal shows at the end of `raw`, starting with pen `start`:
 * {runs: [{text, pen}], end: pen at the end, red: a visible character is red, width: columns}.
 */
export function parseLine(raw, start = DEFAULT_PEN) {
  if (!CONTROL.test(raw)) {
    return { runs: raw ? [{ text: raw, pen: start }] : [], end: start, red: isRed(start) && /\S/.test(raw), width: raw.length };
  }
  const row = new Row();
  let pen = start;
  const saved = {};
  for (let i = 0; i < raw.length;) {
    const c = raw.charCodeAt(i);
    if (c === 0x1b) {
      SEQUENCE.lastIndex = i;
      const m = SEQUENCE.exec(raw);
      if (!m) { i++; continue; }
      i = SEQUENCE.lastIndex;
      if (m[0][1] === "[") {
        if (m[3] === undefined) break; // cut off at the end of the line
        if (m[2] === "" && /^[0-9;:]*$/.test(m[1])) pen = csi(row, pen, m[1], m[3], saved);
      } else if (m[4] !== undefined) {
        if (m[4].startsWith("8;")) pen = withLink(pen, m[4]);
      } else if (m[5] === "7") {
        saved.cursor = row.cursor; saved.pen = pen;
      } else if (m[5] === "8" && m[0].length === 2) {
        if (saved.cursor !== undefined) { row.move(saved.cursor); pen = saved.pen; }
      }
      continue;
    }
    if (c === 0x0d) row.cursor = 0;
    else if (c === 0x08) row.cursor = Math.max(0, row.cursor - 1);
    else if (c === 0x09) row.tab();
    else if (c >= 0x20 && c !== 0x7f) {
      const cp = raw.codePointAt(i);
      const text = cp > 0xffff ? raw.slice(i, i + 2) : raw[i];
      row.write(text, charWidth(cp), pen);
      i += text.length;
      continue;
    }
    i++;
  }
  const runs = [];
  let red = false;
  let last = null;
  let lastKey;
  for (let p = 0; p < row.ch.length; p++) {
    const ch = row.ch[p];
    if (ch === "") continue;
    const cellPen = row.pen[p] || DEFAULT_PEN;
    if (!red && isRed(cellPen) && ch !== " " && ch !== "\t") red = true;
    const key = penKey(cellPen);
    if (last && key === lastKey) last.text += ch;
    else runs.push((last = { text: ch, pen: cellPen })), (lastKey = key);
  }
  return { runs, end: pen, red, width: row.ch.length };
}

/** The pen at the end of `raw` (cheaper than parseLine when only the state is needed). */
export function endPen(raw, start = DEFAULT_PEN) {
  if (raw.indexOf("\x1b") === -1) return start;
  if (raw.indexOf("\x1b8") !== -1) return parseLine(raw, start).end;
  let pen = start;
  for (let i = raw.indexOf("\x1b"); i !== -1; i = raw.indexOf("\x1b", i)) {
    SEQUENCE.lastIndex = i;
    const m = SEQUENCE.exec(raw);
    if (!m) { i++; continue; }
    i = SEQUENCE.lastIndex;
    if (m[3] === "m" && m[2] === "" && /^[0-9;:]*$/.test(m[1])) pen = applySgr(pen, m[1]);
    else if (m[4] !== undefined && m[4].startsWith("8;")) pen = withLink(pen, m[4]);
  }
  return pen;
}

/** The visible text of a line (no escapes, cursor movement applied). */
export function plainText(raw) {
  if (!CONTROL.test(raw)) return raw;
  return parseLine(raw).runs.map((run) => run.text).join("");
}
