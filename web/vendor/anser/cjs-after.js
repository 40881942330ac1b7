// Publishes anser.js as window.Anser and removes the temporary `module`.
window.Anser = window.module.exports;
delete window.module;
