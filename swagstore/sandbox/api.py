"""The Stripe API subset the app uses, under /sandbox/v1, with Stripe's auth and replay rules."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, current_app, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from ..models import db
from . import checkout, faults, intents, products
from .errors import StripeError, invalid
from .forms import decode
from .models import SandboxEvent, SandboxIdempotency, SandboxObject, engine
from .store import (
    created_filter,
    get,
    new_id,
    now,
    object_seq,
    objects,
    origin,
    page,
    types_filter,
)

bp = Blueprint("sandbox_api", __name__, url_prefix="/sandbox/v1")
View = Callable[..., Any]


def base_url() -> str:
    """Return the URL phones use to reach the sandbox's hosted pages."""
    return (current_app.config["PUBLIC_URL"] or request.host_url).rstrip("/")


def stripe_api(view: View) -> View:
    """Wrap a view with Stripe's key check, faults, Idempotency-Key replay and error shapes."""

    @wraps(view)
    def wrapper(**kwargs: Any) -> Response:
        request_id = new_id("req_", 14)
        try:
            api_key = _authenticate()
        except StripeError as e:
            return _json(e.body(), e.status, request_id)
        if request.method == "GET":
            checkout.expire_due_quietly()
            # Reads take no write lock, so a GET never waits on a caller's open transaction.
            db.session.connection(
                bind_arguments={"bind": engine()},
                execution_options={"isolation_level": "AUTOCOMMIT"},
            )
        fault = faults.take(request.path.removeprefix("/sandbox"))
        if request.method != "GET":
            db.session.commit()
        if fault is not None and fault.mode == "error":
            body = {"error": {"type": "api_error", "message": "Sandbox fault: internal error."}}
            return _json(body, 500, request_id)
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        body, status, replayed = _run(view, kwargs, api_key, key, request_id)
        try:
            db.session.commit()
        except IntegrityError:
            # A twin request with this key committed first (possible on PostgreSQL, where
            # nothing serialises them): undo ours and answer 409, which the SDK retries.
            db.session.rollback()
            error = StripeError(
                409,
                "idempotency_error",
                "There is currently another in-progress request using this Idempotent Key "
                "(that probably means you submitted twice, and the other request is still "
                "going through): " + str(key),
            )
            body, status, replayed = error.body(), error.status, False
        if fault is not None:
            # The work is done and stored; only the answer is late, as when a network drops.
            time.sleep(fault.seconds)
        return _json(body, status, request_id, replayed=replayed)

    return wrapper


def _run(
    view: View, kwargs: dict[str, Any], api_key: str, key: str | None, request_id: str
) -> tuple[Any, int, bool]:
    """Run a view once per Idempotency-Key; return (body, status, replayed)."""
    fingerprint = hashlib.sha256(
        json.dumps([request.method, request.path, sorted(request.form.items(multi=True))]).encode()
    ).hexdigest()
    stored_key = f"{hashlib.sha256(api_key.encode()).hexdigest()[:16]}:{key}"
    if key:
        # The first statement takes the write lock, so a concurrent twin waits for our answer.
        stored = db.session.get(SandboxIdempotency, stored_key)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                error = StripeError(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than '{key}' if you "
                    "meant to execute a different request.",
                )
                return error.body(), error.status, False
            return json.loads(stored.body), stored.status, True
    token = origin.set((request_id, key))
    try:
        pairs = request.form if request.method == "POST" else request.args
        params = decode(pairs.items(multi=True))
        body, status = view(params, **kwargs), 200
    except StripeError as e:
        db.session.rollback()
        body, status = e.body(), e.status
    finally:
        origin.reset(token)
    if key:
        db.session.add(
            SandboxIdempotency(
                key=stored_key,
                fingerprint=fingerprint,
                status=status,
                body=json.dumps(body),
                created=now(),
            )
        )
    return body, status, False


def _authenticate() -> str:
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
            code="api_key_missing",
        )
    if not key.startswith("sk_test_"):
        shown = key[:8] + "*" * max(0, len(key) - 12) + key[-4:]
        raise StripeError(
            401,
            "invalid_request_error",
            f"Invalid API Key provided: {shown}. The sandbox accepts any sk_test_ key.",
            code="api_key_invalid",
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


def _json(body: Any, status: int, request_id: str, *, replayed: bool = False) -> Response:
    response = current_app.response_class(
        json.dumps(body, indent=2) + "\n", status=status, mimetype="application/json"
    )
    response.headers["Request-Id"] = request_id
    response.headers["Stripe-Version"] = "sandbox"
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _list(kind: str, params: dict[str, Any], *clauses: Any) -> dict[str, Any]:
    stmt = created_filter(
        objects(kind).where(*clauses), SandboxObject.data["created"].as_integer(), params
    )
    return page(stmt, SandboxObject.seq, params, request.path.removeprefix("/sandbox"), object_seq)


# Products and prices ----------------------------------------------------------------------


@bp.post("/products")
@stripe_api
def create_product(params: dict) -> dict:
    return products.create_product(params)


@bp.get("/products")
@stripe_api
def list_products(params: dict) -> dict:
    return _list("product", params)


@bp.get("/products/<product_id>")
@stripe_api
def retrieve_product(params: dict, product_id: str) -> dict:
    return get("product", product_id).data


@bp.post("/products/<product_id>")
@stripe_api
def update_product(params: dict, product_id: str) -> dict:
    return products.update_product(product_id, params)


@bp.post("/prices")
@stripe_api
def create_price(params: dict) -> dict:
    return products.create_price(params)


@bp.get("/prices")
@stripe_api
def list_prices(params: dict) -> dict:
    clauses = []
    if product := params.get("product"):
        clauses.append(SandboxObject.data["product"].as_string() == product)
    return _list("price", params, *clauses)


@bp.get("/prices/<price_id>")
@stripe_api
def retrieve_price(params: dict, price_id: str) -> dict:
    return get("price", price_id).data


@bp.post("/prices/<price_id>")
@stripe_api
def update_price(params: dict, price_id: str) -> dict:
    return products.update_price(price_id, params)


# Payment links ----------------------------------------------------------------------------


@bp.post("/payment_links")
@stripe_api
def create_payment_link(params: dict) -> dict:
    return products.create_payment_link(params, base_url())


@bp.get("/payment_links")
@stripe_api
def list_payment_links(params: dict) -> dict:
    return _list("payment_link", params)


@bp.get("/payment_links/<link_id>")
@stripe_api
def retrieve_payment_link(params: dict, link_id: str) -> dict:
    return get("payment_link", link_id).data


@bp.post("/payment_links/<link_id>")
@stripe_api
def update_payment_link(params: dict, link_id: str) -> dict:
    return products.update_payment_link(link_id, params)


@bp.get("/payment_links/<link_id>/line_items")
@stripe_api
def payment_link_line_items(params: dict, link_id: str) -> dict:
    return _item_list(products.link_line_items(link_id))


def _item_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    url = request.path.removeprefix("/sandbox")
    return {"object": "list", "data": items, "has_more": False, "url": url}


# Checkout Sessions ------------------------------------------------------------------------


@bp.post("/checkout/sessions")
@stripe_api
def create_checkout_session(params: dict) -> dict:
    return checkout.create_session(params, base_url())


@bp.get("/checkout/sessions")
@stripe_api
def list_checkout_sessions(params: dict) -> dict:
    return _list("checkout.session", params, *checkout.list_sessions_filter(params))


@bp.get("/checkout/sessions/<session_id>")
@stripe_api
def retrieve_checkout_session(params: dict, session_id: str) -> dict:
    return checkout.retrieve_session(session_id)


@bp.get("/checkout/sessions/<session_id>/line_items")
@stripe_api
def checkout_session_line_items(params: dict, session_id: str) -> dict:
    return _item_list(checkout.session_line_items(session_id))


@bp.post("/checkout/sessions/<session_id>/expire")
@stripe_api
def expire_checkout_session(params: dict, session_id: str) -> dict:
    return checkout.expire_session(session_id)


# Payment intents and refunds --------------------------------------------------------------


@bp.post("/payment_intents")
@stripe_api
def create_payment_intent(params: dict) -> dict:
    return intents.create_intent(params)


@bp.get("/payment_intents/<intent_id>")
@stripe_api
def retrieve_payment_intent(params: dict, intent_id: str) -> dict:
    return intents.retrieve_intent(intent_id)


@bp.post("/payment_intents/<intent_id>/capture")
@stripe_api
def capture_payment_intent(params: dict, intent_id: str) -> dict:
    return intents.capture_intent(intent_id, params)


@bp.post("/payment_intents/<intent_id>/cancel")
@stripe_api
def cancel_payment_intent(params: dict, intent_id: str) -> dict:
    return intents.cancel_intent(intent_id, params)


@bp.post("/refunds")
@stripe_api
def create_refund(params: dict) -> dict:
    return intents.create_refund(params)


@bp.get("/refunds")
@stripe_api
def list_refunds(params: dict) -> dict:
    return _list("refund", params, *intents.refund_filter(params))


@bp.get("/refunds/<refund_id>")
@stripe_api
def retrieve_refund(params: dict, refund_id: str) -> dict:
    return get("refund", refund_id).data


# Events -----------------------------------------------------------------------------------


@bp.get("/events")
@stripe_api
def list_events(params: dict) -> dict:
    stmt = select(SandboxEvent)
    if wanted := types_filter(params):
        stmt = stmt.where(SandboxEvent.type.in_(wanted))
    stmt = created_filter(stmt, SandboxEvent.created, params)
    return page(stmt, SandboxEvent.seq, params, "/v1/events", _event_seq)


def _event_seq(event_id: str) -> int | None:
    return db.session.scalar(select(SandboxEvent.seq).where(SandboxEvent.id == event_id))


@bp.get("/events/<event_id>")
@stripe_api
def retrieve_event(params: dict, event_id: str) -> dict:
    event = db.session.scalar(select(SandboxEvent).where(SandboxEvent.id == event_id))
    if event is None:
        raise invalid(
            f"No such event: '{event_id}'", param="id", code="resource_missing", status=404
        )
    return event.data


@bp.route("/<path:rest>", methods=["GET", "POST", "DELETE"])
@stripe_api
def unknown(params: dict, rest: str) -> dict:
    raise invalid(
        f"Unrecognized request URL ({request.method}: /v1/{rest}). The sandbox implements "
        "only the Stripe calls Swagstore makes.",
        status=404,
    )
