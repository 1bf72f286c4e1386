"""How events and phones reach the store: polling or a webhook endpoint, and PUBLIC_URL."""

from __future__ import annotations

import ipaddress
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .. import fulfilment
from .results import Result, Setup, fail, ok

EVENT_SOURCES = ("auto", "webhook", "poll")
WEBHOOK_PATH = "/stripe/webhook"


def check_events(setup: Setup) -> Result:
    """Say how Stripe's events will reach the store, and whether that can work."""
    name = "events"
    if setup.event_source not in EVENT_SOURCES:
        return fail(
            name,
            f"EVENT_SOURCE is {setup.event_source!r}",
            "set it to auto (the default), webhook or poll",
        )
    if setup.sandbox:
        if setup.sandbox_deliver:
            return ok(name, "the sandbox posts each event to this store's webhook")
        return ok(name, f"polling the sandbox's events every {setup.poll_seconds:g} s")
    if setup.event_source == "webhook" and not setup.webhook_secret:
        return fail(
            name,
            "EVENT_SOURCE is webhook but STRIPE_WEBHOOK_SECRET is not set: every event "
            "would be refused",
            "set the endpoint's signing secret (whsec_…), or EVENT_SOURCE=poll (no public "
            "URL needed)",
        )
    if setup.events_by_webhook:
        return ok(name, f"webhooks to {setup.public_url or '(no PUBLIC_URL)'}{WEBHOOK_PATH}")
    return ok(
        name,
        f"polling Stripe's /v1/events every {setup.poll_seconds:g} s: no public URL needed",
    )


def check_webhook_endpoint(setup: Setup, endpoints: list[Any]) -> Result:
    """Check the account has an enabled endpoint for PUBLIC_URL sending the handled events."""
    name = "webhook"
    if not setup.public_url:
        return fail(
            name,
            "STRIPE_WEBHOOK_SECRET is set, so the store waits for webhooks, but PUBLIC_URL is "
            "not: no Stripe endpoint can reach this laptop",
            "unset STRIPE_WEBHOOK_SECRET (or set EVENT_SOURCE=poll) to poll instead; or set "
            "PUBLIC_URL to the address Stripe posts to",
        )
    url = setup.public_url + WEBHOOK_PATH
    mine = [e for e in endpoints if (getattr(e, "url", "") or "").rstrip("/") == url]
    if not mine:
        return fail(
            name,
            f"no webhook endpoint for {url} on this account",
            "add one in the Dashboard (Developers > Webhooks) with the events listed in "
            "docs/payments.md (Webhooks) and set its signing secret as "
            "STRIPE_WEBHOOK_SECRET, or poll instead (EVENT_SOURCE=poll)",
        )
    enabled = [e for e in mine if getattr(e, "status", "enabled") == "enabled"]
    if not enabled:
        return fail(name, f"the endpoint for {url} is disabled", "enable it in the Dashboard")
    wanted = set(fulfilment.HANDLERS)

    def unsent(endpoint: Any) -> list[str]:
        sent = set(getattr(endpoint, "enabled_events", None) or [])
        return [] if "*" in sent else sorted(wanted - sent)

    best = min(enabled, key=lambda e: len(unsent(e)))
    if missing := unsent(best):
        return fail(
            name,
            f"the endpoint for {url} does not send {', '.join(missing)}",
            "add these events to it in the Dashboard (Developers > Webhooks)",
        )
    return ok(name, f"{best.id} sends the store's {len(wanted)} event types to {url}")


def phones_need_the_server(setup: Setup) -> list[str]:
    """Return why phones (or Stripe) must reach this server, if anything needs them to."""
    needs = []
    if setup.purchase_mode != "payment_link":
        needs.append(f"PURCHASE_MODE {setup.purchase_mode} sends phones to this server")
    if setup.sandbox:
        needs.append("the sandbox's payment pages are served by this laptop")
    elif setup.events_by_webhook:
        needs.append("Stripe posts webhooks to it")
    return needs


def answers(url: str, timeout: float = 5) -> str | None:
    """Return None when `url` answers 200, else why not."""
    # Straight there, never through the laptop's proxy settings: phones use no proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return None if response.status == 200 else f"answered {response.status}"
    except urllib.error.HTTPError as e:
        return f"answered {e.code}"
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return f"no answer: {reason}"


def check_public_url(setup: Setup, fetch: Callable[[str], str | None] = answers) -> Result:
    """Check PUBLIC_URL is set, not this laptop's loopback, and answers, when it must."""
    name = "public url"
    needs = phones_need_the_server(setup)
    if not needs:
        return ok(name, "not needed: phones pay on Stripe's pages and events are polled")
    why = "; ".join(needs)
    url = setup.public_url
    if setup.sandbox and (not url or _loopback(urlsplit(url).hostname or "")):
        # A rehearsal on the laptop alone is fine; phones need its LAN address.
        where = url or "this server's own address"
        return ok(
            name,
            f"sandbox pages at {where}: this laptop's browser reaches them, phones do not "
            "(`make dev HOST=0.0.0.0` rehearses with phones)",
        )
    if not setup.public_url:
        return fail(
            name,
            f"PUBLIC_URL is not set, yet {why}",
            "set PUBLIC_URL to the address phones reach, e.g. http://192.168.1.20:8080 "
            "(`make public` and `make dev HOST=0.0.0.0` set it to the laptop's LAN address)",
        )
    parts = urlsplit(setup.public_url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        return fail(name, f"PUBLIC_URL {setup.public_url!r} is not an http(s) URL", "fix it")
    if _loopback(host):
        return fail(
            name,
            f"PUBLIC_URL {setup.public_url} is this laptop's own address, which no phone "
            f"reaches ({why})",
            "use the laptop's LAN address or a public name",
        )
    if _live(setup.key) and setup.events_by_webhook and parts.scheme != "https":
        return fail(
            name,
            f"Stripe sends live webhooks only to https URLs, not {setup.public_url}",
            "serve the store over https (a reverse proxy with a certificate)",
        )
    problem = fetch(setup.public_url + "/healthz")
    if problem:
        return fail(
            name,
            f"{setup.public_url}/healthz {problem} ({why})",
            "start the store first (make run, or make public), then check again; or fix "
            "PUBLIC_URL",
        )
    return ok(name, f"{setup.public_url} answers ({why})")


def _live(key: str | None) -> bool:
    return bool(key) and key[2:8] == "_live_"


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified
