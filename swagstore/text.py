"""Text that staff type into a form: one line, storable in any database, of bounded length."""

from __future__ import annotations

import unicodedata

# Control characters (NUL among them: PostgreSQL refuses it in text) and lone surrogates
# (no encoding can store them). Format characters stay: emoji sequences are made of them.
_DROPPED = frozenset({"Cc", "Cs"})


def one_line(text: str | None, limit: int) -> str:
    """Return typed text as one line: whitespace runs as one space, control characters
    dropped, at most `limit` characters."""
    kept = "".join(
        c for c in (text or "") if c.isspace() or unicodedata.category(c) not in _DROPPED
    )
    return " ".join(kept.split())[:limit]
