// Live counts for the kiosk: follow /stream, update each item, show when the stream is down.
"use strict";

(() => {
  const main = document.querySelector("main.cards");
  const banner = document.querySelector(".reconnecting");
  const lowStock = Number(main.dataset.lowStock);
  const items = new Map();
  for (const el of document.querySelectorAll(".variant[data-sku]")) items.set(el.dataset.sku, el);

  function show(el, level) {
    const available = Math.max(level.available, 0);
    el.querySelector(".count .n").textContent = available;
    el.classList.toggle("is-sold-out", level.sold_out);
    el.classList.toggle("is-low", !level.sold_out && available <= lowStock);
    const reserved = el.querySelector(".reserved");
    reserved.querySelector(".r").textContent = level.reserved;
    reserved.hidden = level.reserved <= 0;
  }

  // A payment link made (or replaced) after the page loaded gets its QR code without a reload.
  function showLink(el, sku, url) {
    if ((el.dataset.buyUrl || "") === (url || "")) return;
    el.dataset.buyUrl = url || "";
    const tile = el.querySelector(".tile");
    tile.querySelector(".qr, .pending")?.remove();
    let face;
    if (url) {
      face = document.createElement("img");
      face.className = "qr";
      face.alt = "QR code: buy " + sku;
      face.src = "/qr/" + encodeURIComponent(sku) + ".svg?t=" + Date.now();
    } else {
      face = document.createElement("div");
      face.className = "pending";
      face.textContent = "Not on sale yet";
    }
    tile.prepend(face);
  }

  async function refreshLinks() {
    try {
      const response = await fetch(main.dataset.stockUrl, { cache: "no-store" });
      if (!response.ok) return;
      for (const item of (await response.json()).items) {
        const el = items.get(item.sku);
        if (el) showLink(el, item.sku, item.buy_url);
      }
    } catch (error) {
      // The stream's banner already says we are offline; the next open retries.
    }
  }

  function setLive(live) {
    banner.hidden = live;
    document.body.dataset.stream = live ? "live" : "down";
  }

  let source = null;
  function connect() {
    source = new EventSource(main.dataset.streamUrl);
    source.addEventListener("open", () => {
      setLive(true);
      refreshLinks();
    });
    source.addEventListener("stock", (event) => {
      const level = JSON.parse(event.data);
      const el = items.get(level.sku);
      if (el) show(el, level);
    });
    source.addEventListener("error", () => {
      setLive(false);
      // The browser retries by itself unless the server answered with an error status.
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        setTimeout(connect, 3000);
      }
    });
  }

  setLive(false);
  banner.hidden = true;
  connect();
  setInterval(refreshLinks, Number(main.dataset.refreshSeconds) * 1000);
})();
