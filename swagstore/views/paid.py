"""The buyer's page after paying: what became of their sale, followed live.

Stripe sends the buyer here when phones can reach the booth: the Checkout Session's
success_url (reserved_checkout, and payment links when PUBLIC_URL is set) and the card
form's return_url (payment_intent). The page names the sale by its Checkout Session or
PaymentIntent id, which only the buyer's phone and Stripe know, and reloads its status
until the sale has ended one way or the other.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, abort, make_response, render_template, request

from .. import pickup

bp = Blueprint("paid", __name__)

REFERENCE = re.compile(r"(cs|pi)_[A-Za-z0-9_]{8,250}")


@bp.get("/paid/<reference>")
def status(reference: str) -> Response:
    """Show a buyer their pickup code, or that their payment was refunded or voided."""
    if not REFERENCE.fullmatch(reference):
        abort(404)
    view = pickup.buyer_view(reference)
    # Stripe.js comes back with redirect_status=failed when the card was declined.
    declined = view.state == "waiting" and request.args.get("redirect_status") == "failed"
    page = render_template(
        "shop/paid.html", view=view, declined=declined, final=view.state in pickup.FINAL
    )
    response = make_response(page)
    response.headers["Cache-Control"] = "no-store"
    return response
