"""Products, prices and payment links, with Stripe's fields and rules."""

from __future__ import annotations

from typing import Any

from .amounts import check_charge
from .errors import invalid
from .forms import boolean, integer, metadata, text
from .store import create, emit, get, new_id, now, update

CAPTURE_METHODS = ("automatic", "automatic_async", "manual")
# The parameters each endpoint honours (Stripe accepts more; params.check refuses the rest).
PRODUCT_PARAMS = ("active", "description", "metadata", "name")
PRICE_PARAMS = ("active", "currency", "lookup_key", "metadata", "nickname", "product")
PRICE_PARAMS += ("unit_amount",)
PRICE_UPDATE_PARAMS = ("active", "metadata", "nickname")
LINE_ITEM_PARAMS = tuple(
    "line_items." + name
    for name in (
        "adjustable_quantity",
        "price",
        "price_data.currency",
        "price_data.product",
        "price_data.product_data.description",
        "price_data.product_data.metadata",
        "price_data.product_data.name",
        "price_data.unit_amount",
        "quantity",
    )
)
INTENT_DATA_PARAMS = tuple(
    "payment_intent_data." + name for name in ("capture_method", "description", "metadata")
)
LINK_UPDATE_PARAMS = (
    "active",
    "after_completion",
    "inactive_message",
    "metadata",
    "restrictions",
)
LINK_PARAMS = (*LINE_ITEM_PARAMS, *INTENT_DATA_PARAMS, *LINK_UPDATE_PARAMS[1:])


def invoice_creation_off() -> dict[str, Any]:
    """Return `invoice_creation` as the API has it with invoices off (an object, not null)."""
    return {
        "enabled": False,
        "invoice_data": {
            "account_tax_ids": None,
            "custom_fields": None,
            "description": None,
            "footer": None,
            "issuer": None,
            "metadata": {},
            "rendering_options": None,
        },
    }


def create_product(params: dict[str, Any]) -> dict[str, Any]:
    """Create a product."""
    created = now()
    data = {
        "id": new_id("prod_", 14),
        "object": "product",
        "active": boolean(params, "active") is not False,
        "created": created,
        "default_price": None,
        "description": text(params, "description"),
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": metadata(params) or {},
        "name": text(params, "name", required=True),
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": created,
        "url": None,
    }
    return create(data).data


def update_product(product_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """Update a product's name, description, active flag or metadata."""
    row = get("product", product_id)
    changes: dict[str, Any] = {"updated": now()}
    for name in ("name", "description"):
        if text(params, name) is not None:
            changes[name] = text(params, name)
    if boolean(params, "active") is not None:
        changes["active"] = boolean(params, "active")
    if (meta := metadata(params)) is not None:
        changes["metadata"] = merged_metadata(row.data["metadata"], meta)
    return update(row, **changes)


def create_price(params: dict[str, Any]) -> dict[str, Any]:
    """Create a one-time price for a product."""
    product = text(params, "product", required=True)
    get("product", product, param="product")
    amount = integer(params, "unit_amount", required=True)
    if amount < 0:
        raise invalid("This value must be greater than or equal to 0.", param="unit_amount")
    currency = _currency(params)
    data = {
        "id": new_id("price_"),
        "object": "price",
        "active": boolean(params, "active") is not False,
        "billing_scheme": "per_unit",
        "created": now(),
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": text(params, "lookup_key"),
        "metadata": metadata(params) or {},
        "nickname": text(params, "nickname"),
        "product": product,
        "recurring": None,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "one_time",
        "unit_amount": amount,
        "unit_amount_decimal": str(amount),
    }
    return create(data).data


def update_price(price_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """Update a price's active flag, nickname or metadata (amounts never change)."""
    row = get("price", price_id)
    changes: dict[str, Any] = {}
    if boolean(params, "active") is not None:
        changes["active"] = boolean(params, "active")
    if text(params, "nickname") is not None:
        changes["nickname"] = text(params, "nickname")
    if (meta := metadata(params)) is not None:
        changes["metadata"] = merged_metadata(row.data["metadata"], meta)
    return update(row, **changes)


def _currency(params: dict[str, Any]) -> str:
    currency = text(params, "currency", required=True).lower()
    if len(currency) != 3 or not currency.isalpha():
        raise invalid(f"Invalid currency: {currency}", param="currency")
    return currency


def line_items(entries: Any, param: str = "line_items") -> list[dict[str, Any]]:
    """Check `line_items[n][price|price_data, quantity]` and resolve each to its price."""
    if not isinstance(entries, list) or not entries:
        raise invalid(f"Missing required param: {param}.", param=param, code="parameter_missing")
    items = []
    for n, entry in enumerate(entries):
        where = f"{param}[{n}]"
        if not isinstance(entry, dict):
            raise invalid(f"Invalid object: {where}", param=where)
        quantity = integer(entry, "quantity", required=True)
        if quantity < 1:
            raise invalid("Quantity must be at least 1.", param=f"{where}[quantity]")
        adjustable = entry.get("adjustable_quantity") or {}
        if price_id := text(entry, "price"):
            price = get("price", price_id, param=f"{where}[price]").data
        elif isinstance(entry.get("price_data"), dict):
            price = _inline_price(entry["price_data"], f"{where}[price_data]")
        else:
            raise invalid(
                f"You must specify either `price` or `price_data` in {where}.", param=where
            )
        items.append(
            {
                "price": price,
                "quantity": quantity,
                "adjustable_quantity": {
                    "enabled": boolean(adjustable, "enabled") is True,
                    "maximum": integer(adjustable, "maximum"),
                    "minimum": integer(adjustable, "minimum"),
                },
            }
        )
    currencies = {item["price"]["currency"] for item in items}
    if len(currencies) > 1:
        raise invalid("All line items must have the same currency.", param=param)
    return items


def _inline_price(data: dict[str, Any], param: str) -> dict[str, Any]:
    product_data = data.get("product_data")
    if isinstance(product_data, dict):
        product = create_product(product_data)["id"]
    else:
        product = text(data, "product", required=True)
    return create_price(
        {
            "product": product,
            "unit_amount": data.get("unit_amount"),
            "currency": data.get("currency"),
        }
    )


def payment_intent_data(params: dict[str, Any]) -> dict[str, Any] | None:
    """Check a `payment_intent_data` hash (capture method, description, metadata)."""
    data = params.get("payment_intent_data")
    if data is None:
        return None
    if not isinstance(data, dict):
        raise invalid("Invalid hash", param="payment_intent_data")
    capture = text(data, "capture_method")
    if capture is not None and capture not in CAPTURE_METHODS:
        raise invalid(
            "Invalid payment_intent_data[capture_method]: must be one of "
            + ", ".join(CAPTURE_METHODS),
            param="payment_intent_data[capture_method]",
        )
    return {
        "capture_method": capture,
        "description": text(data, "description"),
        "metadata": metadata(data) or {},
        "setup_future_usage": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "transfer_group": None,
    }


def _after_completion(params: dict[str, Any]) -> dict[str, Any]:
    value = params.get("after_completion")
    if value is None:
        return {"hosted_confirmation": {"custom_message": None}, "type": "hosted_confirmation"}
    if not isinstance(value, dict):
        raise invalid("Invalid hash", param="after_completion")
    kind = text(value, "type", required=True)
    if kind == "hosted_confirmation":
        confirmation = value.get("hosted_confirmation") or {}
        return {
            "hosted_confirmation": {"custom_message": text(confirmation, "custom_message")},
            "type": kind,
        }
    if kind == "redirect":
        redirect = value.get("redirect") or {}
        return {"redirect": {"url": text(redirect, "url", required=True)}, "type": kind}
    raise invalid(f"Invalid after_completion[type]: {kind}", param="after_completion[type]")


def create_payment_link(params: dict[str, Any], base_url: str) -> dict[str, Any]:
    """Create a payment link; its URL opens the sandbox's hosted pay page."""
    items = line_items(params.get("line_items"))
    total = sum(i["price"]["unit_amount"] * i["quantity"] for i in items)
    # Checked when the link is made (Stripe's own rule may bite only at checkout; the
    # sandbox refuses early so that a catalog price under the minimum shows at sync).
    check_charge(
        total, items[0]["price"]["currency"], what="The payment link's total amount", param=None
    )
    link_id = new_id("plink_")
    data = {
        "id": link_id,
        "object": "payment_link",
        "active": True,
        "after_completion": _after_completion(params),
        "allow_promotion_codes": False,
        "application": None,
        "application_fee_amount": None,
        "application_fee_percent": None,
        "automatic_tax": {"enabled": False, "liability": None},
        "billing_address_collection": "auto",
        "consent_collection": None,
        "currency": items[0]["price"]["currency"],
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "customer_creation": "if_required",
        "inactive_message": text(params, "inactive_message"),
        "invoice_creation": invoice_creation_off(),
        "livemode": False,
        "managed_payments": None,
        "metadata": metadata(params) or {},
        "on_behalf_of": None,
        "payment_intent_data": payment_intent_data(params),
        "payment_method_collection": "always",
        "payment_method_options": None,
        "payment_method_types": None,
        "phone_number_collection": {"enabled": False},
        "restrictions": _restrictions(params),
        "shipping_address_collection": None,
        "shipping_options": [],
        "submit_type": "auto",
        "subscription_data": None,
        "tax_id_collection": {"enabled": False, "required": "never"},
        "transfer_data": None,
        "url": f"{base_url}/pay/{link_id}",
    }
    return create(data, {"line_items": items, "items": item_objects(items)}).data


def update_payment_link(link_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """Switch a payment link on or off, change its limit, messages or metadata."""
    row = get("payment_link", link_id)
    old = row.data
    changes: dict[str, Any] = {}
    if (active := boolean(params, "active")) is not None:
        changes["active"] = active
    if "inactive_message" in params:
        changes["inactive_message"] = text(params, "inactive_message")
    if "after_completion" in params:
        changes["after_completion"] = _after_completion(params)
    if (meta := metadata(params)) is not None:
        changes["metadata"] = merged_metadata(old["metadata"], meta)
    if "restrictions" in params:
        changes["restrictions"] = _restrictions(params, _completed(old))
    if at_limit({**old, **changes}):
        if changes.get("active") is True:
            raise invalid(
                "This payment link has reached its limit of completed sessions "
                f"({_completed(old)}); raise restrictions[completed_sessions][limit] to "
                "activate it again.",
                param="active",
            )
        # A limit lowered to the sessions already completed has been reached: the link stops.
        changes["active"] = False
    data = update(row, **changes)
    emit("payment_link.updated", data, _previous(old, data))
    return data


def count_completion(link_id: str) -> None:
    """Count a completed session against its link's limit; at the limit the link stops.

    Stripe counts a session when it sends checkout.session.completed, and deactivates the
    link when the count reaches the limit. Sessions already open stay open and can still
    complete, so the count can pass the limit.
    """
    row = get("payment_link", link_id)
    old = row.data
    if old["restrictions"] is None:
        return
    limit = old["restrictions"]["completed_sessions"]["limit"]
    counted = {"completed_sessions": {"count": _completed(old) + 1, "limit": limit}}
    changes: dict[str, Any] = {"restrictions": counted}
    if old["active"] and at_limit({**old, **changes}):
        changes["active"] = False
    data = update(row, **changes)
    if not data["active"] and old["active"]:
        emit("payment_link.updated", data, _previous(old, data))


def at_limit(link: dict[str, Any]) -> bool:
    """Tell whether a link's completed sessions have reached its limit."""
    limit = (link["restrictions"] or {}).get("completed_sessions")
    return limit is not None and limit["count"] >= limit["limit"]


def _completed(link: dict[str, Any]) -> int:
    return int(((link["restrictions"] or {}).get("completed_sessions") or {}).get("count", 0))


def _restrictions(params: dict[str, Any], count: int = 0) -> dict[str, Any] | None:
    value = params.get("restrictions")
    if value is None or value == "":
        return None
    where = "restrictions[completed_sessions][limit]"
    limit = integer(value.get("completed_sessions", {}), "limit", required=True)
    if limit < 1:
        raise invalid("This value must be greater than or equal to 1.", param=where)
    return {"completed_sessions": {"count": count, "limit": limit}}


def _previous(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    return {name: old[name] for name in new if old.get(name) != new[name]}


def merged_metadata(old: dict[str, str], changes: dict[str, str]) -> dict[str, str]:
    """Apply a metadata update as Stripe does: keys set, "" unsets a key, {} unsets all."""
    if not changes:
        return {}
    merged = {**old, **changes}
    return {key: value for key, value in merged.items() if value != ""}


def link_line_items(link_id: str) -> list[dict[str, Any]]:
    """Return a payment link's line items (Stripe shows them only when asked)."""
    return get("payment_link", link_id).private["items"]


def item_objects(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return checked line items as Stripe's `item` objects."""
    return [
        {
            "id": new_id("li_"),
            "object": "item",
            "adjustable_quantity": item["adjustable_quantity"],
            "amount_discount": 0,
            "amount_subtotal": item["price"]["unit_amount"] * item["quantity"],
            "amount_tax": 0,
            "amount_total": item["price"]["unit_amount"] * item["quantity"],
            "currency": item["price"]["currency"],
            "description": get("product", item["price"]["product"]).data["name"],
            "metadata": {},
            "price": item["price"],
            "quantity": item["quantity"],
        }
        for item in items
    ]
