"""The visitor's side in modes reserved_checkout and payment_intent: hold, then pay.

`GET /buy/<sku>` holds a unit and redirects to its Checkout Session; `GET /pay/<sku>` and
`POST /api/intents` hold a unit and answer a PaymentIntent for the card form. A visitor is
known by a random id in the signed session cookie, so a reload finds the same hold.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from .. import catalog, hold_checkout, holds, offer, security
from ..errors import wants_json
from ..models import writes

bp = Blueprint("shop", __name__)


@bp.get("/buy/<sku>")
@writes
def buy(sku: str) -> Any:
    """Hold a unit and send the visitor to pay for it on Stripe Checkout."""
    config = _mode("reserved_checkout")
    result = hold_checkout.open_checkout(
        sku,
        config["STORE_ID"],
        _token(sku),
        hold_seconds=config["HOLD_SECONDS"],
        public_url=offer.public_url(config["PUBLIC_URL"], request.host_url),
        capture=config["LINK_CAPTURE"],
        share=_share(),
    )
    if isinstance(result, hold_checkout.SoldOut):
        return render_template("shop/sold_out.html", result=result, path="buy"), 409
    return redirect(result.url, 303)


@bp.get("/pay/<sku>")
@writes
def pay(sku: str) -> Any:
    """Hold a unit and show the card form for its PaymentIntent."""
    config = _mode("payment_intent")
    result = hold_checkout.open_intent(
        sku, config["STORE_ID"], _token(sku), hold_seconds=config["HOLD_SECONDS"], share=_share()
    )
    if isinstance(result, hold_checkout.SoldOut):
        return render_template("shop/sold_out.html", result=result, path="pay"), 409
    # After paying, the buyer's page follows the sale (views/paid.py).
    return_url = url_for("paid.status", reference=result.payment_intent_id, _external=True)
    return render_template("shop/pay.html", intent=result, return_url=return_url)


@bp.post("/api/intents")
def create_intent() -> Any:
    """Hold a unit and answer a PaymentIntent's client secret as JSON (409 when sold out)."""
    config = _mode("payment_intent")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser goes: not a body we sent
        body = None
    sku = body.get("sku") if isinstance(body, dict) else None
    if not isinstance(sku, str) or not sku:
        return {"error": "bad_request", "message": 'send JSON {"sku": "..."}'}, 400
    if not catalog.is_sku(sku):
        # No item has it; JSON can carry text (a lone surrogate) the database cannot store.
        raise holds.UnknownItem(sku)
    result = hold_checkout.open_intent(
        sku, config["STORE_ID"], _token(sku), hold_seconds=config["HOLD_SECONDS"], share=_share()
    )
    if isinstance(result, hold_checkout.SoldOut):
        others = [{"sku": item.sku, "name": item.name} for item in result.others]
        return {"error": "sold_out", "sku": sku, "others": others}, 409
    return {
        "hold": result.hold_id,
        "payment_intent": result.payment_intent_id,
        "client_secret": result.client_secret,
        "amount": result.amount,
        "currency": result.currency,
    }, 201


@bp.get("/buy/<sku>/cancelled")
def cancelled(sku: str) -> str:
    """Tell a visitor who left the checkout that nothing was charged."""
    return render_template("shop/cancelled.html", sku=sku)


@bp.errorhandler(holds.UnknownItem)
def unknown_item(error: holds.UnknownItem) -> Any:
    if wants_json():
        return {"error": "not_found", "message": "no such item here"}, 404
    return render_template("shop/problem.html", title="No such item", status=404), 404


@bp.errorhandler(holds.TooMany)
def too_many(error: holds.TooMany) -> Any:
    """Tell a visitor this device holds its share of items for now, and when to come back."""
    headers = {"Retry-After": str(error.retry_after)}
    if wants_json():
        message = "this device holds its share of items: pay for them or try again later"
        return {"error": "too_many_holds", "message": message}, 429, headers
    page = render_template("shop/too_many.html", error=error)
    return page, 429, headers


@bp.errorhandler(hold_checkout.PaymentUnavailable)
def payment_unavailable(error: hold_checkout.PaymentUnavailable) -> Any:
    current_app.logger.warning("payment unavailable: %s", error)
    if wants_json():
        return {"error": "payment_unavailable", "message": "try again in a moment"}, 503
    return render_template("shop/problem.html", title="Payments are down", status=503), 503


@bp.errorhandler(hold_checkout.PaymentRefused)
def payment_refused(error: hold_checkout.PaymentRefused) -> Any:
    # Stripe's reason is for staff (it may quote the key's prefix); the visitor learns that
    # trying again will not help. 502: the store is fine, what is behind it said no.
    current_app.logger.error("Stripe refused a payment (%s): %s", error.code, error)
    if wants_json():
        message = "Stripe refused to open this payment; retrying will not help. Ask at the booth."
        return {"error": "payment_refused", "code": error.code, "message": message}, 502
    return render_template("shop/refused.html"), 502


def _mode(mode: str) -> Any:
    """Answer 404 unless the store sells in this purchase mode; return the config."""
    if current_app.config["PURCHASE_MODE"] != mode:
        abort(404)
    return current_app.config


def _share() -> holds.Share:
    """Return the share of holds of this request's client address."""
    config = current_app.config
    client = security.client_tag(security.client_address())
    return holds.Share(client, config["HOLDS_PER_CLIENT"], config["HOLDS_PER_CLIENT_PER_MINUTE"])


def _token(sku: str) -> str:
    """Return this visitor's hold token for an item, giving a new visitor an id."""
    visitor = session.get("visitor")
    if not isinstance(visitor, str):
        visitor = session["visitor"] = secrets.token_urlsafe(16)
    return hold_checkout.visitor_token(visitor, sku, current_app.config["STORE_ID"])
