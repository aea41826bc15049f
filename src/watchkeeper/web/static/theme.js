// Applies the saved theme before the page paints (a file, because the CSP forbids inline
// script). "auto" follows the system's prefers-color-scheme.
(function () {
  "use strict";
  var saved = null;
  try { saved = localStorage.getItem("wk-theme"); } catch (e) { saved = null; }
  if (saved === "light" || saved === "dark") {
    document.documentElement.setAttribute("data-theme", saved);
  }
})();
