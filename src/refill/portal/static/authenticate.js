// 3-D Secure with Stripe.js: confirm the payment with its client secret, then let the
// server ask Stripe what became of it (it records the outcome at once).
(function () {
  "use strict";
  var box = document.getElementById("stripe-authenticate");
  var start = document.getElementById("authenticate-start");
  var form = document.getElementById("authenticated-form");
  var error = document.getElementById("authenticate-error");
  if (!box || !start || !form || typeof Stripe === "undefined") { return; }
  start.addEventListener("click", function () {
    start.disabled = true;
    error.textContent = "";
    Stripe(box.dataset.publishableKey).confirmCardPayment(box.dataset.clientSecret).then(function (result) {
      if (result && result.error) {
        error.textContent = (result.error.message || "The bank did not confirm the payment.") + " Recording the outcome…";
      }
      form.submit();
    }, function () { form.submit(); });
  });
}());
