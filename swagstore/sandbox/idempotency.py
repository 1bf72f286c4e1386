"""Idempotency-Key as Stripe documents it: per account, one endpoint and params, 24 hours.

The sandbox is one Stripe account, whatever sk_test_ key a client sends, so every client
of one sandbox database shares one key space, as booths sharing a Stripe account do. An
answer is kept once its endpoint started, errors and 500s included, and replayed to a
request with the same key; a request that failed parameter checks keeps nothing. A key
reused with other parameters or on another endpoint is an `idempotency_error`. Keys are
forgotten 24 hours (of the sandbox's clock) after first use, and then run anew.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete

from ..models import db
from .errors import StripeError
from .models import SandboxIdempotency
from .store import now

KEEP_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Answer:
    """A stored answer to replay."""

    body: Any
    status: int


def fingerprint(endpoint: str, pairs: list[tuple[str, str]]) -> str:
    """Return digests of a request's endpoint and of its parameters (in any order)."""
    where = hashlib.sha256(endpoint.encode()).hexdigest()[:16]
    what = hashlib.sha256(json.dumps(sorted(pairs)).encode()).hexdigest()[:47]
    return f"{where}:{what}"


def lookup(key: str, digest: str) -> Answer | None:
    """Return the stored answer for a key, None for a fresh (or expired) one, or refuse."""
    # The first statement takes the write lock, so a concurrent twin waits for our answer.
    stored = db.session.get(SandboxIdempotency, key)
    if stored is None or stored.created <= now() - KEEP_SECONDS:
        return None
    if stored.fingerprint.split(":")[0] != digest.split(":")[0]:
        raise StripeError(
            400,
            "idempotency_error",
            "Keys for idempotent requests can only be used for the same endpoint they were "
            f"first used for. Try using a key other than '{key}' if you meant to execute a "
            "different request.",
        )
    if stored.fingerprint != digest:
        raise StripeError(
            400,
            "idempotency_error",
            "Keys for idempotent requests can only be used with the same parameters they "
            f"were first used with. Try using a key other than '{key}' if you meant to "
            "execute a different request.",
        )
    return Answer(json.loads(stored.body), stored.status)


def remember(key: str, digest: str, body: Any, status: int) -> None:
    """Keep an answer under its key (replacing one that expired)."""
    moment = now()
    # Expired keys go as new ones come, so the table holds about a day of keys.
    db.session.execute(
        delete(SandboxIdempotency).where(
            SandboxIdempotency.created <= moment - KEEP_SECONDS, SandboxIdempotency.key != key
        )
    )
    fields = {"fingerprint": digest, "status": status, "body": json.dumps(body), "created": moment}
    row = db.session.get(SandboxIdempotency, key)
    if row is None:
        db.session.add(SandboxIdempotency(key=key, **fields))
    else:
        for name, value in fields.items():
            setattr(row, name, value)


def in_use(key: str) -> StripeError:
    """Build Stripe's 409 for a key whose first request has not finished."""
    return StripeError(
        409,
        "invalid_request_error",
        "There is currently another in-progress request using this Idempotent Key (that "
        "probably means you submitted twice, and the other request is still going "
        f"through): {key}. Please try again later.",
        code="idempotency_key_in_use",
    )
