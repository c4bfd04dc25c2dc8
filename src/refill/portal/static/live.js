// The live part of a portal page: the element with id "live" is fetched again from its
// data-live-url every few seconds and swapped in, then afterSwap runs (to redraw a chart).
// Not while the page is hidden, nor while a control of a form inside it has the focus (the
// owner is typing in a filter or about to press a button: a swap would take it away).
window.keepLive = function (afterSwap) {
  "use strict";
  var REFRESH_MS = 4000;
  var live = document.getElementById("live");
  if (!live) { return; }

  function refresh() {
    if (document.hidden) { return; }
    if (live.contains(document.activeElement) && document.activeElement.form) { return; }
    fetch(live.getAttribute("data-live-url"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.redirected || !response.ok) { return null; }
        return response.text();
      })
      .then(function (html) {
        if (html !== null && html !== undefined) {
          live.innerHTML = html;
          if (afterSwap) { afterSwap(); }
        }
      })
      .catch(function () { /* offline for a moment: try again at the next tick */ });
  }

  window.setInterval(refresh, REFRESH_MS);
};
