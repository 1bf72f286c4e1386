// The kiosk: fit every item on the screen, follow /stream, show when the stream is down.
"use strict";

(() => {
  const main = document.querySelector("main.cards");
  const lowStock = Number(main.dataset.lowStock);
  const items = new Map();
  for (const el of document.querySelectorAll(".variant[data-sku]")) items.set(el.dataset.sku, el);

  // The smallest QR tile (CSS px) the page will draw; below it the page scrolls instead.
  // A Stripe link is a version 4 code, 41 modules with its quiet zone: 3 px a module keeps
  // every module a solid block on screen and in a phone's view of it (see docs/kiosk.md).
  const MIN_TILE = 123;

  // Try every column count in each card shape; keep the one that gives the biggest QR codes.
  // Sizes are measured, not guessed, so long names, images and banners count as they draw.
  const SHAPES = [
    { name: "roomy", bonus: 1.1 },
    { name: "compact", bonus: 1 },
    { name: "tight", bonus: 0.75 },
    { name: "wide", bonus: 1.15, maxCards: 4, maxCols: 2 },
  ];

  function fit() {
    const cards = [...main.querySelectorAll(".card")];
    if (!cards.length) return;
    document.body.classList.remove("is-scrolling");
    main.classList.add("is-fitted", "is-measuring");
    const box = getComputedStyle(main);
    const width = main.clientWidth - parseFloat(box.paddingLeft) - parseFloat(box.paddingRight);
    const height = main.clientHeight - parseFloat(box.paddingTop) - parseFloat(box.paddingBottom);
    const gap = parseFloat(box.columnGap);
    const short = Math.min(window.innerWidth, window.innerHeight);
    const total = cards.reduce((n, card) => n + Number(card.dataset.variants), 0);
    // No tile is wider than its column or taller than its share of the rows: try the column
    // counts whose bound is highest first, and stop when no bound can beat the best so far.
    const candidates = [];
    for (const shape of SHAPES) {
      if (cards.length > (shape.maxCards || Infinity)) continue;
      for (let cols = 1; cols <= Math.min(total, shape.maxCols || total); cols++) {
        const cell = (width - (cols - 1) * gap) / cols;
        const bound = Math.min(cell, height / Math.ceil(total / cols)) * shape.bonus;
        candidates.push({ shape, cols, cell, bound });
      }
    }
    candidates.sort((a, b) => b.bound - a.bound);
    let best = null;
    for (const { shape, cols, cell, bound } of candidates) {
      if (best && bound <= best.score) break;
      // Text follows the column width, between what reads from 1.5 m and what still fits.
      const scale = shape.name === "wide" ? 0.04 : 0.075;
      const fs = Math.min(Math.max(cell * scale, short * 0.021, 15), short * 0.045);
      const sizes = { shape: shape.name, cols, fs };
      const tile = largest(cards, sizes, height);
      // Any shape that keeps codes readable beats every one that does not.
      const score = tile * shape.bonus - (tile < MIN_TILE ? 10000 : 0);
      if (!best || score > best.score) best = { ...sizes, tile, score };
    }
    if (best.tile < MIN_TILE) {
      best.tile = MIN_TILE;
      document.body.classList.add("is-scrolling");
    }
    apply(cards, best);
    main.classList.remove("is-measuring");
    main.dataset.shape = best.shape;
  }

  // The biggest whole-pixel tile with which every card fits `height` (-1 if none does).
  function largest(cards, sizes, height) {
    apply(cards, { ...sizes, tile: 0 });
    const bare = needed(cards);
    if (bare > height) return -1;
    const across = room(cards, sizes);
    apply(cards, { ...sizes, tile: 100 });
    const slope = (needed(cards) - bare) / 100;
    let hi = Math.floor(Math.min(across, slope > 0 ? (height - bare) / slope : across));
    apply(cards, { ...sizes, tile: hi });
    if (needed(cards) <= height) return hi;
    let lo = 0;
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      apply(cards, { ...sizes, tile: mid });
      if (needed(cards) <= height) lo = mid;
      else hi = mid;
    }
    return lo;
  }

  // How wide a tile may be: its column, or beside the name when cards are wide.
  function room(cards, { fs, shape }) {
    if (shape !== "wide") {
      return Math.min(...[...main.querySelectorAll(".variant")].map((v) => v.clientWidth));
    }
    return Math.min(
      ...cards.map((card) => {
        const pad = getComputedStyle(card);
        const inner = card.clientWidth - parseFloat(pad.paddingLeft) - parseFloat(pad.paddingRight);
        const vcols = Number(card.style.getPropertyValue("--vcols"));
        return (inner - 12 * fs) / vcols - 0.6 * fs;
      }),
    );
  }

  function apply(cards, { shape, cols, fs, tile }) {
    for (const { name } of SHAPES) main.classList.toggle(`is-${name}`, name === shape);
    main.classList.toggle("is-compact", shape === "compact" || shape === "tight");
    main.style.setProperty("--cols", cols);
    main.style.setProperty("--fs", `${fs.toFixed(2)}px`);
    main.style.setProperty("--tile", `${tile}px`);
    for (const card of cards) {
      const span = Math.min(Number(card.dataset.variants), cols);
      card.style.setProperty("--span", span);
      // A group wider than the grid wraps into even rows: 4 in 3 columns as 2 and 2.
      const variants = Number(card.dataset.variants);
      const even = Math.ceil(variants / Math.ceil(variants / span));
      card.style.setProperty("--vcols", shape === "wide" ? variants : even);
    }
  }

  // The height the grid's rows take, from the top of the first card to the bottom of the last.
  function needed(cards) {
    const top = cards[0].getBoundingClientRect().top;
    return Math.max(...cards.map((card) => card.getBoundingClientRect().bottom)) - top;
  }

  let pending = 0;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(fit);
  });
  fit();

  function show(el, level) {
    const available = Math.max(level.available, 0);
    const n = el.querySelector(".count .n");
    if (n.textContent !== String(available)) {
      n.textContent = available;
      flash(el);
    }
    // A link Stripe switched off at its limit sells nothing, whatever the count says.
    const soldOut = level.sold_out || el.dataset.stopped === "1";
    el.classList.toggle("is-sold-out", soldOut);
    el.classList.toggle("is-low", !soldOut && available <= lowStock);
    const reserved = el.querySelector(".reserved");
    reserved.querySelector(".r").textContent = level.reserved;
    reserved.hidden = level.reserved <= 0;
  }

  // Restart the highlight even when the previous one is still running.
  function flash(el) {
    el.classList.remove("is-changed");
    void el.offsetWidth;
    el.classList.add("is-changed");
  }
  main.addEventListener("animationend", (event) => {
    if (event.animationName === "glow") event.target.classList.remove("is-changed");
  });

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
      const onSale = (await response.json()).items.filter((item) => !item.off_sale);
      // Staff took an item off sale or put one back: the page lays itself out anew.
      const skus = onSale.map((item) => item.sku);
      if (skus.length !== items.size || skus.some((sku) => !items.has(sku))) {
        window.location.reload();
        return;
      }
      for (const item of onSale) {
        const el = items.get(item.sku);
        showLink(el, item.sku, item.buy_url);
        const stopped = item.stopped_by_stripe && main.dataset.mode === "payment_link";
        if ((el.dataset.stopped === "1") !== stopped) {
          el.dataset.stopped = stopped ? "1" : "0";
          show(el, item);
        }
      }
    } catch (error) {
      // The header already says we are offline; the next open retries.
    }
  }

  function setLive(live) {
    document.body.dataset.stream = live ? "live" : "down";
  }

  // Whether a level changes what the page shows for the item.
  function counted(el, level) {
    const available = el.querySelector(".count .n").textContent;
    const reserved = el.querySelector(".reserved .r").textContent.trim();
    return available !== String(Math.max(level.available, 0)) || reserved !== String(level.reserved);
  }

  let checking = 0;
  function soon() {
    clearTimeout(checking);
    checking = setTimeout(refreshLinks, 500);
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
      if (el && counted(el, level)) show(el, level);
      // A logged change that moved no count here (an item taken off sale or put back, one
      // not on this page): ask what is on sale now.
      else soon();
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

  connect();
  setInterval(refreshLinks, Number(main.dataset.refreshSeconds) * 1000);
})();
