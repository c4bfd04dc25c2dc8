// The Auto Reload backtest: two balance lines (these settings, what happened), drawn
// from the JSON the page carries (no inline script: the CSP allows none).
(function () {
  "use strict";
  var node = document.getElementById("backtest-data");
  var canvas = document.getElementById("backtest-chart");
  if (!node || !canvas || typeof Chart === "undefined") { return; }
  var data = JSON.parse(node.textContent);
  function line(points) { return points.map(function (p) { return { x: p.t, y: p.y }; }); }
  var money = function (v) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: data.currency }).format(v);
    } catch (e) { return Number(v).toFixed(2) + " " + data.currency; }
  };
  // Days on the axis; hours and minutes too when the replay is two days or less (a young
  // wallet), or every tick would name the same day.
  var all = data.proposed.concat(data.as_was).map(function (p) { return p.t; });
  var short = all.length > 0 && Math.max.apply(null, all) - Math.min.apply(null, all) <= 2 * 24 * 3600 * 1000;
  var tick = function (v) {
    var at = new Date(v);
    var day = at.toLocaleDateString(undefined, { month: "short", day: "numeric" });
    return short ? [day, at.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })] : day;
  };
  new Chart(canvas, {
    type: "line",
    data: {
      datasets: [
        { label: "These settings", data: line(data.proposed), borderColor: "#2454d6", backgroundColor: "#2454d6", pointRadius: 0, borderWidth: 2, stepped: true },
        { label: "What happened", data: line(data.as_was), borderColor: "#8a93a6", backgroundColor: "#8a93a6", pointRadius: 0, borderWidth: 1.5, borderDash: [4, 3], stepped: true }
      ]
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { type: "linear", ticks: { maxTicksLimit: 6, callback: tick } },
        y: { beginAtZero: true, ticks: { callback: money } }
      },
      plugins: {
        legend: { position: "bottom" },
        tooltip: { callbacks: {
          title: function (items) { return new Date(items[0].parsed.x).toLocaleString(); },
          label: function (item) { return item.dataset.label + ": " + money(item.parsed.y); }
        } }
      }
    }
  });
}());
