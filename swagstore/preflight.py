"""The preflight a volunteer runs before doors open (`flask --app swagstore check`).

Each check is a small function returning a `Result`: OK with what it found, or FAIL with
what is wrong and the fix. They read the configuration, the database and Stripe, and
change nothing: Stripe is asked about ids that exist nowhere, so its answers show what the
key may do without making anything, and the database write is rolled back. `run` runs
them in order; when Stripe cannot be reached, the checks that need it are left out.
"""

from __future__ import annotations

import email.utils
import ipaddress
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from alembic.script import ScriptDirectory
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from . import amounts, fulfilment, payments, schema
from .models import PaymentLink, Product, Stock, Store, db

KEY_KINDS = {
    "sk_live_": ("live", "secret key"),
    "rk_live_": ("live", "restricted key"),
    "sk_test_": ("test", "secret key"),
    "rk_test_": ("test", "restricted key"),
}
EVENT_SOURCES = ("auto", "webhook", "poll")
# Webhooks older than 300 s are refused and Checkout sessions are made 35 minutes ahead
# with 5 to spare: a minute off is a warning sign well inside both.
MAX_CLOCK_SKEW_SECONDS = 60
# A booth day writes a few megabytes; SQLite needs room for its WAL and a checkpoint.
MIN_FREE_BYTES = 500 * 1024 * 1024
WEBHOOK_PATH = "/stripe/webhook"
PROBE_ID = "swagstore_check"


@dataclass(frozen=True)
class Result:
    """One check's outcome: what it found, and the fix when it failed."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        """Return the one line the command prints."""
        text = f"{'OK' if self.ok else 'FAIL':<5} {self.name:<15} {self.detail}"
        return f"{text}. Fix: {self.fix}" if self.fix and not self.ok else text


def ok(name: str, detail: str) -> Result:
    """Return a passed check."""
    return Result(name, True, detail)


def fail(name: str, detail: str, fix: str) -> Result:
    """Return a failed check with its fix."""
    return Result(name, False, detail, fix)


@dataclass(frozen=True)
class Setup:
    """What the checks look at, read once from the app's configuration."""

    key: str | None
    expect: str | None  # "live" | "test" | "sandbox", or None: any real key
    sandbox: bool
    api_base: str | None
    event_source: str
    webhook_secret: str | None
    sandbox_deliver: bool
    public_url: str | None
    purchase_mode: str
    link_capture: str
    store: str
    poll_seconds: float
    database_url: str
    instance_path: str

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], instance_path: str, expect: str | None = None
    ) -> Setup:
        """Read a Setup from Flask config."""
        deliver = config.get("SANDBOX_DELIVER", True)
        if isinstance(deliver, str):
            deliver = deliver.strip().lower() not in ("0", "false", "no", "off")
        return cls(
            key=config.get("STRIPE_SECRET_KEY") or None,
            expect=expect,
            sandbox=bool(config["SANDBOX"]),
            api_base=config.get("STRIPE_API_BASE") or None,
            event_source=str(config.get("EVENT_SOURCE") or "auto").lower(),
            webhook_secret=config.get("STRIPE_WEBHOOK_SECRET") or None,
            sandbox_deliver=bool(deliver),
            public_url=(config.get("PUBLIC_URL") or "").rstrip("/") or None,
            purchase_mode=config["PURCHASE_MODE"],
            link_capture=config["LINK_CAPTURE"],
            store=config["STORE_ID"],
            poll_seconds=float(config.get("POLL_SECONDS", 3)),
            database_url=str(config["SQLALCHEMY_DATABASE_URI"]),
            instance_path=instance_path,
        )

    @property
    def events_by_webhook(self) -> bool:
        """Tell whether Stripe's events reach the store by webhook (else it polls)."""
        if self.sandbox:
            return self.sandbox_deliver
        if self.event_source == "auto":
            return self.webhook_secret is not None
        return self.event_source == "webhook"


# The key -----------------------------------------------------------------------------------


def check_key(setup: Setup) -> Result:
    """Check a key is set, looks like a Stripe secret key, and is live or test as expected."""
    name = "key"
    if not setup.key:
        if setup.expect == "sandbox":
            return ok(name, "no STRIPE_SECRET_KEY: the offline sandbox, as expected")
        return fail(
            name,
            "no STRIPE_SECRET_KEY: the store runs as its offline sandbox and takes no money",
            "set SWAGSTORE_STRIPE_SECRET_KEY to the booth's restricted key (rk_live_…; "
            "README, Running the booth), or run `check --expect sandbox` for a rehearsal",
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
            f"set the {setup.expect} key (rk_{setup.expect}_…) as SWAGSTORE_STRIPE_SECRET_KEY",
        )
    if mode == "test":
        found += ": no real money moves"
    elif kind == "secret key":
        found += ": a restricted key (rk_live_) would limit the harm if the laptop is lost"
    return ok(name, found)


# Stripe ------------------------------------------------------------------------------------


def check_reachable(setup: Setup, probe: payments.Probe) -> Result:
    """Check Stripe answered (any answer but a refused key): the network and the key work."""
    name = "stripe"
    where = setup.api_base or ("the in-process sandbox" if setup.sandbox else "api.stripe.com")
    if probe.status is None:
        return fail(
            name,
            f"no answer from {where} ({probe.message.strip().splitlines()[-1]})",
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


# Events ------------------------------------------------------------------------------------


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
        f"polling Stripe's /v1/events every {setup.poll_seconds:g} s (the worker, started by "
        "make run): no public URL needed",
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
            "add one in the Dashboard (Developers > Webhooks) with the events listed in the "
            "README and set its signing secret as STRIPE_WEBHOOK_SECRET, or poll instead "
            "(EVENT_SOURCE=poll)",
        )
    enabled = [e for e in mine if getattr(e, "status", "enabled") == "enabled"]
    if not enabled:
        return fail(name, f"the endpoint for {url} is disabled", "enable it in the Dashboard")
    wanted = set(fulfilment.HANDLERS)
    sent = set(getattr(enabled[0], "enabled_events", None) or [])
    missing = sorted(wanted - sent) if "*" not in sent else []
    if missing:
        return fail(
            name,
            f"the endpoint for {url} does not send {', '.join(missing)}",
            "add these events to it in the Dashboard (Developers > Webhooks)",
        )
    return ok(name, f"{enabled[0].id} sends the store's {len(wanted)} event types to {url}")


# Phones ------------------------------------------------------------------------------------


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


# The catalog on Stripe ---------------------------------------------------------------------


def check_prices(store: str) -> Result:
    """Check every item's price is one Stripe will charge (its minimum, zero-decimal right)."""
    name = "prices"
    rows = db.session.execute(
        select(Product.sku, Product.price, Product.currency)
        .join(Stock, Stock.sku == Product.sku)
        .where(Stock.store == store)
        .order_by(Product.position, Product.sku)
    ).all()
    db.session.rollback()
    if not rows:
        return fail(
            name,
            f"store {store!r} has no items",
            "load the catalog: `flask --app swagstore load-catalog instance/catalog.toml`",
        )
    refused = [
        f"{sku} ({why})" for sku, price, cur in rows if (why := amounts.refusal(price, cur))
    ]
    if refused:
        return fail(
            name,
            "Stripe would refuse to charge " + "; ".join(refused),
            "fix the price in the catalog and run load-catalog (a free item is a giveaway, "
            "which staff record on /admin)",
        )
    unknown = sorted({cur.upper() for _, _, cur in rows if amounts.minimum(cur) is None})
    note = (
        f" (no published minimum for {', '.join(unknown)}: Stripe applies your payout "
        "currency's after converting)"
        if unknown
        else ""
    )
    low = min(rows, key=lambda row: row[1] / 10 ** amounts.decimals(row[2]))
    cheapest = f"cheapest {low[0]} at {amounts.shown(low[1], low[2])}"
    return ok(name, f"{len(rows)} items at or above Stripe's minimum charge; {cheapest}{note}")


@dataclass(frozen=True)
class ItemOnStripe:
    """An item as the database and Stripe see it, for the sync and link checks."""

    sku: str
    price: int
    currency: str
    available: int
    price_id: str | None
    link: PaymentLink | None
    stripe_price: Any = None  # the Price on Stripe, or None
    stripe_link: Any = None  # the PaymentLink on Stripe, or None
    problem: str | None = None  # what Stripe said when asked


def items_on_stripe(store: str, gateway: payments.Gateway) -> list[ItemOnStripe]:
    """Read each item of a store and ask Stripe for its price and current link."""
    rows = db.session.execute(
        select(Product, Stock.on_hand - Stock.reserved)
        .join(Stock, Stock.sku == Product.sku)
        .where(Stock.store == store)
        .order_by(Product.position, Product.sku)
    ).all()
    links = {
        link.sku: link
        for link in db.session.scalars(
            select(PaymentLink).where(PaymentLink.store == store, PaymentLink.retired_at.is_(None))
        )
    }
    items = [
        ItemOnStripe(p.sku, p.price, p.currency, available, p.stripe_price_id, links.get(p.sku))
        for p, available in rows
    ]
    for link in links.values():
        db.session.expunge(link)
    db.session.rollback()  # no transaction open across the calls below
    found = []
    for item in items:
        try:
            price = gateway.retrieve_price(item.price_id) if item.price_id else None
            link = gateway.retrieve_payment_link(item.link.id) if item.link else None
        except payments.PaymentsError as e:
            found.append(replace(item, problem=str(e).strip().splitlines()[-1]))
            continue
        found.append(replace(item, stripe_price=price, stripe_link=link))
    return found


def unsynced(item: ItemOnStripe, setup: Setup) -> str | None:
    """Say what sync-stripe would still change for an item, or None when it is in sync."""
    if item.problem:
        return f"Stripe: {item.problem}"
    if item.link is None or item.stripe_link is None:
        return "no payment link yet"
    price = item.stripe_price
    if price is None or (price.unit_amount, price.currency) != (item.price, item.currency):
        return "its price changed since the last sync"
    if item.link.price_id != item.price_id:
        return "its link sells an older price"
    intent_data = item.stripe_link.payment_intent_data
    capture = (intent_data.capture_method if intent_data else None) or "automatic"
    if capture != setup.link_capture:
        return f"its link captures {capture}, LINK_CAPTURE is {setup.link_capture}"
    if setup.sandbox and setup.public_url and not item.link.url.startswith(setup.public_url):
        return f"its link points at {item.link.url.split('/sandbox/')[0]}, not PUBLIC_URL"
    return None


def check_synced(items: list[ItemOnStripe], setup: Setup) -> Result:
    """Check every item has its product, price and payment link on Stripe, up to date."""
    name = "synced"
    behind: dict[str, list[str]] = {}
    for item in items:
        if why := unsynced(item, setup):
            behind.setdefault(why, []).append(item.sku)
    if behind:
        return fail(
            name,
            "not in line with Stripe: "
            + "; ".join(f"{', '.join(skus)}: {why}" for why, skus in behind.items()),
            "run `flask --app swagstore sync-stripe`",
        )
    return ok(name, f"all {len(items)} items have their price and payment link on Stripe")


def active_matches_stock(item: ItemOnStripe) -> str | None:
    """Say how an item's link on Stripe disagrees with its stock, or None."""
    active = bool(item.stripe_link.active)
    if active and item.available <= 0:
        return f"{item.sku}: link on at {item.available} available (a visitor pays for nothing)"
    if not active and item.available > 0:
        return f"{item.sku}: link off with {item.available} available (scans show sold out)"
    return None


# Each rule compares one item's link on Stripe with its stock. Issue 14 (link limits) adds
# its rule here: restrictions.completed_sessions.limit == completed count + available.
LINK_RULES: tuple[Callable[[ItemOnStripe], str | None], ...] = (active_matches_stock,)


def check_links(items: list[ItemOnStripe]) -> Result:
    """Check each payment link on Stripe matches its item's stock (on when there is some)."""
    name = "links"
    linked = [i for i in items if i.stripe_link is not None]
    wrong = [why for item in linked for rule in LINK_RULES if (why := rule(item))]
    if wrong:
        return fail(
            name,
            "; ".join(wrong),
            "the worker switches links within seconds while `make run` runs; if this "
            "stays, run `flask --app swagstore sync-stripe`",
        )
    on = sum(1 for i in linked if i.stripe_link.active)
    return ok(name, f"{on} links on, {len(linked) - on} off, each as its stock says")


# This laptop -------------------------------------------------------------------------------


def check_database(store: str) -> Result:
    """Check the schema is current, the store exists, and a write goes through (rolled back)."""
    name = "database"
    fix_init = "run `flask --app swagstore init-db` (make run does)"
    try:
        with db.engine.connect() as conn:
            head = ScriptDirectory.from_config(schema.migrate.get_config()).get_current_head()
            revision = schema.current(conn)
            conn.rollback()
            if revision != head:
                found = f"at revision {revision}" if revision else "has no tables yet"
                return fail(name, f"the schema {found} (the newest is {head})", fix_init)
            # A real write, rolled back: proves the file (and its folder) take writes and
            # no other process holds the write lock past the busy timeout.
            with conn.begin() as transaction:
                touched = conn.execute(
                    update(Store).where(Store.id == store).values(name=Store.name)
                ).rowcount
                transaction.rollback()
    except OperationalError as e:
        reason = str(e.orig).strip()
        fix = "check the file and its folder are writable by this user, and no other program "
        fix += "holds the database" if "locked" in reason else "can write there"
        return fail(name, f"cannot write: {reason}", fix)
    except SQLAlchemyError as e:
        return fail(name, f"unusable: {str(e).splitlines()[0]}", fix_init)
    if touched != 1:
        return fail(name, f"no store {store!r} in the database", fix_init)
    where = db.engine.url.render_as_string(hide_password=True)
    return ok(name, f"writable, schema {head}: {where}")


def database_folder(setup: Setup) -> str:
    """Return the folder whose disk holds the data this laptop writes."""
    url = setup.database_url
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return os.path.dirname(os.path.abspath(url.removeprefix("sqlite:///"))) or "."
    return setup.instance_path


def check_disk(folder: str, min_free: int = MIN_FREE_BYTES) -> Result:
    """Check the disk under a folder has room for a day of sales and logs."""
    name = "disk"
    usage = shutil.disk_usage(folder)
    free = f"{usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.0f} GiB"
    if usage.free < min_free:
        return fail(
            name,
            f"{folder}: only {free}",
            f"free at least {min_free / 2**20:.0f} MiB (old logs, downloads) before the booth",
        )
    return ok(name, f"{folder}: {free}")


# All of it ---------------------------------------------------------------------------------


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
