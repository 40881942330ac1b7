// Keyboard in the log pane: the page does the scrolling itself (the browser's own would be
// undone by follow mode), and any move away from the end pauses following.
//   ArrowDown / j, ArrowUp / k    one row            PageDown / Space, PageUp / Shift+Space
//   Home / g                      the top             End / G     the end (follows again)
//   e                             the next error      [ / ]       collapse / expand all
// Section headers hold a real button (Tab reaches it; Enter or Space toggles).

/** actions: {by(dy px), page(sign), top(), bottom(), nextError(), collapseAll(), expandAll()} */
export function wireKeys(pane, actions, rowHeight) {
  pane.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target !== pane && event.target.closest("button, a, input")) {
      if (event.key === "Enter" || event.key === " ") return; // the control's own action
    }
    const key = event.key;
    let handled = true;
    if (key === "ArrowDown" || key === "j") actions.by(rowHeight);
    else if (key === "ArrowUp" || key === "k") actions.by(-rowHeight);
    else if (key === "PageDown" || (key === " " && !event.shiftKey)) actions.page(1);
    else if (key === "PageUp" || (key === " " && event.shiftKey)) actions.page(-1);
    else if (key === "Home" || key === "g") actions.top();
    else if (key === "End" || key === "G") actions.bottom();
    else if (key === "e") actions.nextError();
    else if (key === "[") actions.collapseAll();
    else if (key === "]") actions.expandAll();
    else handled = false;
    if (handled) event.preventDefault();
  });
}
