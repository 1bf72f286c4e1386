"""The one door to Stripe: a thin gateway over `stripe.StripeClient` (`client.v1.*`).

No other module imports `stripe`. Callers get plain Stripe objects back (attribute access,
not dicts) and two kinds of error: `Transient` (retry later, with the same idempotency key
unless `key_spent`: Stripe kept the 500 under it) and `Rejected` (Stripe said no for good;
retrying will not help).

Transport: with STRIPE_API_BASE set the SDK talks HTTP to it (Stripe, stripe-mock, or a
live server's `/sandbox`). In sandbox mode without it, `InProcessClient` hands each request
to the app's own WSGI app, so CLI commands and the server reach the sandbox with no network
and no request to itself. Either way the real SDK encodes, authenticates and retries.

Never call the gateway inside a database transaction: on SQLite every transaction holds
the write lock from its first statement (BEGIN IMMEDIATE), so a read left open across a
network round trip stalls every writer, and the offline sandbox writes to the same file.
With STRIPE_CALL_GUARD on (the default under TESTING) every call checks that the app's
database session has no transaction open and raises `TransactionOpen` if it has: end the
read (commit, rollback, or leave the `models.read_only()` block) before the call.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import stripe
from flask import Flask, current_app, has_request_context, request
from stripe.params import (
    EventListParams,
    PaymentIntentCancelParams,
    PaymentIntentCaptureParams,
    PaymentIntentCreateParams,
    PaymentIntentRetrieveParams,
    PaymentLinkCreateParams,
    PaymentLinkRetrieveParams,
    PaymentLinkUpdateParams,
    PriceCreateParams,
    PriceRetrieveParams,
    ProductCreateParams,
    ProductRetrieveParams,
    ProductUpdateParams,
    RefundCreateParams,
    WebhookEndpointListParams,
)
from stripe.params.checkout import (
    SessionCreateParams,
    SessionExpireParams,
    SessionLineItemListParams,
    SessionListParams,
    SessionRetrieveParams,
)

from .models import db

T = TypeVar("T")
P = TypeVar("P")
EXTENSION = "swagstore.payments"
# Stripe's own sandbox keys look like this; the offline sandbox accepts any sk_test_ key.
SANDBOX_KEY = "sk_test_swagstore_sandbox"
TIMEOUT_SECONDS = 20
NETWORK_RETRIES = 2
SANDBOX_ORIGIN = "http://localhost"


class PaymentsError(Exception):
    """A Stripe call failed."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


class Transient(PaymentsError):
    """Stripe could not be reached or had a passing fault: try again later."""

    def __init__(
        self,
        message: str,
        code: str | None = None,
        status: int | None = None,
        *,
        key_spent: bool = False,
    ):
        super().__init__(message, code, status)
        # Stripe kept this failure under the idempotency key for 24 hours: a retry with the
        # same key would only replay it, so the next attempt needs a new one.
        self.key_spent = key_spent


class Rejected(PaymentsError):
    """Stripe refused the request for good (bad state, expired authorization, bad key)."""


class TransactionOpen(RuntimeError):
    """A Stripe call was made while a database transaction was open (STRIPE_CALL_GUARD)."""


class BadSignature(Exception):
    """A webhook's Stripe-Signature header is missing, forged or stale."""


@dataclass(frozen=True)
class Probe:
    """How Stripe answered one request made only to see the answer (the preflight's)."""

    status: int | None  # None: no answer at all (network, DNS, refused connection)
    code: str | None
    message: str
    date: str | None  # Stripe's Date header, for the clock check
    seconds: float  # how long the answer took


class Gateway:
    """Stripe calls the store makes, each one line over the SDK."""

    def __init__(
        self,
        client: stripe.StripeClient,
        webhook_secret: str | None,
        http_client: stripe.HTTPClient | None = None,
        in_transaction: Callable[[], bool] | None = None,
    ) -> None:
        self.client = client
        self.webhook_secret = webhook_secret
        self.http_client = http_client
        # The guard: a check that a database transaction is open, run before every call.
        self.in_transaction = in_transaction

    def _call(
        self, method: Callable[[P, stripe.RequestOptions], T], params: P, key: str | None = None
    ) -> T:
        if self.in_transaction is not None and self.in_transaction():
            name = getattr(method, "func", method).__qualname__
            raise TransactionOpen(
                f"Stripe call {name} made while a database transaction is open: commit or "
                "roll back before calling Stripe (STRIPE_CALL_GUARD)"
            )
        return _call(method, params, key)

    def close(self) -> None:
        """Close the HTTP connections this thread opened."""
        if self.http_client is not None:
            self.http_client.close()  # type: ignore[no-untyped-call]

    # Catalog -----------------------------------------------------------------------------

    def create_product(self, params: ProductCreateParams, key: str) -> stripe.Product:
        """Create a product."""
        return self._call(self.client.v1.products.create, params, key)

    def retrieve_product(self, product_id: str) -> stripe.Product:
        """Fetch a product."""
        return self._call(
            partial(self.client.v1.products.retrieve, product_id), ProductRetrieveParams()
        )

    def update_product(
        self, product_id: str, params: ProductUpdateParams, key: str
    ) -> stripe.Product:
        """Change a product: its name, as checkout pages and receipts show it."""
        return self._call(partial(self.client.v1.products.update, product_id), params, key)

    def create_price(self, params: PriceCreateParams, key: str) -> stripe.Price:
        """Create a price."""
        return self._call(self.client.v1.prices.create, params, key)

    def retrieve_price(self, price_id: str) -> stripe.Price:
        """Fetch a price."""
        return self._call(partial(self.client.v1.prices.retrieve, price_id), PriceRetrieveParams())

    def create_payment_link(self, params: PaymentLinkCreateParams, key: str) -> stripe.PaymentLink:
        """Create a payment link."""
        return self._call(self.client.v1.payment_links.create, params, key)

    def set_payment_link_active(self, link_id: str, active: bool, key: str) -> stripe.PaymentLink:
        """Switch a payment link on or off."""
        return self._call(
            partial(self.client.v1.payment_links.update, link_id),
            PaymentLinkUpdateParams(active=active),
            key,
        )

    def update_payment_link(
        self, link_id: str, params: PaymentLinkUpdateParams, key: str
    ) -> stripe.PaymentLink:
        """Change a payment link: on or off, its limit, its after-payment page."""
        return self._call(partial(self.client.v1.payment_links.update, link_id), params, key)

    def retrieve_payment_link(self, link_id: str) -> stripe.PaymentLink:
        """Fetch a payment link."""
        return self._call(
            partial(self.client.v1.payment_links.retrieve, link_id), PaymentLinkRetrieveParams()
        )

    # Checkout ----------------------------------------------------------------------------

    def create_checkout_session(
        self, params: SessionCreateParams, key: str
    ) -> stripe.checkout.Session:
        """Create a Checkout Session."""
        return self._call(self.client.v1.checkout.sessions.create, params, key)

    def retrieve_checkout_session(self, session_id: str) -> stripe.checkout.Session:
        """Fetch a Checkout Session."""
        return self._call(
            partial(self.client.v1.checkout.sessions.retrieve, session_id),
            SessionRetrieveParams(),
        )

    def checkout_session_quantity(self, session_id: str) -> int:
        """Return the total quantity of a Checkout Session's line items."""
        items = self._call(
            partial(self.client.v1.checkout.sessions.line_items.list, session_id),
            SessionLineItemListParams(limit=100),
        )
        return sum(item.quantity or 0 for item in items.data)

    def expire_checkout_session(self, session_id: str, key: str) -> stripe.checkout.Session:
        """Expire an open Checkout Session so it can no longer be paid."""
        return self._call(
            partial(self.client.v1.checkout.sessions.expire, session_id),
            SessionExpireParams(),
            key,
        )

    def list_checkout_sessions(self, params: SessionListParams) -> list[stripe.checkout.Session]:
        """List Checkout Sessions, following pages to the end."""
        page = self._call(self.client.v1.checkout.sessions.list, params)
        return list(page.auto_paging_iter())

    # Payment intents and refunds ---------------------------------------------------------

    def create_payment_intent(
        self, params: PaymentIntentCreateParams, key: str
    ) -> stripe.PaymentIntent:
        """Create a PaymentIntent."""
        return self._call(self.client.v1.payment_intents.create, params, key)

    def retrieve_payment_intent(self, intent_id: str) -> stripe.PaymentIntent:
        """Fetch a PaymentIntent."""
        return self._call(
            partial(self.client.v1.payment_intents.retrieve, intent_id),
            PaymentIntentRetrieveParams(),
        )

    def capture_payment_intent(self, intent_id: str, key: str) -> stripe.PaymentIntent:
        """Capture an authorized PaymentIntent."""
        return self._call(
            partial(self.client.v1.payment_intents.capture, intent_id),
            PaymentIntentCaptureParams(),
            key,
        )

    def cancel_payment_intent(self, intent_id: str, key: str) -> stripe.PaymentIntent:
        """Cancel a PaymentIntent, voiding its authorization."""
        return self._call(
            partial(self.client.v1.payment_intents.cancel, intent_id),
            PaymentIntentCancelParams(),
            key,
        )

    def create_refund(self, params: RefundCreateParams, key: str) -> stripe.Refund:
        """Refund a payment."""
        return self._call(self.client.v1.refunds.create, params, key)

    # Events ------------------------------------------------------------------------------

    def list_events(self, params: EventListParams) -> list[stripe.Event]:
        """List one page of events, newest first, as Stripe returns them."""
        return self._call(self.client.v1.events.list, params).data

    def list_webhook_endpoints(self) -> list[stripe.WebhookEndpoint]:
        """List the account's webhook endpoints, following pages to the end."""
        page = self._call(
            self.client.v1.webhook_endpoints.list, WebhookEndpointListParams(limit=100)
        )
        return list(page.auto_paging_iter())

    # Preflight ---------------------------------------------------------------------------

    def probe(self, method: str, path: str, params: Mapping[str, Any] | None = None) -> Probe:
        """Send one request and report Stripe's answer, whatever it is; never raise for it.

        The preflight asks with ids that exist nowhere, so Stripe's answer tells whether
        the key may make the call (403 names the permission it lacks) without changing
        anything on the account.
        """
        if self.in_transaction is not None and self.in_transaction():
            raise TransactionOpen(f"Stripe probe {method} {path} made inside a transaction")
        start = time.monotonic()
        try:
            response = self.client.raw_request(method, path, **dict(params or {}))
        except stripe.APIConnectionError as e:
            return Probe(None, None, _message(e), None, time.monotonic() - start)
        except stripe.StripeError as e:
            date = e.headers.get("Date") if e.headers else None
            return Probe(e.http_status, e.code, _message(e), date, time.monotonic() - start)
        date = response.headers.get("Date")
        return Probe(response.code, None, "", date, time.monotonic() - start)

    def verify_event(self, payload: bytes, signature: str | None) -> Any:
        """Verify a webhook's signature (300 s tolerance) and return its JSON body, unchecked."""
        if not signature:
            raise BadSignature("missing Stripe-Signature header")
        if not self.webhook_secret:
            raise BadSignature("no webhook signing secret is configured")
        try:
            stripe.WebhookSignature.verify_header(
                payload.decode("utf-8"), signature, self.webhook_secret, 300
            )
        except stripe.SignatureVerificationError as e:
            raise BadSignature(str(e).split(" Are you passing")[0]) from None
        # A plain value, not a stripe.Event: its shape is checked next (event_schema).
        return json.loads(payload)


def _call(method: Callable[[P, stripe.RequestOptions], T], params: P, key: str | None = None) -> T:
    """Call one SDK method, turning its errors into Transient or Rejected."""
    options: stripe.RequestOptions = {"idempotency_key": key} if key else {}
    try:
        return method(params, options)
    except stripe.AuthenticationError as e:
        raise Rejected(_message(e), e.code, e.http_status or 401) from e
    except (stripe.APIConnectionError, stripe.RateLimitError) as e:
        raise Transient(_message(e), e.code, e.http_status) from e
    except stripe.StripeError as e:
        status = e.http_status
        # 409 is an idempotency key still in flight; 5xx is Stripe's own fault.
        if status is None or status >= 500 or status == 409:
            spent = bool(key) and status is not None and status >= 500 and _kept(e.headers or {})
            raise Transient(_message(e), e.code, status, key_spent=spent) from e
        raise Rejected(_message(e), e.code, status) from e


def _kept(headers: Mapping[str, str]) -> bool:
    """Tell whether Stripe kept a 5xx under its idempotency key (a replay, or no retry)."""
    named = {name.lower(): value.lower() for name, value in headers.items()}
    replayed = named.get("idempotent-replayed") == "true"
    return replayed or named.get("stripe-should-retry") == "false"


def _message(error: stripe.StripeError) -> str:
    return error.user_message or str(error) or type(error).__name__


class InProcessClient(stripe.HTTPClient):
    """An SDK transport that serves each request from the app itself (the offline sandbox)."""

    name = "swagstore-in-process"

    def __init__(self, app: Flask) -> None:
        super().__init__()
        self.app = app

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        """Run one request through the app's WSGI stack and return (body, status, headers)."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if has_request_context():
            # Hosted-page URLs then point where the visitor reached this app.
            origin = request.host_url.rstrip("/")
        # An empty context: the sandbox gets its own app context and database session, as
        # it would in another process, instead of joining the caller's.
        response = contextvars.Context().run(
            self.app.test_client().open,
            parts.path,
            method=method,
            base_url=origin,
            query_string=parts.query,
            headers=dict(headers or {}),
            data=post_data,
        )
        try:
            # Werkzeug's Headers look names up case-insensitively, as the SDK expects.
            headers = cast(Mapping[str, str], response.headers)
            return response.get_data(as_text=True), response.status_code, headers
        finally:
            response.close()

    def close(self) -> None:
        """Nothing to close: no connections are opened."""


def make_gateway(
    secret_key: str,
    webhook_secret: str | None,
    api_base: str | None = None,
    http_client: stripe.HTTPClient | None = None,
    *,
    timeout: float = TIMEOUT_SECONDS,
    retries: int = NETWORK_RETRIES,
) -> Gateway:
    """Build a gateway for a key, optionally pointed at another API base URL."""
    http_client = http_client or stripe.RequestsClient(timeout=timeout)
    client = stripe.StripeClient(
        secret_key,
        base_addresses={"api": api_base} if api_base else {},
        max_network_retries=retries,
        http_client=http_client,
    )
    return Gateway(client, webhook_secret, http_client)


def webhook_secret(app: Flask) -> str | None:
    """Return the secret webhooks are verified with (the sandbox's own in sandbox mode)."""
    # The sandbox sets its own when it is mounted; the product never imports it.
    key = "SANDBOX_WEBHOOK_SECRET" if app.config["SANDBOX"] else "STRIPE_WEBHOOK_SECRET"
    secret: str | None = app.config.get(key)
    return secret


def init_app(app: Flask) -> None:
    """Build the app's gateway from its config (lazily, on first use)."""
    app.extensions[EXTENSION] = None


def gateway() -> Gateway:
    """Return the current app's gateway."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    gw: Gateway | None = app.extensions.get(EXTENSION)
    if gw is None:
        config = app.config
        api_base: str | None = config["STRIPE_API_BASE"]
        http_client: stripe.HTTPClient | None = None
        if config["SANDBOX"] and not api_base:
            api_base = (config["PUBLIC_URL"] or SANDBOX_ORIGIN).rstrip("/") + "/sandbox"
            http_client = InProcessClient(app)
        gw = make_gateway(
            config["STRIPE_SECRET_KEY"] or SANDBOX_KEY,
            webhook_secret(app),
            api_base,
            http_client,
            timeout=float(config.get("STRIPE_TIMEOUT", TIMEOUT_SECONDS)),
            retries=int(config.get("STRIPE_MAX_RETRIES", NETWORK_RETRIES)),
        )
        if _guard_on(config.get("STRIPE_CALL_GUARD"), app.testing):
            gw.in_transaction = _session_in_transaction
        app.extensions[EXTENSION] = gw
    return gw


def _guard_on(setting: object, testing: bool) -> bool:
    """Read STRIPE_CALL_GUARD: unset follows TESTING; an environment string is a flag."""
    if setting is None:
        return testing
    if isinstance(setting, str):
        return setting.strip().lower() in ("1", "true", "yes", "on")
    return bool(setting)


def _session_in_transaction() -> bool:
    return db.session().in_transaction()


def close(app: Flask) -> None:
    """Close and forget the app's gateway (tests, or after a config change)."""
    gw: Gateway | None = app.extensions.get(EXTENSION)
    if gw is not None:
        gw.close()
    app.extensions[EXTENSION] = None
