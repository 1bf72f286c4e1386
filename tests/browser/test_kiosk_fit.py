"""The kiosk fits any booth screen: every card on screen, no scrollbar, every code readable."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, expect

from conftest import STORE, LiveServer, make_item, wait_in_page
from swagstore import catalog
from swagstore.models import PaymentLink, db

SCREENS = [(1280, 720), (1366, 768), (1920, 1080), (3840, 2160), (1080, 1920)]
SHOTS = Path(__file__).resolve().parent / "screenshots"
# Must match MIN_TILE in static/kiosk.js: the smallest code the page draws.
MIN_TILE = 123
# Text the kiosk draws for names, prices and counts never goes below this (CSS px).
MIN_TEXT = 15

# A product picture, as a catalog's `image` gives it.
HOODIE = (
    "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 10 10'>"
    "<rect width='10' height='10' fill='%23334155'/>"
    "<path d='M2 9V4l3-2 3 2v5z' fill='%23f97316'/></svg>"
)

# The demo booth, then a bigger one: a group with a price per variant, long names.
DEMO = [
    *(
        make_item(f"tee-{s}", name="Logo T-shirt", group="tee", attributes={"size": s.upper()})
        for s in ("s", "m", "l", "xl")
    ),
    make_item("hoodie", name="Zip hoodie", price=5500, image=HOODIE),
    make_item("stickers", name="Sticker pack", price=500),
    make_item("mug", name="Enamel mug", price=1800),
    make_item("socks", name="Deploy-on-Friday socks", price=1200),
    make_item("cap", name="Dad cap", price=2200),
    make_item("tote", name="Canvas tote", price=1500),
]
MORE = [
    make_item("bottle", name="Insulated water bottle", price=2800),
    make_item("notebook", name="Dot-grid notebook", price=1400),
    *(
        make_item(f"beanie-{c}", name="Beanie", group="beanie", attributes={"colour": c.title()})
        for c in ("black", "orange", "teal")
    ),
    make_item("pins", name="Enamel pin set", price=900),
    make_item("lanyard", name="Lanyard", price=400),
    *(
        make_item(
            f"sleeve-{s}",
            name="Laptop sleeve",
            group="sleeve",
            price=p,
            attributes={"size": f"{s} in"},
        )
        for s, p in (("13", 3200), ("15", 3400))
    ),
    make_item("stand", name="Aluminium phone stand", price=2600),
    make_item("cable", name="Braided USB-C cable", price=1600),
    make_item("hoodie-ltd", name="Limited-edition conference hoodie", price=7500),
    make_item("plush", name="Mascot plush", price=2000),
    make_item("poster", name="Architecture poster", price=1000),
]
BOOTHS = {1: [DEMO[4]], 10: DEMO, 24: DEMO + MORE}

# Every card and what it must hold, checked in the page: the card inside the viewport,
# each part of it inside the card, and the text sizes it uses.
MEASURE = """() => {
  const box = (el) => { const r = el.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom].map(Math.round); };
  const px = (el) => parseFloat(getComputedStyle(el).fontSize);
  const doc = document.documentElement;
  return {
    scroll: [doc.scrollWidth, doc.scrollHeight], client: [doc.clientWidth, doc.clientHeight],
    notice: box(document.querySelector(".reconnecting")),
    cards: [...document.querySelectorAll(".card")].map((card) => ({
      box: box(card),
      parts: [...card.querySelectorAll(".card-head, .tile, .variant-foot, .status")]
        .filter((el) => el.getClientRects().length).map(box),
      spills: [...card.querySelectorAll(".variant-foot, .status")]
        .filter((el) => el.scrollWidth > el.clientWidth + 1).length,
      tiles: [...card.querySelectorAll(".tile")].map((t) => t.getBoundingClientRect().width),
      text: [...card.querySelectorAll("h2, .price, .variant-price, .count, .label")].map(px),
    })),
  };
}"""


def inside(inner: list[int], outer: list[int]) -> bool:
    return (
        inner[0] >= outer[0]
        and inner[1] >= outer[1]
        and inner[2] <= outer[2]
        and inner[3] <= outer[3]
    )


def overlaps(a: list[int], b: list[int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.fixture
def booth(request, app, server_env):
    """A running store selling the first N items, each with a Stripe-length payment link."""
    items = BOOTHS[request.param]
    with app.app_context():
        catalog.load(items, STORE)
        for n, item in enumerate(items):
            url = f"https://buy.stripe.com/test_{item.sku[:6]}{n:02d}aBcDeFgHiJkLmNoP"
            db.session.add(
                PaymentLink(id=f"plink_{n}", sku=item.sku, store=STORE, url=url, price_id="p")
            )
        db.session.commit()
        links = {link.sku: link.url for link in db.session.query(PaymentLink)}
    server = LiveServer({**server_env, "SWAGSTORE_PURCHASE_MODE": "payment_link"}).start()
    yield server, links
    server.stop()


@pytest.mark.parametrize("booth", sorted(BOOTHS), indirect=True, ids=lambda n: f"{n}-items")
def test_every_item_fits_the_screen_and_every_code_reads(browser: Browser, booth):
    server, links = booth
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.goto(server.url + "/")
    expect(page.locator("body")).to_have_attribute("data-stream", "live")
    SHOTS.mkdir(exist_ok=True)
    problems, sizes = [], {}
    try:
        for width, height in SCREENS:
            screen = f"{len(links)} items at {width}x{height}"
            page.set_viewport_size({"width": width, "height": height})
            wait_in_page(
                page,
                "([w, h]) => innerWidth === w && innerHeight === h"
                " && [...document.images].every((i) => i.complete && i.naturalWidth)",
                arg=[width, height],
            )
            page.evaluate("() => new Promise(requestAnimationFrame)")
            shown = page.evaluate(MEASURE)
            png = page.screenshot(path=SHOTS / f"kiosk-fit-{len(links)}-{width}x{height}.png")

            if shown["scroll"] != [width, height] or shown["client"] != [width, height]:
                problems.append(f"{screen}: scrolls, {json.dumps(shown)[:200]}")
            viewport = [0, 0, width, height]
            for n, card in enumerate(shown["cards"]):
                if not inside(card["box"], viewport):
                    problems.append(f"{screen}: card {n} at {card['box']} is off screen")
                if not all(inside(part, card["box"]) for part in card["parts"]):
                    problems.append(f"{screen}: card {n} spills out of its box")
                if card["spills"]:
                    problems.append(f"{screen}: card {n} has a count line wider than its item")
                if overlaps(shown["notice"], card["box"]):
                    problems.append(f"{screen}: the reconnecting notice covers card {n}")
                if min(card["text"]) < MIN_TEXT:
                    problems.append(f"{screen}: card {n} text {min(card['text'])} px")
            tiles = [t for card in shown["cards"] for t in card["tiles"]]
            if min(tiles) < MIN_TILE:
                problems.append(f"{screen}: a QR code of {min(tiles)} px")
            sizes[f"{width}x{height}"] = round(min(tiles))

            codes = zxingcpp.read_barcodes(
                Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode
            )
            if sorted(c.text for c in codes) != sorted(links.values()):
                read = len({c.text for c in codes} & set(links.values()))
                problems.append(f"{screen}: read {read} of {len(links)} codes")
    finally:
        context.close()
    print(f"QR px with {len(links)} items:", sizes)
    assert not problems, "\n".join(problems)
