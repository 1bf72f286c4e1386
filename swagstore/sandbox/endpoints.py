"""Webhook endpoints registered through the API: where events go, signed with whose secret.

As on Stripe, an endpoint's `secret` is answered once, when it is made; each event goes to
every enabled endpoint whose `enabled_events` name its type (or `*`). With none registered
the standalone sandbox delivers nothing and booths poll /v1/events.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy import update as sql_update

from ..models import db
from .errors import invalid
from .forms import metadata, strings, text
from .models import SandboxDelivery, SandboxObject
from .store import create, get, new_id, now

ENDPOINT_PARAMS = ("api_version", "description", "enabled_events", "metadata", "url")


def create_endpoint(params: dict[str, Any]) -> dict[str, Any]:
    """Register a webhook endpoint; the answer is the only one that shows its secret."""
    url = text(params, "url", required=True)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid(
            f"Invalid URL: {url}. URLs must begin with http:// or https://.",
            param="url",
            code="url_invalid",
        )
    secret = "whsec_" + secrets.token_hex(16)
    data = {
        "id": new_id("we_"),
        "object": "webhook_endpoint",
        "api_version": text(params, "api_version"),
        "application": None,
        "created": now(),
        "description": text(params, "description"),
        "enabled_events": strings(params, "enabled_events"),
        "livemode": False,
        "metadata": metadata(params) or {},
        "status": "enabled",
        "url": url,
    }
    create(data, {"secret": secret})
    return {**data, "secret": secret}


def retrieve_endpoint(endpoint_id: str) -> dict[str, Any]:
    """Fetch an endpoint (without its secret, as Stripe answers)."""
    return get("webhook_endpoint", endpoint_id).data


def delete_endpoint(endpoint_id: str) -> dict[str, Any]:
    """Remove an endpoint; its deliveries still waiting are dropped."""
    row = get("webhook_endpoint", endpoint_id)
    db.session.execute(
        sql_update(SandboxDelivery)
        .where(SandboxDelivery.endpoint_id == endpoint_id, SandboxDelivery.status == "pending")
        .values(status="failed", last_error="endpoint deleted")
    )
    db.session.delete(row)
    return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}


def target(endpoint_id: str) -> tuple[str, str] | None:
    """Return an endpoint's (url, signing secret), or None once it is gone or disabled."""
    row = db.session.scalar(
        select(SandboxObject).where(
            SandboxObject.id == endpoint_id, SandboxObject.type == "webhook_endpoint"
        )
    )
    if row is None or row.data["status"] != "enabled":
        return None
    return row.data["url"], row.private["secret"]
