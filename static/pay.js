// The live card form of mode payment_intent (shop/pay.html): Stripe Elements, no inline script.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("payment-form");
  const stripe = Stripe(form.dataset.key);
  const elements = stripe.elements({ clientSecret: form.dataset.clientSecret });
  elements.create("payment").mount("#payment-element");
  const submit = document.getElementById("submit");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    const { error } = await stripe.confirmPayment({
      elements, confirmParams: { return_url: form.dataset.returnUrl },
    });
    // Only an immediate error lands here; success redirects to return_url.
    document.getElementById("message").textContent = error.message;
    submit.disabled = false;
  });
});
