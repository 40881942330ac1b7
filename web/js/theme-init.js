// The colour theme, set before the page paints (a classic script in <head>, not a module):
// the reader's choice if made (logstream.theme: "light" or "dark"), else the system's
// (prefers-color-scheme, followed live). A #theme-toggle button cycles auto → light → dark.
(function () {
  var KEY = "logstream.theme";
  var media = window.matchMedia("(prefers-color-scheme: light)");
  function choice() {
    var stored = null;
    try { stored = localStorage.getItem(KEY); } catch (e) { stored = null; }
    return stored === "light" || stored === "dark" ? stored : "auto";
  }
  function apply() {
    var c = choice();
    var theme = c === "auto" ? (media.matches ? "light" : "dark") : c;
    document.documentElement.dataset.theme = theme;
    document.documentElement.dataset.themeChoice = c;
    var button = document.getElementById("theme-toggle");
    if (button) {
      var label = "Theme: " + (c === "auto" ? "automatic (" + theme + ")" : c);
      button.setAttribute("aria-label", label + ". Change theme");
      button.title = label;
      button.dataset.choice = c;
    }
  }
  apply();
  media.addEventListener("change", apply);
  document.addEventListener("DOMContentLoaded", function () {
    apply();
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    button.addEventListener("click", function () {
      var next = { auto: "light", light: "dark", dark: "auto" }[choice()];
      try {
        if (next === "auto") localStorage.removeItem(KEY); else localStorage.setItem(KEY, next);
      } catch (e) { /* private mode: this page only */ }
      apply();
    });
  });
})();
