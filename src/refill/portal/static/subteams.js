// Progressive enhancement for the Subteams pages: every form works without this file.
// On the list, it keeps the table fresh (spend, holds, status) with live.js. On a
// subteam's page, it draws the subteam's usage (spend per hour or per day, in the agency's
// time zone) with the vendored Chart.js, and lets the owner pick the range.
window.keepLive();

(function () {
  "use strict";
  var canvas = document.getElementById("usage-chart");
  var node = document.getElementById("usage-data");
  var summary = document.getElementById("usage-summary");
  var group = document.querySelector(".range");
  if (!canvas || !node || typeof Chart === "undefined") { return; }
  var data = JSON.parse(node.textContent);
  var range = node.getAttribute("data-range") || "30d";
  var chart = null;

  function money(value) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: data.currency }).format(value);
    } catch (e) { return value + " " + data.currency; }
  }

  function calls(n) { return n + (n === 1 ? " usage event" : " usage events"); }

  function draw() {
    var shown = data.ranges[range];
    var points = shown.points;
    summary.textContent = shown.summary;
    (group ? group.querySelectorAll(".chip") : []).forEach(function (chip) {
      chip.setAttribute("aria-pressed", chip.getAttribute("data-range") === range ? "true" : "false");
    });
    var dataset = {
      label: "Spent", data: points.map(function (p) { return p.y; }),
      backgroundColor: "rgba(36,84,214,.75)", hoverBackgroundColor: "#2454d6",
      borderRadius: 3, maxBarThickness: 28
    };
    if (chart) {
      chart.data.labels = points.map(function (p) { return p.label; });
      chart.data.datasets = [dataset];
      chart.update("none");
      return;
    }
    chart = new Chart(canvas, {
      type: "bar",
      data: { labels: points.map(function (p) { return p.label; }), datasets: [dataset] },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        layout: { padding: { top: 8, right: 8 } },
        scales: {
          x: { grid: { display: false }, ticks: { autoSkip: true, maxTicksLimit: canvas.clientWidth < 480 ? 5 : 8, maxRotation: 0 } },
          y: { beginAtZero: true, grace: "10%", ticks: { maxTicksLimit: 6, callback: function (v) { return money(v); } } }
        },
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: {
            title: function (items) { return data.ranges[range].points[items[0].dataIndex].title; },
            label: function (item) {
              var p = data.ranges[range].points[item.dataIndex];
              return p.spent + ", " + calls(p.events);
            } } }
        }
      }
    });
  }

  if (group) {
    group.hidden = false;
    group.querySelectorAll(".chip").forEach(function (chip) {
      chip.addEventListener("click", function () { range = chip.getAttribute("data-range"); draw(); });
    });
  }
  draw();
}());
