// The live parts of a portal page: every element with a data-live-url is fetched again
// from it every few seconds and swapped in, then afterSwap(part) runs (to redraw a chart
// the part holds).
// Not while the page is hidden, nor while a control of a form inside the part has the
// focus (the owner is typing in a filter or about to press a button: a swap would take it
// away). A <details> the owner opened or closed stays so across swaps; one left alone
// follows the page (which opens the checklist by itself when something stops reloads).
window.keepLive = function (afterSwap) {
  "use strict";
  var REFRESH_MS = 4000;
  var parts = Array.prototype.slice.call(document.querySelectorAll("[data-live-url]"));
  if (parts.length === 0) { return; }
  var chosen = {};  // details id -> open, as the owner left it

  document.addEventListener("click", function (event) {
    var summary = event.target.closest ? event.target.closest("summary") : null;
    var details = summary ? summary.parentElement : null;
    if (details && details.id) { chosen[details.id] = !details.open; }  // before it toggles
  });

  function busy(part) {
    var focused = document.activeElement;
    return part.contains(focused) && focused.form;
  }

  function swap(part, html) {
    var focused = document.activeElement;
    var summaryOf = part.contains(focused) && focused.tagName === "SUMMARY" ? focused.parentElement.id : null;
    part.innerHTML = html;
    Object.keys(chosen).forEach(function (id) {
      var details = part.querySelector("details#" + id);
      if (details) { details.open = chosen[id]; }
    });
    // A keyboard user on a summary keeps the focus there.
    var summary = summaryOf ? part.querySelector("details#" + summaryOf + " > summary") : null;
    if (summary) { summary.focus(); }
  }

  function refresh() {
    if (document.hidden) { return; }
    parts.forEach(function (part) {
      if (busy(part)) { return; }
      fetch(part.getAttribute("data-live-url"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (response.redirected || !response.ok) { return null; }
          return response.text();
        })
        .then(function (html) {
          if (html !== null && html !== undefined) {
            swap(part, html);
            if (afterSwap) { afterSwap(part); }
          }
        })
        .catch(function () { /* offline for a moment: try again at the next tick */ });
    });
  }

  window.setInterval(refresh, REFRESH_MS);
};
