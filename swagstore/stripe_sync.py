"""Stripe sync: the Stripe product, price and payment link of every item of a store.

`sync_stripe` (the `sync-stripe` command) brings Stripe in line with the database, one
item at a time. It never calls Stripe inside a database transaction: each read ends
before the call, and each id Stripe returns is committed at once. Every create carries
an idempotency key derived from what it creates, and every link switch one keyed by the
stock log position, so a crash mid-sync followed by a rerun creates nothing twice. A
failed call is reported with its item, the call, and whether a rerun can help; an item
Stripe refuses does not stop the others, an unreachable Stripe or a refused key does.

Every link carries Stripe's own guard, `restrictions.completed_sessions.limit`, kept at the
sessions Stripe has counted plus the units available (`align_link`): with the booth offline,
Stripe switches the link off by itself once the units on hand have been paid for. A card
sale through the link moves the count and the stock together, so the limit stays; every
other stock change re-aligns it through a `sync_link` task (tasks.py).

Each Stripe product is named as staff see the item ("Logo T-shirt, L", `product_names`), so
the buyer's checkout page, Stripe's confirmation and its receipt name the size staff look for.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update

from . import payments
from .models import PaymentLink, Product, Sale, Stock, db, idempotency_key, utcnow
from .offer import label, last_event_id, variant_keys

SOLD_OUT_MESSAGE = "Sold out at the booth, sorry!"
# Stripe's own confirmation page, for a booth whose phones cannot reach it: what to show at
# the table (it names the item, size and all: staff match it to the sale), and what happens
# to the unlucky buyer whose unit sold out a moment earlier.
THANKS_MESSAGES = {
    "automatic": "Thank you! Show this screen at the Swagstore table to collect your {item}. "
    "If it sold out a moment before you paid, your payment is refunded automatically: "
    "there is nothing to do.",
    "manual": "Thank you! Show this screen at the Swagstore table to collect your {item}. "
    "If it sold out a moment before you paid, your card is not charged: the payment is "
    "cancelled automatically.",
}
# Stripe's maxLength for after_completion[hosted_confirmation][custom_message].
CUSTOM_MESSAGE_MAX = 500


def thanks_message(capture: str, item: str) -> str:
    """Return Stripe's confirmation message naming the item, within Stripe's length limit."""
    template = THANKS_MESSAGES[capture]
    room = CUSTOM_MESSAGE_MAX - len(template.format(item=""))
    if len(item) > room:
        # Cut from the middle: the start names the item, the end its size.
        head = (room - 1) // 2
        item = item[:head] + "…" + item[len(item) - (room - 1 - head) :]
    return template.format(item=item)


def after_completion(capture: str, public_url: str | None, item: str) -> dict[str, Any]:
    """Return where a payment link sends the buyer after paying for `item` (its label).

    With a PUBLIC_URL phones reach, the buyer's page of this booth (it follows the sale and
    shows the pickup code, or that the payment was refunded); else Stripe's confirmation.
    """
    if public_url:
        url = f"{public_url.rstrip('/')}/paid/{{CHECKOUT_SESSION_ID}}"
        return {"type": "redirect", "redirect": {"url": url}}
    message = thanks_message(capture, item)
    return {"type": "hosted_confirmation", "hosted_confirmation": {"custom_message": message}}


def product_names() -> dict[str, str]:
    """Return every product's name on Stripe: its label, as staff see it ("Logo T-shirt, L").

    Labelled across the whole catalog, not one store's stock (`offer.item_labels`): one
    Stripe product serves every store selling the SKU, so two booths stocking different
    sizes of a group never rename it back and forth.
    """
    products = db.session.execute(
        select(Product.sku, Product.name, Product.attributes, Product.group)
    ).all()
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for _, _, attributes, group in products:
        if group:
            groups[group].append(attributes or {})
    return {
        sku: label(name, attributes or {}, variant_keys(groups[group]) if group else [])
        for sku, name, attributes, group in products
    }


def _confirmation_of(link: Any) -> dict[str, Any]:
    """Return a link's after_completion in the shape after_completion() builds."""
    after = link.after_completion
    if after is None:
        return {}
    if after.type == "redirect":
        return {"type": "redirect", "redirect": {"url": after.redirect.url}}
    message = after.hosted_confirmation.custom_message if after.hosted_confirmation else None
    return {"type": after.type, "hosted_confirmation": {"custom_message": message}}


# Each gateway call sync makes, as a failure names it.
CALLS = {
    "create_product": "create its product (POST /v1/products)",
    "retrieve_product": "read its product (GET /v1/products/…)",
    "update_product": "rename its product (POST /v1/products/…)",
    "create_price": "create its price (POST /v1/prices)",
    "retrieve_price": "read its price (GET /v1/prices/…)",
    "create_payment_link": "create its payment link (POST /v1/payment_links)",
    "retrieve_payment_link": "read its payment link (GET /v1/payment_links/…)",
    "set_payment_link_active": "switch its payment link (POST /v1/payment_links/…)",
    "update_payment_link": "update its after-payment page (POST /v1/payment_links/…)",
}


@dataclass(frozen=True)
class Failure:
    """A Stripe call that failed for one item: which, why, and what to do about it."""

    call: str
    reason: str
    rerun_helps: bool
    # True when the items after this one would fail the same way (no Stripe, or no key).
    stops: bool
    fix: str

    @classmethod
    def of(cls, method: str, error: payments.PaymentsError) -> Failure:
        """Describe a failed gateway call."""
        call = CALLS.get(method, method.replace("_", " "))
        # The SDK's network errors run to several lines; the last one says what happened.
        lines = str(error).strip().splitlines() or [type(error).__name__]
        reason = lines[-1].rstrip(".")
        if error.code:
            reason += f" ({error.code})"
        if isinstance(error, payments.Transient):
            fix = "run sync-stripe again once Stripe answers: it picks up where this one stopped"
            return cls(call, reason, rerun_helps=True, stops=True, fix=fix)
        if error.status in (401, 403):
            fix = (
                "fix STRIPE_SECRET_KEY (a restricted key needs the permissions listed in the "
                "README; `flask --app swagstore check` names any it lacks), then run it again"
            )
            return cls(call, reason, rerun_helps=False, stops=True, fix=fix)
        if error.status == 404:
            fix = (
                "its Stripe object is not on this account (was the database synced with "
                "another key?): use that key, or a fresh database"
            )
        else:
            fix = "fix the item in the catalog and load-catalog, then run sync-stripe again"
        return cls(call, reason, rerun_helps=False, stops=False, fix=fix)


class _CallFailed(Exception):
    def __init__(self, method: str, error: payments.PaymentsError) -> None:
        super().__init__(method)
        self.method = method
        self.error = error


class _Named:
    """The gateway, with each failed call raised under its method's name."""

    def __init__(self, gateway: Any) -> None:
        self._gateway = gateway

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._gateway, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                try:
                    return method(*args, **kwargs)
                except payments.Transient as e:
                    if not e.key_spent:
                        raise
                    # Stripe replays a 500 it kept to its key for a day. Once more under a
                    # successor key (every keyed method takes its key last), itself derived,
                    # so a rerun after a crash still replays the call rather than repeat it.
                    return method(*args[:-1], f"{args[-1]}-again", **kwargs)
            except payments.PaymentsError as e:
                raise _CallFailed(name, e) from e

        return call


@dataclass
class SyncResult:
    """What sync_item did for one item, for the one line sync-stripe prints."""

    sku: str
    link_id: str = ""
    active: bool = False
    created: list[str] = field(default_factory=list)
    switched: str | None = None  # "on" | "off" when an existing link was flipped
    retired: str | None = None  # the replaced link, switched off
    confirmation: bool = False  # the existing link's after-payment page was changed
    renamed: str | None = None  # the existing product's new name on Stripe
    failure: Failure | None = None

    @property
    def changed(self) -> bool:
        """Tell whether anything on Stripe changed for this item."""
        return bool(
            self.created or self.renamed or self.switched or self.retired or self.confirmation
        )

    def describe(self) -> str:
        """Return one line saying what changed, or what failed."""
        if self.failure is not None:
            f = self.failure
            rerun = "a rerun can help" if f.rerun_helps else "a rerun will not help"
            return f"{self.sku}: FAILED to {f.call}: {f.reason}; {rerun}: {f.fix}"
        state = "active" if self.active else "inactive: sold out"
        done = []
        if self.created:
            done.append("created " + ", ".join(self.created))
        if self.renamed:
            done.append(f'product renamed "{self.renamed}"')
        if self.switched:
            done.append(f"switched {self.switched}")
        if self.confirmation:
            done.append("after-payment page updated")
        if self.retired:
            done.append(f"old link {self.retired} switched off")
        return f"{self.sku}: {'; '.join(done) or 'up to date'} -> {self.link_id} ({state})"


@dataclass(frozen=True)
class LinkState:
    """A payment link as Stripe has it: on or off, and its completed-sessions guard."""

    active: bool
    count: int
    limit: int | None

    @property
    def stopped_at_limit(self) -> bool:
        """Tell whether Stripe has switched the link off because its limit was reached."""
        return not self.active and self.limit is not None and self.count >= self.limit

    def matches(self, available: int) -> bool:
        """Tell whether the link sells exactly `available` more units (none: it is off)."""
        if self.limit is None:
            return False
        if available > 0:
            return self.active and self.limit - self.count == available
        # Off is enough: switching it on again always sets the limit first.
        return not self.active


def link_state(link: Any) -> LinkState:
    """Return the state of a Stripe payment link object."""
    counted = link.restrictions.completed_sessions if link.restrictions else None
    if counted is None:
        return LinkState(bool(link.active), 0, None)
    return LinkState(bool(link.active), int(counted.count), int(counted.limit))


def wanted_limit(count: int, available: int) -> int:
    """Return the limit that lets exactly `available` more sessions complete after `count`."""
    # Stripe takes no limit under 1, and none is set below its count: a link with nothing
    # left is switched off anyway.
    return max(count + max(available, 0), 1)


def recorded_sessions(link_id: str) -> int:
    """Count the link's completed sessions this store has recorded: its card sales since."""
    link = PaymentLink.__table__
    return db.session.scalar(
        select(func.count(Sale.id))
        .join(link, (link.c.sku == Sale.sku) & (link.c.store == Sale.store))
        .where(
            link.c.id == link_id,
            Sale.checkout_session_id.is_not(None),
            Sale.hold_id.is_(None),
            Sale.created_at >= link.c.created_at,
        )
    )


def align_link(
    gateway: Any, link_id: str, available: int, key: str, recorded: int | None = None
) -> LinkState:
    """Make a link on Stripe sell exactly `available` more units; return its state after.

    Reads Stripe's count of completed sessions now, then sets the limit to count +
    available and the link on (units left) or off, in one call, made only when something
    differs. One call, because Stripe refuses to switch on a link at its limit: raising the
    limit and switching on must go together. `recorded`: the sessions of the link the store
    has recorded; those Stripe counted beyond it (their events not applied yet, say after
    the booth was offline) will each take a unit when they arrive, so they are not sold
    again. Call it outside any transaction.
    """
    state = link_state(gateway.retrieve_payment_link(link_id))
    if recorded is not None:
        available -= max(0, state.count - recorded)
    if state.matches(available):
        return state
    active, limit = available > 0, wanted_limit(state.count, available)
    params: dict[str, Any] = {"restrictions": {"completed_sessions": {"limit": limit}}}
    if state.active != active:
        params["active"] = active
    key = f"{key}-{limit}-{'on' if active else 'off'}"
    return link_state(gateway.update_payment_link(link_id, params, key))


def save_link_state(link_id: str, state: LinkState, capture: str | None = None) -> None:
    """Record a link's state on Stripe (and its capture method, when given), committed."""
    values: dict[str, Any] = {
        "active": state.active,
        "session_count": state.count,
        "session_limit": state.limit,
    }
    if capture is not None:
        values["capture_method"] = capture
    db.session.execute(update(PaymentLink).where(PaymentLink.id == link_id).values(**values))
    db.session.commit()


@dataclass
class SyncRun:
    """What sync_stripe did: one result per item tried, and the items it never reached."""

    results: list[SyncResult]
    not_tried: list[str]

    @property
    def failed(self) -> list[SyncResult]:
        """Return the items whose sync failed."""
        return [r for r in self.results if r.failure is not None]


def sync_stripe(
    store: str,
    capture: str,
    gateway: Any,
    echo: Callable[[str], Any] = print,
    *,
    public_url: str | None = None,
    link_origin: str | None = None,
) -> SyncRun:
    """Create or find the Stripe product, price and payment link of every item of a store.

    `public_url` is the PUBLIC_URL phones reach, if any: links then send buyers there.
    `link_origin` (the sandbox's PUBLIC_URL) is where phones reach the payment pages: a
    link whose URL points elsewhere (an old port, another address) is replaced.
    """
    skus = db.session.scalars(
        select(Product.sku)
        .join(Stock, Stock.sku == Product.sku)
        .where(Stock.store == store)
        .order_by(Product.position, Product.sku)
    ).all()
    names = product_names()
    db.session.commit()
    run = SyncRun([], [])
    named = _Named(gateway)
    for n, sku in enumerate(skus):
        try:
            result = sync_item(
                sku,
                store,
                capture,
                named,
                name=names[sku],
                public_url=public_url,
                link_origin=link_origin,
            )
        except _CallFailed as e:
            db.session.rollback()
            result = SyncResult(sku, failure=Failure.of(e.method, e.error))
        run.results.append(result)
        echo(result.describe())
        if result.failure is not None and result.failure.stops:
            run.not_tried = list(skus[n + 1 :])
            break
    return run


def sync_item(
    sku: str,
    store: str,
    capture: str,
    gateway: Any,
    *,
    name: str,
    public_url: str | None = None,
    link_origin: str | None = None,
) -> SyncResult:
    """Bring one item's Stripe product, price and link in line with the database.

    `name` is the product's name on Stripe (`product_names`). Commits as it goes and never
    calls Stripe inside a transaction: each id is stored as soon as Stripe returns it, and
    each create carries an idempotency key derived from what it creates, so a crash
    mid-sync followed by a rerun creates nothing twice.
    """
    result = SyncResult(sku)
    product = db.session.get(Product, sku)
    description = product.description
    amount, currency = product.price, product.currency
    product_id, price_id = product.stripe_product_id, product.stripe_price_id
    db.session.commit()

    if product_id is None:
        params: dict[str, Any] = {"name": name, "metadata": {"sku": sku}}
        if description:
            params["description"] = description
        product_id = gateway.create_product(params, _key(store, "product", sku, params)).id
        _save_product_ids(sku, product_id, price_id)
        result.created.append("product")
    else:
        result.renamed = _rename(gateway, store, sku, product_id, name)

    if price_id is not None:
        price = gateway.retrieve_price(price_id)
        if (price.unit_amount, price.currency, price.product) != (amount, currency, product_id):
            price_id = None
    if price_id is None:
        params = {
            "product": product_id,
            "unit_amount": amount,
            "currency": currency,
            "metadata": {"sku": sku},
        }
        price_id = gateway.create_price(params, _key(store, "price", sku, params)).id
        _save_product_ids(sku, product_id, price_id)
        result.created.append("price")

    confirmation = after_completion(capture, public_url, name)
    _sync_link(sku, store, capture, price_id, gateway, result, confirmation, link_origin)
    return result


def _sync_link(
    sku: str,
    store: str,
    capture: str,
    price_id: str,
    gateway: Any,
    result: SyncResult,
    confirmation: dict[str, Any],
    link_origin: str | None = None,
) -> None:
    stock = db.session.get(Stock, (sku, store))
    # Off sale: the link sells nothing, whatever is on the shelf.
    available = 0 if stock.off_sale else max(stock.available, 0)
    current = _current_link(sku, store)
    old_id, old_price = (current.id, current.price_id) if current else (None, None)
    version = last_event_id()
    db.session.commit()

    if old_id is not None:
        link = gateway.retrieve_payment_link(old_id)
        intent_data = link.payment_intent_data
        link_capture = (intent_data.capture_method if intent_data else None) or "automatic"
        if old_price == price_id and link_capture == capture and _at(link.url, link_origin):
            recorded = recorded_sessions(old_id)
            db.session.commit()
            key = idempotency_key(store, "link", old_id, version)
            state = align_link(gateway, old_id, available, key, recorded)
            result.link_id, result.active = old_id, state.active
            if state.active != link.active:
                result.switched = "on" if state.active else "off"
            if _confirmation_of(link) != confirmation:
                # Setting a value is safe to repeat; a fresh key, so changing it back is
                # not taken for a replay of the first change.
                key = idempotency_key(store, "after", old_id, uuid.uuid4().hex)
                gateway.update_payment_link(old_id, {"after_completion": confirmation}, key)
                result.confirmation = True
            # A link made before its capture method was recorded gets it from Stripe now.
            save_link_state(old_id, state, link_capture)
            return
        # A new price, capture method or address needs a new link; the old one stops first.
        if link.active:
            _switch(gateway, store, old_id, False, version)
        result.retired = old_id

    params = {
        "line_items": [
            {"price": price_id, "quantity": 1, "adjustable_quantity": {"enabled": False}}
        ],
        "metadata": {"sku": sku, "store": store},
        "payment_intent_data": {
            "capture_method": capture,
            "metadata": {"sku": sku, "store": store},
        },
        # Born with a limit, so no link of ours is ever without one; align_link sets the
        # real one below. A constant here keeps the create's idempotency key stable.
        "restrictions": {"completed_sessions": {"limit": 1}},
        "inactive_message": SOLD_OUT_MESSAGE,
        "after_completion": confirmation,
    }
    # The address is part of the key: a link for another address is another link.
    keyed = params if link_origin is None else {**params, "origin": link_origin}
    link = gateway.create_payment_link(params, _key(store, "link", sku, keyed))
    # align_link reads the link as it is now (a replayed create answers it as it was then).
    key = idempotency_key(store, "link", link.id, version)
    state = align_link(gateway, link.id, available, key)
    result.created.append("link")
    result.link_id, result.active = link.id, state.active
    if old_id is not None:
        retired = db.session.get(PaymentLink, old_id)
        retired.active = False
        retired.retired_at = utcnow()
        db.session.flush()
    db.session.add(
        PaymentLink(
            id=link.id,
            sku=sku,
            store=store,
            url=link.url,
            price_id=price_id,
            active=state.active,
            capture_method=capture,
            session_count=state.count,
            session_limit=state.limit,
        )
    )
    db.session.commit()


def _rename(gateway: Any, store: str, sku: str, product_id: str, name: str) -> str | None:
    """Give a product synced under another name its name; return it, or None if it had it."""
    product = gateway.retrieve_product(product_id)
    if product.name == name:
        return None
    params = {"name": name}
    # Keyed by the product as Stripe last changed it: a rerun after a crash replays this
    # rename, and a later one (even back to an old name) is a new request.
    keyed = {**params, "product": product_id, "updated": product.updated}
    gateway.update_product(product_id, params, _key(store, "rename", sku, keyed))
    return name


def _at(url: str | None, origin: str | None) -> bool:
    """Tell whether a link's URL is under the origin phones reach (any, when None)."""
    return origin is None or (url or "").startswith(origin.rstrip("/") + "/")


def _current_link(sku: str, store: str) -> PaymentLink | None:
    return db.session.scalar(
        select(PaymentLink).where(
            PaymentLink.sku == sku, PaymentLink.store == store, PaymentLink.retired_at.is_(None)
        )
    )


def _switch(gateway: Any, store: str, link_id: str, active: bool, version: int) -> Any:
    # Keyed by the stock log position, so a later flip back is a new request, not a replay.
    key = idempotency_key(store, "link", link_id, "on" if active else "off", version)
    return gateway.set_payment_link_active(link_id, active, key)


def _save_product_ids(sku: str, product_id: str, price_id: str | None) -> None:
    product = db.session.get(Product, sku)
    product.stripe_product_id = product_id
    product.stripe_price_id = price_id
    db.session.commit()


def _key(store: str, kind: str, name: str, params: dict[str, Any]) -> str:
    """Return an idempotency key naming what a create makes, so a rerun replays it."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    return idempotency_key(store, kind, name, digest)
