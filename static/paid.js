// The buyer's page follows their sale: it fetches itself again until the sale has ended.
"use strict";

(() => {
  const status = () => document.getElementById("sale-status");
  if (!status()) return;
  const started = Date.now();

  function delay() {
    // Quick while the payment is being confirmed; slower once the code is shown or the
    // bank is taking its time, and after the first minutes.
    const state = status().dataset.state;
    if (state === "waiting" && Date.now() - started < 120000) return 1500;
    return 10000;
  }

  async function follow() {
    if (status().dataset.final === "yes") return;
    try {
      const response = await fetch(window.location.href, { cache: "no-store" });
      if (response.ok) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById("sale-status");
        if (fresh) status().replaceWith(fresh);
      }
    } catch (error) {
      // The phone lost the network for a moment: try again.
    }
    setTimeout(follow, delay());
  }

  setTimeout(follow, delay());
})();
