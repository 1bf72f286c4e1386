"""The Stripe API subset the app uses, under /sandbox/v1, with Stripe's auth and replay rules."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, current_app, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from ..models import db
from . import checkout, endpoints, faults, idempotency, intents, products
from .errors import StripeError, invalid
from .forms import decode
from .models import SandboxEvent, SandboxObject, engine
from .params import check as check_params
from .store import (
    API_VERSION,
    created_filter,
    get,
    item_page,
    new_id,
    object_seq,
    objects,
    origin,
    page,
    types_filter,
)

bp = Blueprint("sandbox_api", __name__, url_prefix="/sandbox/v1")
View = Callable[..., Any]
# The list parameters every list endpoint honours.
PAGING = ("limit", "starting_after", "ending_before")


def base_url() -> str:
    """Return the URL phones use to reach the sandbox's hosted pages (`…/sandbox` in the app)."""
    root = (current_app.config["PUBLIC_URL"] or request.host_url).rstrip("/")
    return root + prefix()


def prefix() -> str:
    """Return where the sandbox is mounted: /sandbox in the store's app, the root alone."""
    return str(current_app.config.get("SANDBOX_PREFIX", "/sandbox"))


def api_path() -> str:
    """Return the request's path as Stripe's API has it: /v1/…"""
    return request.path.removeprefix(prefix())


def stripe_api(operation: str | None, supports: Iterable[str] = ()) -> Callable[[View], View]:
    """Serve a view as Stripe's `operation` ("POST /v1/refunds"): key check, faults,
    parameter checks (only `supports` may be used), Idempotency-Key replay, error shapes."""
    supported = tuple(supports)

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(**kwargs: Any) -> Response:
            return _serve(view, kwargs, operation, supported)

        wrapper.operation = operation  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _serve(
    view: View, kwargs: dict[str, Any], operation: str | None, supported: tuple[str, ...]
) -> Response:
    request_id = new_id("req_", 14)
    try:
        _authenticate()
    except StripeError as e:
        return _json(e.body(), e.status, request_id)
    if request.method == "GET":
        checkout.expire_due_quietly()
        # Reads take no write lock, so a GET never waits on a caller's open transaction.
        db.session.connection(
            bind_arguments={"bind": engine()},
            execution_options={"isolation_level": "AUTOCOMMIT"},
        )
    fault = faults.take(api_path())
    if request.method != "GET":
        db.session.commit()
    if fault is not None and fault.mode == "error":
        # A fault in front of the API: nothing ran, nothing is kept under the key.
        body = {"error": {"type": "api_error", "message": "Sandbox fault: internal error."}}
        return _json(body, 500, request_id)
    key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
    crash = fault is not None and fault.mode == "crash"
    body, status, replayed = _run(view, kwargs, operation, supported, key, request_id, crash)
    try:
        db.session.commit()
    except IntegrityError:
        # A twin request with this key committed first (possible on PostgreSQL, where
        # nothing serialises them): undo ours and answer 409, which the SDK retries.
        db.session.rollback()
        error = idempotency.in_use(str(key))
        body, status, replayed = error.body(), error.status, False
    if fault is not None and fault.mode == "timeout":
        # The work is done and stored; only the answer is late, as when a network drops.
        time.sleep(fault.seconds)
    return _json(body, status, request_id, replayed=replayed, kept=bool(key))


def _run(
    view: View,
    kwargs: dict[str, Any],
    operation: str | None,
    supported: tuple[str, ...],
    key: str | None,
    request_id: str,
    crash: bool,
) -> tuple[Any, int, bool]:
    """Run a view once per Idempotency-Key; return (body, status, replayed)."""
    pairs = list((request.form if request.method == "POST" else request.args).items(multi=True))
    endpoint = f"{request.method} {api_path()}"
    digest = idempotency.fingerprint(endpoint, pairs)
    try:
        if key:
            answer = idempotency.lookup(key, digest)
            if answer is not None:
                return answer.body, answer.status, True
        raw = decode(pairs)
        checked = check_params(operation, raw, supported) if operation else raw
    except StripeError as e:
        # Refused before the endpoint ran: Stripe keeps nothing under the key.
        return e.body(), e.status, False
    token = origin.set((request_id, key))
    try:
        if crash:
            raise StripeError(500, "api_error", "Sandbox fault: the endpoint failed.")
        body, status = view(checked, **kwargs), 200
    except StripeError as e:
        db.session.rollback()
        body, status = e.body(), e.status
    finally:
        origin.reset(token)
    if key:
        idempotency.remember(key, digest, body, status)
    return body, status, False


def _authenticate() -> str:
    """Return the request's secret key, or refuse it as Stripe does (401, no code)."""
    header = request.headers.get("Authorization", "")
    key = ""
    if header.startswith("Bearer "):
        key = header.removeprefix("Bearer ").strip()
    elif request.authorization and request.authorization.type == "basic":
        key = request.authorization.username or ""
    if not key:
        raise StripeError(
            401,
            "invalid_request_error",
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth "
            "(e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        )
    if not key.startswith("sk_test_"):
        shown = key[:8] + "*" * max(0, len(key) - 12) + key[-4:]
        raise StripeError(
            401,
            "invalid_request_error",
            f"Invalid API Key provided: {shown}. The sandbox accepts any sk_test_ key.",
        )
    return key


@bp.errorhandler(HTTPException)
@bp.errorhandler(OperationalError)
@bp.errorhandler(InterfaceError)
def _failed(error: Exception) -> Response:
    """Answer what no view answered in Stripe's error shape, never a page: the SDK reads it.

    Unexpected exceptions arrive here as a 500 after Flask has logged them; a busy sandbox
    database is a 503, which the SDK retries.
    """
    if isinstance(error, HTTPException) and error.code and error.code < 500:
        failure = invalid(error.description or error.name, status=error.code)
    elif isinstance(error, HTTPException):
        failure = StripeError(500, "api_error", "An unexpected error occurred in the sandbox.")
    else:
        failure = StripeError(503, "api_error", "The sandbox's database is busy; try again.")
    return _json(failure.body(), failure.status, new_id("req_", 14))


def _json(
    body: Any, status: int, request_id: str, *, replayed: bool = False, kept: bool = False
) -> Response:
    response = current_app.response_class(
        json.dumps(body, indent=2) + "\n", status=status, mimetype="application/json"
    )
    response.headers["Request-Id"] = request_id
    response.headers["Stripe-Version"] = API_VERSION
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if status >= 500 and kept:
        # The failure is kept under the key: a retry with it would only replay it.
        response.headers["Stripe-Should-Retry"] = "false"
    return response


def _list(kind: str, params: dict[str, Any], *clauses: Any) -> dict[str, Any]:
    stmt = created_filter(
        objects(kind).where(*clauses), SandboxObject.data["created"].as_integer(), params
    )
    return page(stmt, SandboxObject.seq, params, api_path(), object_seq)


# Products and prices ----------------------------------------------------------------------


@bp.post("/products")
@stripe_api("POST /v1/products", products.PRODUCT_PARAMS)
def create_product(params: dict) -> dict:
    return products.create_product(params)


@bp.get("/products")
@stripe_api("GET /v1/products", (*PAGING, "created"))
def list_products(params: dict) -> dict:
    return _list("product", params)


@bp.get("/products/<product_id>")
@stripe_api("GET /v1/products/{id}")
def retrieve_product(params: dict, product_id: str) -> dict:
    return get("product", product_id).data


@bp.post("/products/<product_id>")
@stripe_api("POST /v1/products/{id}", products.PRODUCT_PARAMS)
def update_product(params: dict, product_id: str) -> dict:
    return products.update_product(product_id, params)


@bp.post("/prices")
@stripe_api("POST /v1/prices", products.PRICE_PARAMS)
def create_price(params: dict) -> dict:
    return products.create_price(params)


@bp.get("/prices")
@stripe_api("GET /v1/prices", (*PAGING, "created", "product"))
def list_prices(params: dict) -> dict:
    clauses = []
    if product := params.get("product"):
        clauses.append(SandboxObject.data["product"].as_string() == product)
    return _list("price", params, *clauses)


@bp.get("/prices/<price_id>")
@stripe_api("GET /v1/prices/{price}")
def retrieve_price(params: dict, price_id: str) -> dict:
    return get("price", price_id).data


@bp.post("/prices/<price_id>")
@stripe_api("POST /v1/prices/{price}", products.PRICE_UPDATE_PARAMS)
def update_price(params: dict, price_id: str) -> dict:
    return products.update_price(price_id, params)


# Payment links ----------------------------------------------------------------------------


@bp.post("/payment_links")
@stripe_api("POST /v1/payment_links", products.LINK_PARAMS)
def create_payment_link(params: dict) -> dict:
    return products.create_payment_link(params, base_url())


@bp.get("/payment_links")
@stripe_api("GET /v1/payment_links", PAGING)
def list_payment_links(params: dict) -> dict:
    return _list("payment_link", params)


@bp.get("/payment_links/<link_id>")
@stripe_api("GET /v1/payment_links/{payment_link}")
def retrieve_payment_link(params: dict, link_id: str) -> dict:
    return get("payment_link", link_id).data


@bp.post("/payment_links/<link_id>")
@stripe_api("POST /v1/payment_links/{payment_link}", products.LINK_UPDATE_PARAMS)
def update_payment_link(params: dict, link_id: str) -> dict:
    return products.update_payment_link(link_id, params)


@bp.get("/payment_links/<link_id>/line_items")
@stripe_api("GET /v1/payment_links/{payment_link}/line_items", PAGING)
def payment_link_line_items(params: dict, link_id: str) -> dict:
    return item_page(products.link_line_items(link_id), params, api_path())


# Checkout Sessions ------------------------------------------------------------------------


@bp.post("/checkout/sessions")
@stripe_api("POST /v1/checkout/sessions", checkout.SESSION_PARAMS)
def create_checkout_session(params: dict) -> dict:
    return checkout.create_session(params, base_url())


@bp.get("/checkout/sessions")
@stripe_api("GET /v1/checkout/sessions", (*PAGING, *checkout.LIST_FILTERS))
def list_checkout_sessions(params: dict) -> dict:
    return _list("checkout.session", params, *checkout.list_sessions_filter(params))


@bp.get("/checkout/sessions/<session_id>")
@stripe_api("GET /v1/checkout/sessions/{session}")
def retrieve_checkout_session(params: dict, session_id: str) -> dict:
    return checkout.retrieve_session(session_id)


@bp.get("/checkout/sessions/<session_id>/line_items")
@stripe_api("GET /v1/checkout/sessions/{session}/line_items", PAGING)
def checkout_session_line_items(params: dict, session_id: str) -> dict:
    return item_page(checkout.session_line_items(session_id), params, api_path())


@bp.post("/checkout/sessions/<session_id>/expire")
@stripe_api("POST /v1/checkout/sessions/{session}/expire")
def expire_checkout_session(params: dict, session_id: str) -> dict:
    return checkout.expire_session(session_id)


# Payment intents and refunds --------------------------------------------------------------


@bp.post("/payment_intents")
@stripe_api("POST /v1/payment_intents", intents.INTENT_PARAMS)
def create_payment_intent(params: dict) -> dict:
    return intents.create_intent(params)


@bp.get("/payment_intents/<intent_id>")
@stripe_api("GET /v1/payment_intents/{intent}")
def retrieve_payment_intent(params: dict, intent_id: str) -> dict:
    return intents.retrieve_intent(intent_id)


@bp.post("/payment_intents/<intent_id>/capture")
@stripe_api("POST /v1/payment_intents/{intent}/capture", ("amount_to_capture",))
def capture_payment_intent(params: dict, intent_id: str) -> dict:
    return intents.capture_intent(intent_id, params)


@bp.post("/payment_intents/<intent_id>/cancel")
@stripe_api("POST /v1/payment_intents/{intent}/cancel", ("cancellation_reason",))
def cancel_payment_intent(params: dict, intent_id: str) -> dict:
    return intents.cancel_intent(intent_id, params)


@bp.post("/refunds")
@stripe_api("POST /v1/refunds", intents.REFUND_PARAMS)
def create_refund(params: dict) -> dict:
    return intents.create_refund(params)


@bp.get("/refunds")
@stripe_api("GET /v1/refunds", (*PAGING, "charge", "created", "payment_intent"))
def list_refunds(params: dict) -> dict:
    return _list("refund", params, *intents.refund_filter(params))


@bp.get("/refunds/<refund_id>")
@stripe_api("GET /v1/refunds/{refund}")
def retrieve_refund(params: dict, refund_id: str) -> dict:
    return get("refund", refund_id).data


# Webhook endpoints ------------------------------------------------------------------------


@bp.post("/webhook_endpoints")
@stripe_api("POST /v1/webhook_endpoints", endpoints.ENDPOINT_PARAMS)
def create_webhook_endpoint(params: dict) -> dict:
    return endpoints.create_endpoint(params)


@bp.get("/webhook_endpoints")
@stripe_api("GET /v1/webhook_endpoints", PAGING)
def list_webhook_endpoints(params: dict) -> dict:
    return page(objects("webhook_endpoint"), SandboxObject.seq, params, api_path(), object_seq)


@bp.get("/webhook_endpoints/<endpoint_id>")
@stripe_api("GET /v1/webhook_endpoints/{webhook_endpoint}")
def retrieve_webhook_endpoint(params: dict, endpoint_id: str) -> dict:
    return endpoints.retrieve_endpoint(endpoint_id)


@bp.delete("/webhook_endpoints/<endpoint_id>")
@stripe_api("DELETE /v1/webhook_endpoints/{webhook_endpoint}")
def delete_webhook_endpoint(params: dict, endpoint_id: str) -> dict:
    return endpoints.delete_endpoint(endpoint_id)


# Events -----------------------------------------------------------------------------------


@bp.get("/events")
@stripe_api("GET /v1/events", (*PAGING, "created", "type", "types"))
def list_events(params: dict) -> dict:
    stmt = select(SandboxEvent).where(*types_filter(params, SandboxEvent.type))
    stmt = created_filter(stmt, SandboxEvent.created, params)
    return page(stmt, SandboxEvent.seq, params, "/v1/events", _event_seq)


def _event_seq(event_id: str) -> int | None:
    return db.session.scalar(select(SandboxEvent.seq).where(SandboxEvent.id == event_id))


@bp.get("/events/<event_id>")
@stripe_api("GET /v1/events/{id}")
def retrieve_event(params: dict, event_id: str) -> dict:
    event = db.session.scalar(select(SandboxEvent).where(SandboxEvent.id == event_id))
    if event is None:
        raise invalid(
            f"No such event: '{event_id}'", param="id", code="resource_missing", status=404
        )
    return event.data


@bp.route("/<path:rest>", methods=["GET", "POST", "DELETE"])
@stripe_api(None)
def unknown(params: dict, rest: str) -> dict:
    raise invalid(
        f"Unrecognized request URL ({request.method}: /v1/{rest}). The sandbox implements "
        "only the Stripe calls Swagstore makes.",
        status=404,
    )
