"""The preflight a volunteer runs before doors open (`flask --app swagstore check`).

Each check is a small function returning a `Result`: OK with what it found, or FAIL with
what is wrong and the fix. They read the configuration, the database and Stripe, and
change nothing. `run` runs them in order; a check whose inputs failed (no Stripe, no
database) is left out and named. The checks live by what they look at: `access` (key,
Stripe, permissions, clock), `delivery` (events, webhook endpoint, PUBLIC_URL), `catalog`
(prices, sync, links) and `laptop` (database, disk).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import payments
from ..models import db
from .access import check_clock, check_key, check_permissions, check_reachable, needed_permissions
from .catalog import check_links, check_prices, check_synced, items_on_stripe
from .delivery import check_events, check_public_url, check_webhook_endpoint
from .laptop import check_database, check_disk, database_folder
from .results import Result, Setup, fail

__all__ = ["Report", "Result", "Setup", "run"]


def guarded(name: str, check: Callable[..., Result], *args: Any) -> Result:
    """Run one check; an error it did not foresee is a FAIL naming it, never a traceback."""
    try:
        return check(*args)
    except Exception as e:  # noqa: BLE001 (a preflight reports; it never crashes)
        db.session.rollback()
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return fail(name, f"could not be checked ({type(e).__name__}: {reason})", "see above")


@dataclass(frozen=True)
class Report:
    """Every check's result, and the checks left out because what they need failed."""

    results: list[Result]
    not_run: list[str]

    @property
    def failed(self) -> list[Result]:
        """Return the checks that failed."""
        return [r for r in self.results if not r.ok]


def run(setup: Setup, gateway: payments.Gateway) -> Report:
    """Run every check in order; those that need Stripe or the database only when they work."""
    results = [guarded("key", check_key, setup)]
    results.append(guarded("database", check_database, setup.store))
    database = results[-1].ok
    results.append(guarded("disk", check_disk, database_folder(setup)))
    asked_at = time.time()
    reach = gateway.probe("get", "/v1/events", {"limit": 1})
    results.append(guarded("stripe", check_reachable, setup, reach))
    stripe = results[-1].ok
    if stripe:
        needs = needed_permissions(setup)
        answers_ = {need: gateway.probe(need.method, need.path, need.params) for need in needs}
        results.append(guarded("permissions", check_permissions, answers_))
        results.append(guarded("clock", check_clock, reach, asked_at))
    results.append(guarded("events", check_events, setup))
    if stripe and setup.events_by_webhook and not setup.sandbox:
        results.append(guarded("webhook", _check_webhook, setup, gateway))
    results.append(guarded("public url", check_public_url, setup))
    if database:
        results.append(guarded("prices", check_prices, setup.store))
    if database and stripe:
        items = items_on_stripe(setup.store, gateway)
        results.append(guarded("synced", check_synced, items, setup))
        results.append(guarded("links", check_links, items))
    not_run = [
        *(["permissions", "clock"] if not stripe else []),
        *(["webhook"] if not stripe and setup.events_by_webhook and not setup.sandbox else []),
        *(["prices"] if not database else []),
        *(["synced", "links"] if not (stripe and database) else []),
    ]
    return Report(results, not_run)


def _check_webhook(setup: Setup, gateway: payments.Gateway) -> Result:
    try:
        endpoints = gateway.list_webhook_endpoints() if setup.public_url else []
    except payments.PaymentsError as e:
        return fail(
            "webhook",
            f"cannot list webhook endpoints ({e})",
            "grant the key Webhook Endpoints: Read (see permissions)",
        )
    return check_webhook_endpoint(setup, endpoints)
