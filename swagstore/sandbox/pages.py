"""Hosted pages standing in for the visitor's phone, and control endpoints for tests."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, redirect, render_template, request
from werkzeug.exceptions import BadRequest

from .. import money
from ..models import db
from . import checkout, delivery, faults, intents, ledger
from .api import base_url
from .errors import StripeError
from .store import advance_clock, get

bp = Blueprint("sandbox", __name__, url_prefix="/sandbox")


@bp.app_template_filter("sandbox_money")
def shown(amount: int, currency: str) -> str:
    """Show an API amount as the store's pages do: ¥500 reads ¥500 (the one formatter)."""
    return money.format_money(amount, currency, current_app.config.get("LOCALE", "en_US"))


def _wants_json() -> bool:
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) != "text/html"


def _answer(template: str, body: dict[str, Any], status: int = 200, **context: Any) -> Any:
    """Answer JSON to scripts and a page to browsers."""
    if _wants_json():
        return body, status
    return render_template(template, **context), status


def _failed(error: StripeError) -> Any:
    db.session.rollback()
    return _answer("sandbox/error.html", error.body(), error.status, error=error)


@bp.get("/pay/<link_id>")
def pay_link(link_id: str) -> Any:
    """Open a Checkout Session for a payment link, as scanning its QR code does."""
    try:
        session = checkout.open_link_session(link_id, base_url())
    except StripeError as e:
        return _failed(e)
    db.session.commit()
    return redirect(session["url"], 303)


@bp.post("/payment_links/<link_id>/sessions")
def open_session(link_id: str) -> Any:
    """Open a Checkout Session for a payment link and answer its id and URL."""
    try:
        session = checkout.open_link_session(link_id, base_url())
    except StripeError as e:
        db.session.rollback()
        return e.body(), e.status
    db.session.commit()
    return {"id": session["id"], "url": session["url"]}, 201


@bp.get("/checkout/<session_id>")
def checkout_page(session_id: str) -> Any:
    """Show a Checkout Session with its Pay button."""
    try:
        session = checkout.retrieve_session(session_id)
        items = checkout.session_line_items(session_id)
    except StripeError as e:
        return _failed(e)
    db.session.commit()
    return render_template("sandbox/checkout.html", session=session, items=items)


@bp.post("/checkout/<session_id>/pay")
def pay(session_id: str) -> Any:
    """Pay a Checkout Session (method=card, or delayed to settle later)."""
    try:
        session = checkout.pay_session(session_id, request.values.get("method", "card"))
    except StripeError as e:
        return _failed(e)
    db.session.commit()
    return _completed(session)


def _completed(session: dict[str, Any]) -> Any:
    """Answer a paid session as Stripe does: to its success URL, else the confirmation page."""
    after: dict[str, Any] = {}
    if session.get("payment_link"):
        after = get("payment_link", session["payment_link"]).data["after_completion"]
    url = session.get("success_url") or (after.get("redirect") or {}).get("url")
    if url and not _wants_json():
        return redirect(url.replace("{CHECKOUT_SESSION_ID}", session["id"]), 303)
    message = (after.get("hosted_confirmation") or {}).get("custom_message")
    return _answer("sandbox/paid.html", session, session=session, message=message)


@bp.post("/checkout/<session_id>/settle")
def settle(session_id: str) -> Any:
    """Finish a delayed payment with outcome=succeeded or outcome=failed."""
    try:
        session = checkout.settle_session(session_id, request.values.get("outcome", ""))
    except StripeError as e:
        return _failed(e)
    db.session.commit()
    return _answer("sandbox/paid.html", session, session=session, message=None)


@bp.get("/payment_intents/<intent_id>/form")
def card_form(intent_id: str) -> Any:
    """Show the card form for a PaymentIntent the app created (Stripe Elements offline)."""
    try:
        intent = intents.retrieve_intent(intent_id)
    except StripeError as e:
        return _failed(e)
    db.session.commit()
    return render_template(
        "sandbox/card.html",
        intent=intent,
        client_secret=request.args.get("client_secret", ""),
        return_url=request.args.get("return_url", ""),
    )


@bp.post("/payment_intents/<intent_id>/confirm")
def confirm(intent_id: str) -> Any:
    """Confirm a PaymentIntent with a test card; the client secret proves the caller."""
    try:
        intent = intents.confirm_with_secret(intent_id, request.values.get("client_secret", ""))
    except StripeError as e:
        return _failed(e)
    db.session.commit()
    return_url = request.values.get("return_url")
    if return_url and not _wants_json():
        # As Stripe.js does after confirmPayment: back to the shop, saying which payment.
        query = urlencode(
            {
                "payment_intent": intent["id"],
                "payment_intent_client_secret": intent["client_secret"],
                "redirect_status": "succeeded",
            }
        )
        return redirect(f"{return_url}{'&' if '?' in return_url else '?'}{query}", 303)
    return _answer("sandbox/paid.html", intent, session=None, intent=intent, message=None)


# Test controls ----------------------------------------------------------------------------


@bp.post("/_control/faults")
def add_fault() -> tuple[dict[str, Any], int]:
    """Make the next `count` API calls under `path_prefix` fail (a mode of faults.MODES)."""
    body = request.get_json(force=True)
    try:
        faults.add(
            str(body.get("path_prefix", "/v1/")),
            int(body.get("count", 1)),
            str(body.get("mode", "error")),
            float(body.get("seconds", 0)),
        )
    except (TypeError, ValueError) as e:
        raise BadRequest(str(e)) from None
    db.session.commit()
    return {"faults": faults.pending()}, 201


@bp.get("/_control/faults")
def list_faults() -> dict[str, Any]:
    """List faults with calls left to fail."""
    return {"faults": faults.pending()}


@bp.delete("/_control/faults")
def clear_faults() -> dict[str, Any]:
    """Remove every fault."""
    faults.clear()
    db.session.commit()
    return {"faults": []}


@bp.get("/_control/ledger")
def show_ledger() -> dict[str, Any]:
    """Show every money movement and per-PaymentIntent counts."""
    return ledger.summary()


@bp.post("/_control/clock")
def clock() -> dict[str, Any]:
    """Advance the sandbox's clock by `advance` seconds (sessions then expire as due)."""
    seconds = float(request.get_json(force=True).get("advance", 0))
    moment = advance_clock(seconds)
    expired = checkout.expire_due()
    db.session.commit()
    return {"now": moment, "expired": expired}


@bp.get("/_control/deliveries")
def deliveries() -> dict[str, Any]:
    """List webhook deliveries with their attempts and last answer."""
    return {"deliveries": delivery.summary()}


@bp.after_request
def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response
