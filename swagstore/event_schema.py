"""The shape of a Stripe event, checked before anything acts on it.

A signed event is still untrusted input: a wrong type or an absurd number must be refused
with a reason (400) before it reaches a handler, never stored or turned into a 500. Only
the fields the handlers read are checked; Stripe adds fields freely and those pass. Amounts
and quantities must be whole numbers in a range that fits every column that keeps them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Stripe's own ceiling is 8 digits in most currencies; this one fits a 32-bit column.
MAX_AMOUNT = 2**31 - 1
# Stripe lets a buyer choose at most 999 of one line item.
MAX_QUANTITY = 999
MAX_ID = 255
MAX_METADATA_VALUE = 500
MAX_SESSIONS = 10**9  # a payment link's count or limit of completed sessions
MAX_CREATED = 253402300799  # 9999-12-31 in Unix seconds: the last instant a datetime holds
CURRENCY = re.compile(r"[a-z]{3}")

AMOUNTS = ("amount", "amount_total", "amount_subtotal", "amount_capturable", "amount_received")
# The objects whose fields the store reads. Other events are checked as envelopes only: an
# event of a type the store ignores must not be refused (Stripe would retry it for days).
READ = ("checkout.session.", "payment_intent.", "refund.", "charge.", "payment_link.")


class Invalid(ValueError):
    """An event's shape or numbers are not what Stripe sends; the message says which."""


def check(event: Any) -> dict[str, Any]:
    """Return the event if its envelope and the fields handlers read are sound; else raise."""
    if not isinstance(event, dict):
        raise Invalid(f"the event must be a JSON object, not {_kind(event)}")
    _text(event, "id", required=True, limit=MAX_ID)
    _text(event, "type", required=True, limit=100)
    _whole(event, "created", 0, MAX_CREATED, "event")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise Invalid("data.object must be a JSON object")
    if event["type"].startswith(READ):
        _object(data["object"])
    return event


def _object(obj: dict[str, Any]) -> None:
    where = "data.object"
    _text(obj, "id", limit=MAX_ID, where=where)
    for key in AMOUNTS:
        _whole(obj, key, 0, MAX_AMOUNT, where)
    if obj.get("currency") is not None and not (
        isinstance(obj["currency"], str) and CURRENCY.fullmatch(obj["currency"])
    ):
        raise Invalid(f"{where}.currency must be a three-letter currency code")
    for key in ("status", "payment_status"):
        _text(obj, key, limit=64, where=where)
    for key in ("refunded", "active"):
        if key in obj and not isinstance(obj[key], bool):
            raise Invalid(f"{where}.{key} must be true or false")
    _completed_sessions(obj.get("restrictions"), f"{where}.restrictions")
    _reference(obj, "payment_intent", where)
    _metadata(obj.get("metadata"), f"{where}.metadata")
    _line_items(obj.get("line_items"), f"{where}.line_items")


def _metadata(meta: Any, where: str) -> None:
    if meta is None:
        return
    if not isinstance(meta, dict):
        raise Invalid(f"{where} must be a JSON object, not {_kind(meta)}")
    for key, value in meta.items():
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE:
            name = str(key)[:40]
            raise Invalid(
                f"{where}.{name} must be a string of at most {MAX_METADATA_VALUE} characters"
            )
    for key in ("sku", "store"):
        if len(meta.get(key, "")) > 64:
            raise Invalid(f"{where}.{key} is longer than 64 characters")
    if "hold" in meta and not _digits(meta["hold"], 18):
        raise Invalid(f"{where}.hold must be a hold number, not {_show(meta['hold'])}")
    if "quantity" in meta:
        quantity = meta["quantity"]
        if not _digits(quantity, 3) or not 1 <= int(quantity) <= MAX_QUANTITY:
            raise Invalid(f"{where}.quantity must be a whole number from 1 to {MAX_QUANTITY}")


def _completed_sessions(restrictions: Any, where: str) -> None:
    """Check a payment link's count and limit of completed sessions, when it has them."""
    if restrictions is None:
        return
    counted = restrictions.get("completed_sessions") if isinstance(restrictions, dict) else None
    if counted is None:
        if not isinstance(restrictions, dict):
            raise Invalid(f"{where} must be a JSON object, not {_kind(restrictions)}")
        return
    where = f"{where}.completed_sessions"
    if not isinstance(counted, dict):
        raise Invalid(f"{where} must be a JSON object, not {_kind(counted)}")
    _whole(counted, "count", 0, MAX_SESSIONS, where)
    _whole(counted, "limit", 1, MAX_SESSIONS, where)


def _line_items(items: Any, where: str) -> None:
    if items is None:
        return
    if not isinstance(items, dict) or not isinstance(items.get("data", []), list):
        raise Invalid(f"{where} must be a list object with a data array")
    for n, item in enumerate(items.get("data", [])):
        if not isinstance(item, dict):
            raise Invalid(f"{where}.data[{n}] must be a JSON object")
        _whole(item, "quantity", 1, MAX_QUANTITY, f"{where}.data[{n}]")


def _reference(obj: dict[str, Any], key: str, where: str) -> None:
    """Check a field Stripe sends as an id, or as the object when expanded."""
    value = obj.get(key)
    if isinstance(value, dict):
        _text(value, "id", required=True, limit=MAX_ID, where=f"{where}.{key}")
    elif value is not None and not (isinstance(value, str) and len(value) <= MAX_ID):
        raise Invalid(f"{where}.{key} must be an id or an object")


def _text(
    obj: Mapping[str, Any], key: str, *, required: bool = False, limit: int, where: str = ""
) -> None:
    value = obj.get(key)
    name = f"{where}.{key}" if where else key
    if value is None:
        if required:
            raise Invalid(f"{name} is missing")
        return
    if not isinstance(value, str) or not value or len(value) > limit:
        raise Invalid(f"{name} must be a string of 1 to {limit} characters")


def _whole(obj: Mapping[str, Any], key: str, low: int, high: int, where: str) -> None:
    value = obj.get(key)
    if value is None:
        return
    # bool is an int in Python, and 1e3 arrives as a float: neither is a count of anything.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise Invalid(
            f"{where}.{key} must be a whole number from {low} to {high}, not {_show(value)}"
        )


def _digits(value: Any, most: int) -> bool:
    return isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= most


def _kind(value: Any) -> str:
    names = {list: "an array", str: "a string", int: "a number", float: "a number"}
    return names.get(type(value), "null" if value is None else type(value).__name__)


def _show(value: Any) -> str:
    """Quote a bad value for the reason, cut short: the reason goes back to the sender."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
