"""Stripe's form encoding: `metadata[sku]=x&line_items[0][price]=y` to nested dicts and lists."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .errors import invalid

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def decode(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Decode form pairs with bracket keys into nested dicts (`a[]` numbers its entries).

    Which dicts are arrays is the API's to say: params.check() makes them lists.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise invalid(f"Invalid parameter name: {key}", param=key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for n, part in enumerate(parts[:-1]):
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
            if parts[n + 1] == "":
                parts[n + 1] = str(len(node))
        node[parts[-1]] = value
    return root


def integer(params: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    """Return an integer param, or raise Stripe's invalid-integer error."""
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise invalid(f"Missing required param: {name}.", param=name, code="parameter_missing")
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid integer: {value}", param=name) from None


def boolean(params: dict[str, Any], name: str) -> bool | None:
    """Return a boolean param ("true"/"false"), or raise Stripe's invalid-boolean error."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if value in ("true", "false"):
        return value == "true"
    raise invalid(f"Invalid boolean: {value}", param=name)


def text(params: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    """Return a string param."""
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise invalid(f"Missing required param: {name}.", param=name, code="parameter_missing")
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid string: {value!r}", param=name)
    return value


def metadata(params: dict[str, Any], name: str = "metadata") -> dict[str, str] | None:
    """Return a metadata hash (an empty string unsets it, as in Stripe)."""
    value = params.get(name)
    if value is None:
        return None
    if value == "":
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise invalid("Invalid hash", param=name)
    return dict(value)


def strings(params: dict[str, Any], name: str) -> list[str]:
    """Return a list-of-strings param (`types[]=a&types[]=b`)."""
    value = params.get(name)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise invalid("Invalid array", param=name)
