"""Checkout Sessions: created by the API or opened from a payment link, paid on a hosted page."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from ..models import db
from .amounts import check_charge
from .errors import StripeError, invalid
from .forms import integer, metadata, text
from .intents import authorize, new_intent
from .models import SandboxObject, SandboxSetting, engine
from .products import (
    INTENT_DATA_PARAMS,
    LINE_ITEM_PARAMS,
    count_completion,
    invoice_creation_off,
    item_objects,
    line_items,
    payment_intent_data,
)
from .store import create, emit, get, new_id, now, update

SESSION_PARAMS = (
    *LINE_ITEM_PARAMS,
    *INTENT_DATA_PARAMS,
    "cancel_url",
    "client_reference_id",
    "customer_email",
    "expires_at",
    "metadata",
    "mode",
    "success_url",
)
LIST_FILTERS = ("created", "customer", "payment_intent", "payment_link", "status")
DAY = 24 * 3600
# Stripe's bounds for expires_at: from 30 minutes to 24 hours after creation.
MIN_EXPIRY, MAX_EXPIRY = 30 * 60, DAY


def create_session(params: dict[str, Any], base_url: str) -> dict[str, Any]:
    """Create a Checkout Session in payment mode."""
    mode = text(params, "mode", required=True)
    if mode != "payment":
        raise invalid("The sandbox supports only mode=payment.", param="mode")
    items = line_items(params.get("line_items"))
    created = now()
    expires_at = integer(params, "expires_at") or created + DAY
    if not created + MIN_EXPIRY <= expires_at <= created + MAX_EXPIRY:
        raise invalid(
            "The `expires_at` timestamp must be between 30 minutes and 24 hours from "
            "Checkout Session creation.",
            param="expires_at",
        )
    return _open(
        items,
        base_url,
        created=created,
        expires_at=expires_at,
        meta=metadata(params) or {},
        intent_data=payment_intent_data(params),
        fields={
            "success_url": text(params, "success_url"),
            "cancel_url": text(params, "cancel_url"),
            "client_reference_id": text(params, "client_reference_id"),
            "customer_email": text(params, "customer_email"),
        },
    )


def open_link_session(link_id: str, base_url: str) -> dict[str, Any]:
    """Open a Checkout Session for a payment link, as a phone opening its URL does."""
    row = get("payment_link", link_id)
    link = row.data
    if not link["active"]:
        raise StripeError(
            410,
            "invalid_request_error",
            link["inactive_message"] or "This link is no longer active.",
        )
    created = now()
    return _open(
        row.private["line_items"],
        base_url,
        created=created,
        expires_at=created + DAY,
        # Stripe copies a link's metadata onto the sessions it opens.
        meta=dict(link["metadata"]),
        intent_data=link["payment_intent_data"],
        fields={"payment_link": link_id},
    )


def _open(
    items: list[dict[str, Any]],
    base_url: str,
    *,
    created: int,
    expires_at: int,
    meta: dict[str, str],
    intent_data: dict[str, Any] | None,
    fields: dict[str, Any],
) -> dict[str, Any]:
    session_id = new_id("cs_test_", 58)
    total = sum(i["price"]["unit_amount"] * i["quantity"] for i in items)
    currency = items[0]["price"]["currency"]
    check_charge(total, currency, what="The Checkout Session's total amount due", param=None)
    data = {
        "id": session_id,
        "object": "checkout.session",
        "adaptive_pricing": None,
        "after_expiration": None,
        "allow_promotion_codes": None,
        "amount_subtotal": total,
        "amount_total": total,
        "automatic_tax": {"enabled": False, "liability": None, "status": None, "provider": None},
        "billing_address_collection": None,
        "cancel_url": None,
        "client_reference_id": None,
        "client_secret": None,
        "collected_information": None,
        "consent": None,
        "consent_collection": None,
        "created": created,
        "currency": currency,
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "customer": None,
        "customer_account": None,
        "customer_creation": "if_required",
        "customer_details": None,
        "customer_email": None,
        "discounts": [],
        "expires_at": expires_at,
        "integration_identifier": None,
        "invoice": None,
        "invoice_creation": invoice_creation_off(),
        "livemode": False,
        "locale": None,
        "managed_payments": None,
        "metadata": meta,
        "mode": "payment",
        "origin_context": None,
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": "if_required",
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "permissions": None,
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": "open",
        "submit_type": None,
        "subscription": None,
        "success_url": None,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted_page",
        "url": f"{base_url}/checkout/{session_id}",
        "wallet_options": None,
        **fields,
    }
    return create(
        data, {"line_items": item_objects(items), "payment_intent_data": intent_data}
    ).data


def retrieve_session(session_id: str) -> dict[str, Any]:
    """Fetch a Checkout Session, expiring it first if its time has passed."""
    return _current(session_id).data


def session_line_items(session_id: str) -> list[dict[str, Any]]:
    """Return a Checkout Session's line items."""
    return get("checkout.session", session_id).private["line_items"]


def expire_session(session_id: str) -> dict[str, Any]:
    """Expire an open Checkout Session so it can no longer be paid."""
    row = _current(session_id)
    status = row.data["status"]
    if status != "open":
        raise invalid(
            'Only Checkout Sessions with a status in ["open"] can be expired. '
            f"This Checkout Session has a status of `{status}`.",
        )
    return _expire(row)


def _expire(row: SandboxObject) -> dict[str, Any]:
    data = update(row, status="expired", url=None)
    emit("checkout.session.expired", data)
    return data


def expire_due() -> int:
    """Expire every open session whose `expires_at` has passed; return how many."""
    due = db.session.scalars(
        select(SandboxObject).where(
            SandboxObject.type == "checkout.session",
            SandboxObject.data["status"].as_string() == "open",
            SandboxObject.data["expires_at"].as_integer() <= now(),
        )
    ).all()
    for row in due:
        _expire(row)
    return len(due)


def _current(session_id: str) -> SandboxObject:
    row = get("checkout.session", session_id)
    if row.data["status"] == "open" and row.data["expires_at"] <= now():
        _expire(row)
    return row


def pay_session(session_id: str, method: str = "card") -> dict[str, Any]:
    """Pay an open session as the visitor would: card (at once) or delayed (settles later)."""
    if method not in ("card", "delayed"):
        raise invalid("method must be card or delayed", param="method")
    row = _current(session_id)
    session = row.data
    if session["status"] != "open":
        raise invalid(
            f"This Checkout Session is {session['status']} and can no longer be paid.",
        )
    intent_data = row.private.get("payment_intent_data") or {}
    capture = intent_data.get("capture_method") or "automatic"
    if method == "delayed" and capture == "manual":
        raise invalid("Delayed payment methods cannot be captured manually.", param="method")
    intent = new_intent(
        amount=session["amount_total"],
        currency=session["currency"],
        capture_method=capture,
        meta=intent_data.get("metadata") or {},
        description=intent_data.get("description"),
    )
    intent = authorize(intent["id"], delayed=method == "delayed")
    # Stripe marks a session "paid" only once the funds are captured: an authorization
    # (manual capture) or a delayed method completes it as "unpaid".
    paid = intent["status"] == "succeeded"
    data = update(
        row,
        status="complete",
        payment_status="paid" if paid else "unpaid",
        payment_intent=intent["id"],
        customer_details={
            "address": None,
            "business_name": None,
            "email": "visitor@example.com",
            "individual_name": None,
            "name": "Sandbox Visitor",
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        },
    )
    emit("checkout.session.completed", data)
    if data["payment_link"]:
        count_completion(data["payment_link"])
    return data


def settle_session(session_id: str, outcome: str) -> dict[str, Any]:
    """Finish a delayed payment: `succeeded` or `failed`, emitting the async event."""
    from .intents import settle

    if outcome not in ("succeeded", "failed"):
        raise invalid("outcome must be succeeded or failed", param="outcome")
    row = get("checkout.session", session_id)
    session = row.data
    if session["status"] != "complete" or session["payment_status"] != "unpaid":
        raise invalid("This Checkout Session has no payment waiting to settle.")
    intent = settle(session["payment_intent"], outcome == "succeeded")
    if intent["status"] == "succeeded":
        data = update(row, payment_status="paid")
        emit("checkout.session.async_payment_succeeded", data)
    else:
        data = row.data
        emit("checkout.session.async_payment_failed", data)
    return data


def list_sessions_filter(params: dict[str, Any]) -> list[Any]:
    """Return where-clauses for the session list filters the app uses."""
    column = SandboxObject.data
    clauses = []
    for name in ("payment_link", "payment_intent", "status", "customer"):
        if value := text(params, name):
            clauses.append(column[name].as_string() == value)
    return clauses


def expire_due_quietly() -> int:
    """Expire due sessions, taking the write lock only when some are due."""
    with engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        offset = conn.scalar(
            select(SandboxSetting.value).where(SandboxSetting.key == "clock_offset")
        )
        moment = int(time.time() + float(offset or 0))
        due = conn.scalar(
            select(SandboxObject.seq)
            .where(
                SandboxObject.type == "checkout.session",
                SandboxObject.data["status"].as_string() == "open",
                SandboxObject.data["expires_at"].as_integer() <= moment,
            )
            .limit(1)
        )
    if due is None:
        return 0
    count = expire_due()
    db.session.commit()
    return count
