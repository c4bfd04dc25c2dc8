// Progressive enhancement for the billing page: every form works without this file.
// With live.js it keeps the live part of the page (wallet, status, history) fresh; it
// draws the balance chart with the vendored Chart.js, and, in Stripe mode, collects a card
// with Stripe.js.
(function () {
  "use strict";
  var canvas = document.getElementById("balance-chart");
  var chart = null;

  var HOUR = 3600 * 1000;
  var RANGES = { "24h": 24 * HOUR, "7d": 7 * 24 * HOUR, "30d": 30 * 24 * HOUR };
  var range = null;  // chosen by the owner; until then, what the data covers

  function chartData() {
    var node = document.getElementById("chart-data");
    return node ? JSON.parse(node.textContent) : null;
  }

  function money(data, value) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: data.currency }).format(value);
    } catch (e) { return value + " " + data.currency; }
  }

  // The shortest range that shows the whole history, so a new wallet is not 30 days of zero.
  function defaultRange(data) {
    var covered = data.until - data.since;
    if (covered <= RANGES["24h"]) { return "24h"; }
    return covered <= RANGES["7d"] ? "7d" : "30d";
  }

  function windowOf(data) {
    var span = RANGES[range || defaultRange(data)];
    return { min: Math.max(data.since, data.until - span), max: data.until };
  }

  function datasets(data, win) {
    var points = data.points.filter(function (p) { return p.t >= win.min; });
    var sets = [{
      label: "Balance", data: points.map(function (p) { return { x: p.t, y: p.y }; }),
      stepped: "before", borderColor: "#2454d6", backgroundColor: "rgba(36,84,214,.08)", fill: true,
      pointRadius: 0, pointHitRadius: 6
    }];
    if (data.threshold !== null) {
      sets.push({ label: "Minimum threshold " + money(data, data.threshold),
        data: [{ x: win.min, y: data.threshold }, { x: win.max, y: data.threshold }],
        borderColor: "#a15c07", borderDash: [6, 4], pointRadius: 0, pointHitRadius: 0, fill: false });
    }
    var balanceAt = function (t) {
      var y = 0;
      data.points.forEach(function (p) { if (p.t <= t) { y = p.y; } });
      return y;
    };
    var marks = data.reloads.filter(function (r) { return r.t >= win.min; });
    sets.push({ label: "Reloads", type: "scatter", showLine: false, pointRadius: 5, pointHoverRadius: 7,
      data: marks.map(function (r) {
        return { x: r.t, y: r.y === null ? balanceAt(r.t) : r.y, amount: r.amount, status: r.status, trigger: r.trigger };
      }),
      pointBackgroundColor: marks.map(function (r) { return r.status === "succeeded" ? "#17803d" : "#b42318"; }) });
    return sets;
  }

  function tick(win) {
    var span = win.max - win.min;
    var style = span <= HOUR / 2 ? { hour: "2-digit", minute: "2-digit", second: "2-digit" }
      : span <= 2 * 24 * HOUR ? { hour: "2-digit", minute: "2-digit" } : null;
    return function (ms) {
      var d = new Date(ms);
      return style ? d.toLocaleTimeString(undefined, style)
                   : d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
    };
  }

  function tooltipLabel(data) {
    return function (item) {
      var raw = item.raw;
      if (raw.amount) {
        var what = raw.trigger === "manual" ? "Credits added" : "Auto Reload";
        return what + " " + raw.amount + (raw.status === "succeeded" ? ", balance " + money(data, raw.y) : " declined");
      }
      return item.dataset.label === "Balance" ? "Balance " + money(data, raw.y) : item.dataset.label;
    };
  }

  function markRange(data) {
    var chosen = range || defaultRange(data);
    document.querySelectorAll(".range .chip").forEach(function (chip) {
      chip.setAttribute("aria-pressed", chip.getAttribute("data-range") === chosen ? "true" : "false");
    });
  }

  function drawChart() {
    var data = chartData();
    if (!canvas || !data || typeof Chart === "undefined") { return; }
    var win = windowOf(data);
    markRange(data);
    if (chart) {
      chart.data.datasets = datasets(data, win);
      chart.options.scales.x.min = win.min; chart.options.scales.x.max = win.max;
      chart.options.scales.x.ticks.callback = tick(win);
      chart.options.plugins.tooltip.callbacks.label = tooltipLabel(data);
      chart.update("none");
      return;
    }
    chart = new Chart(canvas, {
      type: "line", data: { datasets: datasets(data, win) },
      options: {
        animation: false, parsing: true, responsive: true, maintainAspectRatio: false,
        interaction: { mode: "nearest", intersect: false },
        layout: { padding: { top: 8, right: 8 } },
        scales: {
          x: { type: "linear", min: win.min, max: win.max, ticks: { callback: tick(win), maxTicksLimit: 7, autoSkip: true } },
          y: { beginAtZero: true, grace: "10%", ticks: { callback: function (v) { return money(data, v); } } } },
        plugins: {
          legend: { labels: { boxWidth: 12, filter: function (item) { return item.text !== "Reloads" || data.reloads.length; } } },
          tooltip: { callbacks: {
            title: function (items) { return new Date(items[0].raw.x).toLocaleString(); },
            label: tooltipLabel(data) } } }
      }
    });
  }

  function rangePicker() {
    var group = document.querySelector(".range");
    if (!group) { return; }
    group.hidden = false;
    group.querySelectorAll(".chip").forEach(function (chip) {
      chip.addEventListener("click", function () { range = chip.getAttribute("data-range"); drawChart(); });
    });
  }

  // Target mode tops up to a balance: it hides the reload amount, and fixed mode the target.
  function modeFields() {
    var form = document.getElementById("auto-reload-form");
    if (!form) { return; }
    var show = function () {
      var target = form.querySelector("input[name=mode][value=target]").checked;
      form.querySelector("[data-field=reload_amount]").hidden = target;
      form.querySelector("[data-field=target_balance]").hidden = !target;
    };
    form.querySelectorAll("input[name=mode]").forEach(function (radio) { radio.addEventListener("change", show); });
    show();
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

  rangePicker();
  drawChart();
  modeFields();
  stripeCard();
  // The balance chart's data is in the live part; the checklist's swap changes none of it.
  window.keepLive(function (part) { if (part.id === "live") { drawChart(); } });
}());
