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
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any

from .. import payments
from ..models import db
from .access import check_clock, check_key, check_permissions, check_reachable, needed_permissions
from .catalog import ItemOnStripe, check_links, check_prices, check_synced, items_on_stripe
from .delivery import check_events, check_public_url, check_webhook_endpoint
from .laptop import check_database, check_disk, database_folder
from .results import Result, Setup, fail

__all__ = ["CHECKS", "Report", "Result", "Setup", "run"]


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


# What each check needs to have passed first.
NEEDS = {
    "permissions": ("stripe",),
    "clock": ("stripe",),
    "webhook": ("stripe",),
    "prices": ("database",),
    "synced": ("stripe", "database"),
    "links": ("stripe", "database"),
}
CHECKS = (
    "key",
    "database",
    "disk",
    "stripe",
    "permissions",
    "clock",
    "events",
    "webhook",
    "public url",
    "prices",
    "synced",
    "links",
)


def run(setup: Setup, gateway: payments.Gateway, only: Collection[str] = CHECKS) -> Report:
    """Run the checks in order (all, or `only` these); each after what it needs passed."""
    wanted = set(only)
    needed = wanted | {need for name in wanted for need in NEEDS.get(name, ())}
    passed: dict[str, bool] = {}
    results: list[Result] = []
    reach: payments.Probe | None = None
    asked_at = time.time()
    items: list[ItemOnStripe] = []

    def step(name: str, check: Callable[..., Result], *args: Any) -> None:
        result = guarded(name, check, *args)
        passed[name] = result.ok
        # A check run only because another needs it is shown when it failed.
        if name in wanted or not result.ok:
            results.append(result)

    def ready(name: str) -> bool:
        return name in needed and all(passed.get(need) for need in NEEDS.get(name, ()))

    if ready("key"):
        step("key", check_key, setup)
    if ready("database"):
        step("database", check_database, setup.store)
    if ready("disk"):
        step("disk", check_disk, database_folder(setup))
    if ready("stripe"):
        reach = gateway.probe("get", "/v1/events", {"limit": 1})
        step("stripe", check_reachable, setup, reach)
    if ready("permissions"):
        needs = needed_permissions(setup)
        answers = {need: gateway.probe(need.method, need.path, need.params) for need in needs}
        step("permissions", check_permissions, answers)
    if ready("clock"):
        step("clock", check_clock, reach, asked_at)
    if ready("events"):
        step("events", check_events, setup)
    if ready("webhook") and setup.events_by_webhook and not setup.sandbox:
        step("webhook", _check_webhook, setup, gateway)
    if ready("public url"):
        step("public url", check_public_url, setup)
    if ready("prices"):
        step("prices", check_prices, setup.store, setup.locale)
    if ready("synced") or ready("links"):
        # Read once for both checks; a failure here fails both, in their own lines.
        fetched = guarded("synced", _fetch, setup.store, gateway, items)
        if not fetched.ok:
            for name in ("synced", "links"):
                step(name, lambda name=name: replace(fetched, name=name))
    if ready("synced") and "synced" not in passed:
        step("synced", check_synced, items, setup)
    if ready("links") and "links" not in passed:
        step("links", check_links, items)
    not_run = [
        name
        for name in CHECKS
        if name in wanted
        and name not in passed
        and (name != "webhook" or setup.events_by_webhook and not setup.sandbox)
    ]
    return Report(results, not_run)


def _fetch(store: str, gateway: payments.Gateway, into: list[ItemOnStripe]) -> Result:
    into.extend(items_on_stripe(store, gateway))
    return Result("synced", True, "")


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
