// The hand-over list keeps itself current: each sale moves stock, and each stock change
// on the live stream fetches the list again (a sale handed over on another phone goes too).
"use strict";

(() => {
  const list = document.getElementById("to-hand-over");
  if (!list) return;
  let timer = 0;

  async function refresh() {
    try {
      const response = await fetch(window.location.pathname, { cache: "no-store" });
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("to-hand-over");
      // Not while a button is being pressed: the list changes under no one's thumb.
      if (fresh && !list.contains(document.activeElement)) list.innerHTML = fresh.innerHTML;
    } catch (error) {
      // Offline for a moment: the next change or the timer tries again.
    }
  }

  function soon() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 300);
  }

  const source = new EventSource(list.dataset.streamUrl);
  source.addEventListener("stock", soon);
  setInterval(refresh, 30000);
})();
