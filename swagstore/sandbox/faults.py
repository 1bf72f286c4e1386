"""Injected faults, kept in the database so every worker process sees them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update

from ..models import db
from .models import SandboxFault

# error: a 500 before the endpoint runs (nothing kept under an Idempotency-Key);
# crash: the endpoint starts and fails with a 500, which is kept and replayed, as Stripe does;
# timeout: the work is done and kept, the answer comes `seconds` late.
MODES = ("error", "crash", "timeout")


@dataclass(frozen=True)
class Fault:
    """How one API call is to fail."""

    mode: str  # see MODES
    seconds: float


def add(path_prefix: str, count: int, mode: str = "error", seconds: float = 0) -> SandboxFault:
    """Make the next `count` API calls whose path starts with `path_prefix` fail."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if count < 1:
        raise ValueError("count must be at least 1")
    fault = SandboxFault(path_prefix=path_prefix, mode=mode, remaining=count, seconds=seconds)
    db.session.add(fault)
    db.session.flush()
    return fault


def take(path: str) -> Fault | None:
    """Use up one fault matching an API path, if any is left."""
    candidates = db.session.scalars(
        select(SandboxFault).where(SandboxFault.remaining > 0).order_by(SandboxFault.id)
    ).all()
    for fault in candidates:
        if not path.startswith(fault.path_prefix):
            continue
        # Guarded, so two workers never spend the same unit of a fault.
        taken = db.session.execute(
            update(SandboxFault)
            .where(SandboxFault.id == fault.id, SandboxFault.remaining > 0)
            .values(remaining=SandboxFault.remaining - 1)
        )
        if taken.rowcount == 1:
            return Fault(fault.mode, fault.seconds)
    return None


def pending() -> list[dict[str, object]]:
    """List faults with calls left to fail."""
    rows = db.session.scalars(select(SandboxFault).where(SandboxFault.remaining > 0))
    return [
        {
            "path_prefix": f.path_prefix,
            "mode": f.mode,
            "remaining": f.remaining,
            "seconds": f.seconds,
        }
        for f in rows
    ]


def clear() -> None:
    """Remove every fault."""
    db.session.execute(delete(SandboxFault))
