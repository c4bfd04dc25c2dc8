// Progressive enhancement for the billing page: every form works without this file.
// It keeps the live part of the page (wallet, status, history) fresh, draws the balance
// chart with the vendored Chart.js, and, in Stripe mode, collects a card with Stripe.js.
(function () {
  "use strict";
  var REFRESH_MS = 4000;
  var live = document.getElementById("live");
  var canvas = document.getElementById("balance-chart");
  var chart = null;

  function chartData() {
    var node = document.getElementById("chart-data");
    return node ? JSON.parse(node.textContent) : null;
  }

  function datasets(data) {
    var first = data.points.length ? data.points[0].t : 0;
    var last = data.points.length ? data.points[data.points.length - 1].t : 0;
    var sets = [{
      label: "Balance (" + data.currency + ")", data: data.points.map(function (p) { return { x: p.t, y: p.y }; }),
      stepped: "before", borderColor: "#2454d6", backgroundColor: "rgba(36,84,214,.08)", fill: true, pointRadius: 0
    }];
    if (data.threshold !== null) {
      sets.push({ label: "Minimum threshold", data: [{ x: first, y: data.threshold }, { x: last, y: data.threshold }],
        borderColor: "#a15c07", borderDash: [6, 4], pointRadius: 0, fill: false });
    }
    var balanceAt = function (t) {
      var y = 0;
      data.points.forEach(function (p) { if (p.t <= t) { y = p.y; } });
      return y;
    };
    sets.push({ label: "Reloads", type: "scatter", showLine: false, pointRadius: 5,
      data: data.reloads.map(function (r) { return { x: r.t, y: r.y === null ? balanceAt(r.t) : r.y, amount: r.amount, status: r.status }; }),
      pointBackgroundColor: data.reloads.map(function (r) { return r.status === "succeeded" ? "#17803d" : "#b42318"; }) });
    return sets;
  }

  function day(ms) { return new Date(ms).toLocaleDateString(undefined, { month: "short", day: "numeric" }); }

  function drawChart() {
    var data = chartData();
    if (!canvas || !data || typeof Chart === "undefined") { return; }
    if (chart) { chart.data.datasets = datasets(data); chart.update("none"); return; }
    chart = new Chart(canvas, {
      type: "line", data: { datasets: datasets(data) },
      options: {
        animation: false, parsing: true, responsive: true,
        scales: {
          x: { type: "linear", min: data.points[0].t, max: data.points[data.points.length - 1].t,
               ticks: { callback: day, maxTicksLimit: 8 } },
          y: { beginAtZero: true } },
        plugins: { tooltip: { callbacks: {
          title: function (items) { return new Date(items[0].raw.x).toLocaleString(); },
          label: function (item) {
            return item.raw.amount ? "Reload " + item.raw.amount + " (" + item.raw.status + ")" : item.dataset.label + ": " + item.raw.y;
          } } } }
      }
    });
  }

  function refresh() {
    if (!live || document.hidden) { return; }
    fetch(live.getAttribute("data-live-url"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.redirected || !response.ok) { return null; }
        return response.text();
      })
      .then(function (html) {
        if (html !== null && html !== undefined) { live.innerHTML = html; drawChart(); }
      })
      .catch(function () { /* offline for a moment: try again at the next tick */ });
  }

  function stripeCard() {
    var box = document.getElementById("stripe-card");
    if (!box || typeof Stripe === "undefined") { return; }
    var errors = document.getElementById("stripe-error");
    document.getElementById("stripe-add").addEventListener("click", function () {
      fetch("/portal/team/billing/card-setup", { method: "POST", credentials: "same-origin",
        headers: { "X-CSRF-Token": box.getAttribute("data-csrf") } })
        .then(function (r) {
          var json = (r.headers.get("Content-Type") || "").indexOf("json") >= 0;
          return json ? r.json() : { error: "Reload the page and try again." };
        })
        .then(function (setup) {
          if (setup.error) { errors.textContent = setup.error; return; }
          var stripe = Stripe(setup.publishable_key);
          var elements = stripe.elements();
          var card = elements.create("card");
          var mount = document.getElementById("stripe-element");
          mount.hidden = false;
          card.mount(mount);
          var save = document.createElement("button");
          save.type = "button"; save.textContent = "Save card";
          mount.after(save);
          save.addEventListener("click", function () {
            stripe.confirmCardSetup(setup.client_secret, { payment_method: { card: card } }).then(function (result) {
              if (result.error) { errors.textContent = result.error.message; return; }
              document.getElementById("stripe-token").value = result.setupIntent.payment_method;
              document.getElementById("stripe-save").submit();
            });
          });
        });
    });
  }

  drawChart();
  stripeCard();
  if (live) { window.setInterval(refresh, REFRESH_MS); }
}());
