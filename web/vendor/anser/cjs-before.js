// Gives the vendored CommonJS file anser.js a `module` to export into.
window.module = { exports: {} };
