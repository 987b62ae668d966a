// The billing page's payment step: mounts Stripe's embedded Checkout in #checkout and hides
// the way round it. Without Stripe.js (no JavaScript, or the script blocked) the page's
// form to pay on Stripe's own page stays, so a top-up never depends on this file.
(function () {
  "use strict";
  var mount = document.getElementById("checkout");
  if (!mount || typeof window.Stripe !== "function") {
    return;
  }
  var secret = mount.dataset.clientSecret;
  window.Stripe(mount.dataset.publishableKey)
    .initEmbeddedCheckout({ fetchClientSecret: function () { return Promise.resolve(secret); } })
    .then(function (checkout) {
      checkout.mount(mount);
      var hosted = document.querySelector(".hosted-checkout");
      if (hosted) {
        hosted.hidden = true;
      }
    });
})();
