"""The booth monitor: the kiosk page, its QR codes and its live stream."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, Response, abort, current_app, render_template, request

from .. import offer, qr, security, stream
from ..models import db

bp = Blueprint("kiosk", __name__)

LOW_STOCK = 3


@dataclass(frozen=True)
class Variant:
    """One SKU on a card: its label within the group, its counts and what its QR encodes."""

    listing: offer.Listing
    label: str
    buy_url: str | None

    @property
    def qr_version(self) -> str:
        return qr.version(self.buy_url) if self.buy_url else ""


@dataclass(frozen=True)
class Card:
    """A product on the kiosk: one SKU, or every variant of a group."""

    name: str
    description: str
    image: str | None
    variants: list[Variant]


def cards(listings: list[offer.Listing], mode: str, public_url: str) -> list[Card]:
    """Gather listings into kiosk cards, variants of one group together, in catalog order."""
    groups: dict[str, list[offer.Listing]] = {}
    # An item staff took off sale is not shown at all; it comes back when put back on sale.
    for listing in (item for item in listings if not item.off_sale):
        groups.setdefault(listing.group or f"sku:{listing.sku}", []).append(listing)
    result = []
    for members in groups.values():
        first = members[0]
        # Label each variant by the attributes that tell the group's members apart.
        keys = offer.variant_keys([m.attributes for m in members])
        result.append(
            Card(
                name=first.name,
                description=first.description,
                image=first.image,
                variants=[
                    Variant(
                        listing=m,
                        label=" · ".join(m.attributes.get(k, "") for k in keys) or m.name,
                        buy_url=offer.buy_url(m, mode, public_url),
                    )
                    for m in members
                ],
            )
        )
    return result


@bp.get("/")
def kiosk() -> str:
    """Show every item with its QR code and live count."""
    config = current_app.config
    base = offer.public_url(config["PUBLIC_URL"], request.host_url)
    listings = offer.listings(config["STORE_ID"])
    return render_template(
        "kiosk.html",
        cards=cards(listings, config["PURCHASE_MODE"], base),
        catalog_loaded=bool(listings),
        low_stock=LOW_STOCK,
        mode=config["PURCHASE_MODE"],
        refresh_seconds=config.get("KIOSK_REFRESH_SECONDS", 60),
    )


@bp.get("/qr/<sku>.svg")
def qr_code(sku: str) -> Response:
    """Answer the QR code of the item's buy URL; 404 while it has none."""
    config = current_app.config
    base = offer.public_url(config["PUBLIC_URL"], request.host_url)
    listing = next((i for i in offer.listings(config["STORE_ID"]) if i.sku == sku), None)
    url = listing and offer.buy_url(listing, config["PURCHASE_MODE"], base)
    if not url:
        abort(404)
    response = Response(qr.svg(url), mimetype="image/svg+xml")
    response.set_etag(qr.version(url))
    response.cache_control.public = True
    response.cache_control.max_age = 60
    return response.make_conditional(request)


@bp.get("/stream")
def events() -> Response:
    """Stream stock changes as server-sent events, resuming after Last-Event-ID."""
    last_id = stream.parse_last_event_id(request.headers.get("Last-Event-ID"))
    client = security.client_address()
    # The stream outlives the request's work: give its connection back to the pool now.
    db.session.remove()
    return Response(
        stream.streams(current_app).follow(last_id, client, kiosk=security.is_kiosk(client)),
        mimetype="text/event-stream",
        headers=stream.HEADERS,
    )
