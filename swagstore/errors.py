"""Errors in one place: JSON to API clients, a page to people, chosen by the Accept header.

A database that is locked, down or out of connections is 503 with Retry-After on every URL,
never a bare 500, so Stripe, the kiosk and a visitor's phone all simply try again. Anything
unexpected is logged by Flask and answered as a plain 500 that tells the client nothing
about the code. Blueprints keep their own handlers for their own refusals (the admin's CSRF
page, the sandbox API's Stripe-shaped errors); these catch the rest.
"""

from __future__ import annotations

from flask import Flask, current_app, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

# Locked (SQLite busy), unreachable or restarting (PostgreSQL), or no pooled connection free.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout)
RETRY_AFTER_SECONDS = 5


def init_app(app: Flask) -> None:
    """Register the app-wide error handlers."""
    app.register_error_handler(HTTPException, http_error)
    for error in DATABASE_UNAVAILABLE:
        app.register_error_handler(error, database_unavailable)


def wants_json() -> bool:
    """Tell whether the client prefers JSON: anything but a browser asking for a page."""
    accept = request.accept_mimetypes
    return accept["application/json"] >= accept["text/html"]


def answer(
    status: int, error: str, title: str, message: str, headers: dict[str, str] | None = None
) -> ResponseReturnValue:
    """Answer an error as {"error", "message"} JSON or as the error page."""
    headers = headers or {}
    if wants_json():
        return {"error": error, "message": message}, status, headers
    # A page fetched with GET reloads itself after Retry-After (a kiosk screen recovers alone).
    reload = headers.get("Retry-After") if request.method == "GET" else None
    page = render_template(
        "error.html", status=status, title=title, message=message, reload=reload
    )
    return page, status, headers


def http_error(error: HTTPException) -> ResponseReturnValue:
    """Answer a 4xx/5xx raised by Flask or a view (abort, 404, 405, 413, unexpected 500)."""
    if error.code is None or error.code < 400 or error.response is not None:
        return error
    # Keep headers such as Allow (405) or WWW-Authenticate; the body is ours.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    code = (error.name or "error").lower().replace(" ", "_")
    return answer(error.code, code, error.name, error.description or "", headers)


def database_unavailable(error: Exception) -> ResponseReturnValue:
    """Answer 503 with Retry-After while the database is locked or out of reach."""
    # The driver's own message (`orig`), not the statement and its parameters.
    reason = getattr(error, "orig", None) or error
    current_app.logger.error(
        "database unavailable on %s %s: %s: %s",
        request.method,
        request.path,
        type(reason).__name__,
        str(reason).splitlines()[0] if str(reason) else "",
    )
    return answer(
        503,
        "database_unavailable",
        "Back in a moment",
        "The store's database is busy or out of reach. "
        f"Please try again in {RETRY_AFTER_SECONDS} seconds.",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
