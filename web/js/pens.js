// The pen (SGR colours and styles, OSC 8 link) each line starts with: the pen the line before
// ended with, as in a terminal, so a colour set on one line carries on to the next.
//
// Kept beside the lines in the LineStore's pages (page.pens[i]: the pen line i starts with),
// computed when a page arrives from the end of the page before it if that one is held (else
// from the default pen: the page before is not known), and passed on to the following pages
// held while the pen at the seam changes. Live lines extend the chain one at a time.

import { PAGE } from "./lines.js";
import { DEFAULT_PEN, endPen, penKey } from "./term.js";

export class PenChain {
  constructor(store) {
    this.store = store;
    this.generation = 0; // bumped when a held line's start pen changed
  }

  /** The pen line n starts with (the default pen when the line before is not known). */
  startPen(n) {
    const page = this.store.pages.get(Math.floor((n - 1) / PAGE));
    return (page && page.pens && page.pens[(n - 1) % PAGE]) || DEFAULT_PEN;
  }

  /** The pen line n ends with, or null when line n is not held. */
  _endOf(n) {
    const text = this.store.text(n);
    return text === undefined ? null : endPen(text, this.startPen(n));
  }

  /** Page `index` arrived or changed: compute its pens and pass the change on. */
  pageChanged(index) {
    for (let i = index; ; i++) {
      const page = this.store.pages.get(i);
      if (!page) return;
      const first = i * PAGE + 1;
      let pen = first === 1 ? DEFAULT_PEN : this._endOf(first - 1) || DEFAULT_PEN;
      const before = page.pens ? penKey(page.pens[0]) : undefined;
      if (i > index && page.pens && before === penKey(pen)) return; // nothing changes onwards
      const pens = page.pens || (page.pens = new Array(PAGE));
      let changed = false;
      for (let k = 0; k < PAGE; k++) {
        if (penKey(pens[k]) !== penKey(pen)) changed = true;
        pens[k] = pen;
        const text = page.text[k];
        pen = text === undefined ? DEFAULT_PEN : endPen(text, pen);
      }
      if (changed) this.generation++;
    }
  }

  /** Live line n arrived (lines arrive in order): its start pen from the line before. */
  lineAdded(n) {
    const page = this.store.pages.get(Math.floor((n - 1) / PAGE));
    if (!page) return;
    const pens = page.pens || (page.pens = new Array(PAGE));
    const pen = n === 1 ? DEFAULT_PEN : this._endOf(n - 1) || DEFAULT_PEN;
    pens[(n - 1) % PAGE] = pen;
  }
}
