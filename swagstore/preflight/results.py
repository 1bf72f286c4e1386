"""What every check returns (`Result`), and the set-up they all look at (`Setup`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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
    locale: str
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
            locale=str(config.get("LOCALE") or "en_US"),
            poll_seconds=float(config["POLL_SECONDS"]),
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
