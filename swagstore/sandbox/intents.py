"""PaymentIntents and refunds, with Stripe's statuses, errors and events."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ..models import db
from .amounts import check_charge
from .errors import StripeError, invalid, unexpected_state
from .forms import integer, metadata, text
from .models import SandboxObject
from .store import create, emit, get, new_id, now, record, update

CANCELABLE = (
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
    "processing",
)
CANCEL_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
INTENT_PARAMS = ("amount", "capture_method", "currency", "description", "metadata")
REFUND_PARAMS = ("amount", "charge", "metadata", "payment_intent", "reason")


def new_intent(
    *,
    amount: int,
    currency: str,
    capture_method: str,
    meta: dict[str, str],
    description: str | None,
) -> dict[str, Any]:
    """Store a new PaymentIntent waiting for a payment method, and announce it."""
    intent_id = new_id("pi_")
    data = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": capture_method,
        "client_secret": f"{intent_id}_secret_{new_id('', 25)}",
        "confirmation_method": "automatic",
        "created": now(),
        "currency": currency,
        "customer": None,
        "customer_account": None,
        "description": description,
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "managed_payments": None,
        "metadata": meta,
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "requires_payment_method",
        "transfer_data": None,
        "transfer_group": None,
    }
    data = create(data).data
    emit("payment_intent.created", data)
    return data


def create_intent(params: dict[str, Any]) -> dict[str, Any]:
    """Create a PaymentIntent (the app's own card form confirms it later)."""
    amount = integer(params, "amount", required=True)
    currency = text(params, "currency", required=True).lower()
    check_charge(amount, currency, param="amount")
    capture = text(params, "capture_method") or "automatic_async"
    if capture not in ("automatic", "automatic_async", "manual"):
        raise invalid(f"Invalid capture_method: {capture}", param="capture_method")
    return new_intent(
        amount=amount,
        currency=currency,
        capture_method=capture,
        meta=metadata(params) or {},
        description=text(params, "description"),
    )


def retrieve_intent(intent_id: str) -> dict[str, Any]:
    """Fetch a PaymentIntent."""
    return get("payment_intent", intent_id).data


def authorize(intent_id: str, *, delayed: bool = False) -> dict[str, Any]:
    """Pay a PaymentIntent with a test card: hold it (manual), charge it, or start a delay."""
    row = get("payment_intent", intent_id)
    intent = row.data
    if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
        raise unexpected_state(
            f"This PaymentIntent's status is {intent['status']}; it cannot be confirmed."
        )
    method = {"payment_method": new_id("pm_"), "latest_charge": new_id("ch_")}
    if delayed:
        data = update(row, status="processing", **method)
        emit("payment_intent.processing", data)
        return data
    if intent["capture_method"] == "manual":
        data = update(row, status="requires_capture", amount_capturable=intent["amount"], **method)
        record("authorize", data, data["amount"])
        emit("payment_intent.amount_capturable_updated", data)
        return data
    data = update(row, status="succeeded", amount_received=intent["amount"], **method)
    record("charge", data, data["amount"])
    emit("payment_intent.succeeded", data)
    return data


def settle(intent_id: str, succeeded: bool) -> dict[str, Any]:
    """Finish a delayed payment."""
    row = get("payment_intent", intent_id)
    if row.data["status"] != "processing":
        raise unexpected_state(
            f"This PaymentIntent's status is {row.data['status']}; it is not processing."
        )
    if succeeded:
        data = update(row, status="succeeded", amount_received=row.data["amount"])
        record("charge", data, data["amount"])
        emit("payment_intent.succeeded", data)
        return data
    error = {"code": "card_declined", "message": "Your card was declined.", "type": "card_error"}
    data = update(row, status="requires_payment_method", last_payment_error=error)
    record("fail", data, 0)
    emit("payment_intent.payment_failed", data)
    return data


def capture_intent(intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """Capture an authorized PaymentIntent (all of it, or `amount_to_capture`)."""
    row = get("payment_intent", intent_id)
    intent = row.data
    if intent["status"] != "requires_capture":
        raise unexpected_state(
            "This PaymentIntent could not be captured because it has a status of "
            f"{intent['status']}. Only a PaymentIntent with one of the following statuses "
            "may be captured: requires_capture."
        )
    amount = _positive(params, "amount_to_capture", default=intent["amount_capturable"])
    if amount > intent["amount_capturable"]:
        raise invalid(
            "The amount to capture must be less than or equal to the amount capturable.",
            param="amount_to_capture",
            code="amount_too_large",
        )
    data = update(row, status="succeeded", amount_capturable=0, amount_received=amount)
    record("capture", data, amount)
    emit("payment_intent.succeeded", data)
    return data


def cancel_intent(intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """Cancel a PaymentIntent, voiding any authorization."""
    row = get("payment_intent", intent_id)
    intent = row.data
    if intent["status"] not in CANCELABLE:
        raise unexpected_state(
            "You cannot cancel this PaymentIntent because it has a status of "
            f"{intent['status']}. Only a PaymentIntent with one of the following statuses may "
            f"be canceled: {', '.join(CANCELABLE)}."
        )
    reason = text(params, "cancellation_reason")
    if reason is not None and reason not in CANCEL_REASONS:
        raise invalid(f"Invalid cancellation_reason: {reason}", param="cancellation_reason")
    data = update(
        row, status="canceled", amount_capturable=0, canceled_at=now(), cancellation_reason=reason
    )
    record("cancel", data, intent["amount_capturable"])
    emit("payment_intent.canceled", data)
    return data


def create_refund(params: dict[str, Any]) -> dict[str, Any]:
    """Refund a succeeded PaymentIntent (or its charge), in full or in part."""
    intent = _refund_target(params)
    if intent["status"] != "succeeded":
        raise StripeError(
            400,
            "invalid_request_error",
            f"This PaymentIntent ({intent['id']}) does not have a successful charge to refund.",
            code="charge_not_refundable" if intent["status"] != "requires_capture" else None,
        )
    refunded = refunded_amount(intent["id"])
    left = intent["amount_received"] - refunded
    if left <= 0:
        raise invalid(
            f"Charge {intent['latest_charge']} has already been refunded.",
            code="charge_already_refunded",
        )
    amount = _positive(params, "amount", default=left)
    if amount > left:
        raise invalid(
            f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
            param="amount",
            code="amount_too_large",
        )
    reason = text(params, "reason")
    if reason is not None and reason not in REFUND_REASONS:
        raise invalid(f"Invalid reason: {reason}", param="reason")
    data = {
        "id": new_id("re_"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": None,
        "charge": intent["latest_charge"],
        "created": now(),
        "currency": intent["currency"],
        "customer": None,
        "customer_account": None,
        "destination_details": {"card": {"type": "refund"}, "type": "card"},
        "metadata": metadata(params) or {},
        "payment_intent": intent["id"],
        "payment_method": intent["payment_method"],
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }
    data = create(data).data
    record("refund", intent, amount)
    emit("refund.created", data)
    return data


def _positive(params: dict[str, Any], name: str, *, default: int) -> int:
    value = integer(params, name)
    if value is None:
        return default
    if value < 1:
        raise invalid("This value must be greater than or equal to 1.", param=name)
    return value


def _refund_target(params: dict[str, Any]) -> dict[str, Any]:
    if intent_id := text(params, "payment_intent"):
        return get("payment_intent", intent_id, param="payment_intent").data
    charge = text(params, "charge")
    if not charge:
        raise invalid(
            "One of the following params should be provided for this request: "
            "payment_intent or charge.",
            code="parameter_missing",
        )
    row = db.session.scalar(
        select(SandboxObject).where(
            SandboxObject.type == "payment_intent",
            SandboxObject.data["latest_charge"].as_string() == charge,
        )
    )
    if row is None:
        raise invalid(f"No such charge: '{charge}'", param="charge", code="resource_missing")
    return row.data


def refunded_amount(intent_id: str) -> int:
    """Return how much of a PaymentIntent has been refunded so far."""
    total = db.session.scalar(
        select(func.sum(SandboxObject.data["amount"].as_integer())).where(
            SandboxObject.type == "refund",
            SandboxObject.data["payment_intent"].as_string() == intent_id,
        )
    )
    return int(total or 0)


def refund_filter(params: dict[str, Any]) -> list[Any]:
    """Return where-clauses for the refund list filters (payment_intent, charge)."""
    return [
        SandboxObject.data[name].as_string() == value
        for name in ("payment_intent", "charge")
        if (value := text(params, name))
    ]


def confirm_with_secret(intent_id: str, client_secret: str) -> dict[str, Any]:
    """Confirm a PaymentIntent from its card form; only its client secret may do so."""
    intent = get("payment_intent", intent_id).data
    if not client_secret or client_secret != intent["client_secret"]:
        raise invalid(
            "The client_secret provided does not match the client_secret associated with "
            "the PaymentIntent.",
            param="client_secret",
        )
    return authorize(intent_id)
