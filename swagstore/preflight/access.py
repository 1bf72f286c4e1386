"""The key and the Stripe account: is it the right key, does Stripe answer, may it act.

Stripe is asked about ids that exist nowhere: a 404 or 400 shows the key may make the
call, a 403 names the permission it lacks, and nothing is made on the account.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import payments
from .results import Result, Setup, fail, ok

KEY_KINDS = {
    "sk_live_": ("live", "secret key"),
    "rk_live_": ("live", "restricted key"),
    "sk_test_": ("test", "secret key"),
    "rk_test_": ("test", "restricted key"),
}
# Webhooks older than 300 s are refused and Checkout sessions are made 35 minutes ahead
# with 5 to spare: a minute off is a warning sign well inside both.
MAX_CLOCK_SKEW_SECONDS = 60
PROBE_ID = "swagstore_check"


# Where a volunteer puts the key: the README's way first.
WHERE = "instance/config.py as STRIPE_SECRET_KEY (or export SWAGSTORE_STRIPE_SECRET_KEY)"


def check_key(setup: Setup) -> Result:
    """Check a key is set, looks like a Stripe secret key, and is live or test as expected."""
    name = "key"
    if not setup.key:
        if setup.expect == "sandbox":
            return ok(name, "no STRIPE_SECRET_KEY: the offline sandbox, as expected")
        return fail(
            name,
            "no STRIPE_SECRET_KEY: the store runs as its offline sandbox and takes no money",
            f"put the booth's restricted key (rk_live_…) in {WHERE} (README, Running the "
            "booth), or run `check --expect sandbox` for a rehearsal",
        )
    if setup.key != setup.key.strip():
        return fail(
            name,
            "STRIPE_SECRET_KEY starts or ends with a space or a line break",
            f"copy the key again without the space, into {WHERE}",
        )
    prefix = next((p for p in KEY_KINDS if setup.key.startswith(p)), None)
    if prefix is None:
        what = "a publishable key (pk_…)" if setup.key.startswith("pk_") else "no Stripe key"
        if setup.key.startswith("whsec_"):
            what = "a webhook signing secret (whsec_…)"
        return fail(
            name,
            f"STRIPE_SECRET_KEY is {what}",
            "use the secret or restricted key (sk_… or rk_…) from the Dashboard, "
            "Developers > API keys",
        )
    mode, kind = KEY_KINDS[prefix]
    where = f" against {setup.api_base}" if setup.api_base else ""
    found = f"{mode} {kind} ({prefix}…){where}"
    if setup.expect == "sandbox":
        return fail(name, f"{found}, but the sandbox was expected", "unset STRIPE_SECRET_KEY")
    if setup.expect in ("live", "test") and mode != setup.expect:
        money = "no real money moves" if mode == "test" else "real cards are charged"
        return fail(
            name,
            f"{found}: {money}, but a {setup.expect} key was expected",
            f"put the {setup.expect} key (rk_{setup.expect}_…) in {WHERE}",
        )
    if mode == "test":
        found += ": no real money moves"
    elif kind == "secret key":
        found += ": a restricted key (rk_live_) would limit the harm if the laptop is lost"
    return ok(name, found)


def check_reachable(setup: Setup, probe: payments.Probe) -> Result:
    """Check Stripe answered (any answer but a refused key): the network and the key work."""
    name = "stripe"
    where = setup.api_base or ("the in-process sandbox" if setup.sandbox else "api.stripe.com")
    if probe.status is None:
        return fail(
            name,
            f"no answer from {where} ({network_reason(probe.message)})",
            "check the network (conference Wi-Fi, a captive portal) and STRIPE_API_BASE; "
            "a standalone sandbox must be running",
        )
    if probe.status == 401:
        return fail(
            name,
            f"{where} refused the key (401: {probe.message})",
            "copy the key again from the Dashboard (Developers > API keys): it may have been "
            "rolled or deleted",
        )
    if probe.status >= 500 or probe.status == 429:
        return fail(
            name,
            f"{where} answered {probe.status} ({probe.message})",
            "Stripe is having trouble: run check again in a minute",
        )
    return ok(name, f"{where} answers with this key ({probe.seconds * 1000:.0f} ms)")


def network_reason(message: str) -> str:
    """Pull the cause out of the SDK's long network error ("Connection refused", …)."""
    if match := re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", message):
        return match.group(1).strip()
    if "timed out" in message.lower() or "timeout" in message.lower():
        return "timed out"
    last = (message.strip().splitlines() or ["no answer"])[-1]
    return last if len(last) <= 120 else last[:117] + "…"


@dataclass(frozen=True, eq=False)
class Permission:
    """A permission the store's key needs, and the request that shows whether it has it."""

    resource: str  # as the Dashboard's restricted-key form names it
    access: str  # "Read" | "Write"
    name: str  # as Stripe names it in a refusal
    method: str
    path: str
    params: Mapping[str, Any]


PERMISSIONS = (
    # The probe is the call sync-stripe makes to rename a product (POST /v1/products/{id});
    # creating and reading products need the same permission.
    Permission(
        "Products", "Write", "rak_product_write", "post", f"/v1/products/prod_{PROBE_ID}", {}
    ),
    Permission("Prices", "Write", "rak_plan_write", "post", f"/v1/prices/price_{PROBE_ID}", {}),
    Permission(
        "Payment Links",
        "Write",
        "rak_payment_links_write",
        "post",
        f"/v1/payment_links/plink_{PROBE_ID}",
        {},
    ),
    Permission(
        "Checkout Sessions",
        "Write",
        "rak_checkout_session_write",
        "post",
        f"/v1/checkout/sessions/cs_{PROBE_ID}/expire",
        {},
    ),
    Permission(
        "PaymentIntents",
        "Write",
        "rak_payment_intent_write",
        "post",
        f"/v1/payment_intents/pi_{PROBE_ID}/cancel",
        {},
    ),
    Permission(
        "Refunds",
        "Write",
        "rak_refund_write",
        "post",
        "/v1/refunds",
        {"payment_intent": f"pi_{PROBE_ID}"},
    ),
    Permission("Events", "Read", "rak_event_read", "get", "/v1/events", {"limit": 1}),
)
WEBHOOK_READ = Permission(
    "Webhook Endpoints", "Read", "rak_webhook_read", "get", "/v1/webhook_endpoints", {"limit": 1}
)


def needed_permissions(setup: Setup) -> tuple[Permission, ...]:
    """Return the permissions this set-up needs (webhook endpoints only for webhooks)."""
    if setup.events_by_webhook and not setup.sandbox:
        return (*PERMISSIONS, WEBHOOK_READ)
    return PERMISSIONS


def missing_permission(message: str) -> str | None:
    """Return the permission a Stripe refusal names ("Having the 'rak_…' permission …")."""
    match = re.search(r"\b(rak_[a-z_]+)\b", message)
    return match.group(1) if match else None


def check_permissions(answers: Mapping[Permission, payments.Probe]) -> Result:
    """Check the key may make every call the store makes (403 names what it lacks)."""
    name = "permissions"
    lacking = [
        (need, missing_permission(answer.message) or need.name)
        for need, answer in answers.items()
        if answer.status == 403
    ]
    unanswered = [need for need, answer in answers.items() if answer.status is None]
    if lacking:
        names = ", ".join(f"{rak} ({need.resource}: {need.access})" for need, rak in lacking)
        return fail(
            name,
            f"the key lacks {names}",
            "edit the restricted key in the Dashboard (Developers > API keys) and grant "
            "these, as listed in the README (Running the booth)",
        )
    if unanswered:
        return fail(
            name,
            "not all checked: no answer for " + ", ".join(n.resource for n in unanswered),
            "check the network, then run check again",
        )
    granted = ", ".join(f"{n.resource} {n.access.lower()}" for n in answers)
    return ok(name, f"the key may do all the store does ({granted})")


def check_clock(probe: payments.Probe, asked_at: float) -> Result:
    """Check this laptop's clock against Stripe's Date header."""
    name = "clock"
    if probe.date is None:
        return ok(name, "not compared: the in-process sandbox runs on this laptop's clock")
    try:
        theirs = email.utils.parsedate_to_datetime(probe.date).timestamp()
    except (TypeError, ValueError):
        return fail(name, f"Stripe's Date header {probe.date!r} is unreadable", "run again")
    # The header is stamped somewhere during the round trip: compare with its middle.
    skew = asked_at + probe.seconds / 2 - theirs
    if abs(skew) > MAX_CLOCK_SKEW_SECONDS:
        side = "ahead of" if skew > 0 else "behind"
        return fail(
            name,
            f"this laptop's clock is {abs(skew):.0f} s {side} Stripe's: webhooks over 5 "
            "minutes old are refused and checkout sessions can be",
            "turn on network time (Settings > Date & Time, or `timedatectl set-ntp true`)",
        )
    return ok(name, f"within {max(abs(skew), 1):.0f} s of Stripe's")
