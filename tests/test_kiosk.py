"""The kiosk page and its QR codes, in process (the browser tests drive the real page)."""

from __future__ import annotations

import re

import pytest
import zxingcpp
from PIL import Image, ImageDraw

from conftest import STORE, make_item, make_product
from swagstore import catalog, create_app, inventory, offer, qr
from swagstore.models import PaymentLink, db
from swagstore.views.kiosk import cards


def add_link(app, sku: str, url: str, link_id: str = "plink_1") -> None:
    with app.app_context():
        db.session.add(PaymentLink(id=link_id, sku=sku, store=STORE, url=url, price_id="price_1"))
        db.session.commit()


def decode_svg(svg: str) -> list[zxingcpp.Barcode]:
    """Rasterize qrcode's path SVG (one square per dark module) and decode it with zxing."""
    size = int(re.search(r'viewBox="0 0 (\d+) (\d+)"', svg).group(1))
    scale = 8
    image = Image.new("L", (size * scale, size * scale), 255)
    draw = ImageDraw.Draw(image)
    for x, y in re.findall(r"M(\d+),(\d+)H", svg):
        x, y = int(x) * scale, int(y) * scale
        draw.rectangle((x, y, x + scale - 1, y + scale - 1), fill=0)
    return zxingcpp.read_barcodes(image)


def test_cards_put_variants_of_a_group_together_in_catalog_order(app):
    navy = {"colour": "Navy"}
    with app.app_context():
        catalog.load(
            [
                make_item("tee-s", group="tee", name="Tee", attributes={"size": "S", **navy}),
                make_item("mug", name="Mug"),
                make_item("tee-m", group="tee", name="Tee", attributes={"size": "M", **navy}),
            ],
            STORE,
        )
        shown = cards(offer.listings(STORE), "reserved_checkout", "https://booth.test")
    assert [(c.name, [(v.label, v.listing.sku) for v in c.variants]) for c in shown] == [
        ("Tee", [("S", "tee-s"), ("M", "tee-m")]),
        ("Mug", [("Mug", "mug")]),
    ]
    assert shown[1].variants[0].buy_url == "https://booth.test/buy/mug"


@pytest.fixture
def checkout_app(app_config, app):
    """The app in reserved_checkout mode, so every item has a buy URL without Stripe."""
    return create_app(
        {**app_config, "PURCHASE_MODE": "reserved_checkout", "PUBLIC_URL": "https://b.test"}
    )


def test_page_shows_counts_qr_codes_and_states(app, checkout_app):
    make_product(app, "tee-m", stock=10)
    make_product(app, "mug", stock=3)
    make_product(app, "cap", stock=1)
    with app.app_context():
        inventory.take("cap", STORE)
        inventory.hold("tee-m", STORE, 2)
        db.session.commit()
    html = checkout_app.test_client().get("/").get_data(as_text=True)
    assert "SANDBOX: no real payments" in html

    def variant(sku: str) -> str:
        return re.search(rf'<li class="[^"]*"\s+data-sku="{sku}".*?</li>', html, re.S).group(0)

    tee, mug, cap = variant("tee-m"), variant("mug"), variant("cap")
    assert '<b class="n">8</b> left' in tee
    assert re.search(r'<p class="reserved" >\s*<span class="r">2</span> being bought', tee)
    assert 'class="variant is-low"' in mug
    assert 'class="variant is-sold-out"' in cap
    # The QR's address carries a version of the buy URL, so a new URL is fetched afresh.
    assert f'<img class="qr" src="/qr/tee-m.svg?v={qr.version("https://b.test/buy/tee-m")}"' in tee


def test_item_without_a_payment_link_says_not_on_sale_yet(app, client):
    make_product(app, "tee-m", stock=10)
    html = client.get("/").get_data(as_text=True)
    assert "Not on sale yet" in html
    assert '<img class="qr"' not in html
    assert client.get("/qr/tee-m.svg").status_code == 404


def test_every_item_off_sale_says_so_without_a_command_for_visitors(app, client):
    assert "load-catalog" in client.get("/").get_data(as_text=True)  # a store with no catalog
    make_product(app, "tee-m", stock=10)
    make_product(app, "mug", stock=2)
    with app.app_context():
        for sku in ("tee-m", "mug"):
            assert inventory.take_off_sale(sku, STORE) is not None
        db.session.commit()
    html = client.get("/").get_data(as_text=True)
    assert "Nothing on sale right now" in html and "Please ask at the booth." in html
    assert "load-catalog" not in html and "Nothing on sale yet" not in html


def test_no_sandbox_banner_with_a_stripe_key(app_config, app):
    live = create_app({**app_config, "STRIPE_SECRET_KEY": "sk_test_123"})
    assert "SANDBOX" not in live.test_client().get("/").get_data(as_text=True)


def test_qr_code_decodes_to_the_buy_url_with_a_quiet_zone(app, client):
    make_product(app, "tee-m")
    add_link(app, "tee-m", "https://buy.stripe.com/test_4gw5kD")
    response = client.get("/qr/tee-m.svg")
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    svg = response.get_data(as_text=True)
    (code,) = decode_svg(svg)
    assert code.text == "https://buy.stripe.com/test_4gw5kD"
    assert code.ec_level == "M"
    corners = [(int(x), int(y)) for x, y in re.findall(r"M(\d+),(\d+)H", svg)]
    size = int(re.search(r'viewBox="0 0 (\d+)', svg).group(1))
    assert min(x for x, _ in corners) == min(y for _, y in corners) == 4
    assert max(x for x, _ in corners) == max(y for _, y in corners) == size - 5
    assert 'fill="white"' in svg  # light background: readable on a dark page


def test_qr_code_is_cached_until_its_url_changes(app, client):
    make_product(app, "tee-m")
    add_link(app, "tee-m", "https://buy.stripe.com/test_old")
    first = client.get("/qr/tee-m.svg")
    assert first.headers["Cache-Control"] == "public, max-age=60"
    etag = first.headers["ETag"]
    assert client.get("/qr/tee-m.svg", headers={"If-None-Match": etag}).status_code == 304
    with app.app_context():
        db.session.get(PaymentLink, "plink_1").url = "https://buy.stripe.com/test_new"
        db.session.commit()
    second = client.get("/qr/tee-m.svg", headers={"If-None-Match": etag})
    assert second.status_code == 200
    assert second.headers["ETag"] != etag
    assert decode_svg(second.get_data(as_text=True))[0].text == "https://buy.stripe.com/test_new"


def test_qr_code_of_an_unknown_item_is_404(client):
    assert client.get("/qr/nope.svg").status_code == 404
