"""Stripe's parameter checks, read from the vendored API description (data/stripe_params.json).

Every request is checked before its endpoint runs, as Stripe checks it: a name the pinned API
version does not know is `parameter_unknown`, a missing required one `parameter_missing`, a
wrong type or value `parameter_invalid_*` (or Stripe's plain message where it has no code).
What passes is then held to what the sandbox implements, so a parameter Stripe would honour
and the sandbox would ignore is refused loudly instead of passing silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from typing import Any

from .errors import StripeError, invalid

_INTEGER = re.compile(r"^-?\d+$")
_NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)$")
# Which problem Stripe names when a request has several: the most basic first.
UNKNOWN, MISSING, INVALID = 0, 1, 2


@cache
def operations() -> dict[str, Any]:
    """Return the vendored parameter schemas, keyed "METHOD /v1/path"."""
    text = files(__package__).joinpath("data/stripe_params.json").read_text(encoding="utf-8")
    return dict(json.loads(text)["operations"])


def check(operation: str, raw: dict[str, Any], supported: Iterable[str]) -> dict[str, Any]:
    """Check decoded params against an operation; return them with arrays as lists."""
    problems: list[tuple[int, StripeError]] = []
    shaped = _walk(operations()[operation], raw, "", problems)
    if problems:
        raise min(problems, key=lambda p: p[0])[1]
    allowed = tuple(supported)
    for path in (leaf for key in raw for leaf in _leaves(raw[key], (key,))):
        dotted = ".".join(p for p in path if not p.isdigit())
        if not any(dotted == s or dotted.startswith(s + ".") for s in allowed):
            raise invalid(
                f"The sandbox does not implement `{_name(path)}` of {operation} (Stripe "
                "accepts it); leave it out or teach swagstore/sandbox to honour it.",
                param=_name(path),
            )
    return shaped


def _walk(schema: dict[str, Any], value: Any, path: str, problems: list) -> Any:
    if value == "" and (schema.get("emptyable") or schema.get("type") == "any"):
        return value
    if "anyOf" in schema:
        return _any_of(schema, value, path, problems)
    kind = schema.get("type", "any")
    if value == "" and kind != "any":
        problems.append((INVALID, _empty(path)))
        return value
    if kind == "object":
        return _object(schema, value, path, problems)
    if kind == "array":
        return _array(schema, value, path, problems)
    if isinstance(value, dict):
        problems.append((INVALID, invalid(f"Invalid {_noun(kind)}: {path}", param=path)))
        return value
    if kind == "integer" and not _INTEGER.match(value):
        problems.append(
            (INVALID, invalid(f"Invalid integer: {value}", param=path, code=_code("integer")))
        )
    elif kind == "number" and not _NUMBER.match(value):
        problems.append((INVALID, invalid(f"Invalid decimal: {value}", param=path)))
    elif kind == "boolean" and value not in ("true", "false"):
        problems.append((INVALID, invalid(f"Invalid boolean: {value}", param=path)))
    elif kind == "string":
        _string(schema, value, path, problems)
    return value


def _string(schema: dict[str, Any], value: str, path: str, problems: list) -> None:
    if "enum" in schema and value not in schema["enum"]:
        choices = schema["enum"]
        listed = (
            ", ".join(choices[:-1]) + f", or {choices[-1]}" if len(choices) > 1 else choices[0]
        )
        problems.append((INVALID, invalid(f"Invalid {path}: must be one of {listed}", param=path)))
    elif not value.strip():
        problems.append(
            (
                INVALID,
                invalid(
                    f"You passed a blank string for '{path}'. You should remove '{path}' "
                    "from your request or supply a non-blank value.",
                    param=path,
                    code="parameter_invalid_string_blank",
                ),
            )
        )
    elif "maxLength" in schema and len(value) > schema["maxLength"]:
        shown = value if len(value) <= 40 else value[:37] + "..."
        problems.append(
            (
                INVALID,
                invalid(
                    f"Invalid string: {shown}; must be at most {schema['maxLength']} characters",
                    param=path,
                ),
            )
        )


def _object(schema: dict[str, Any], value: Any, path: str, problems: list) -> Any:
    if not isinstance(value, dict):
        problems.append((INVALID, invalid("Invalid hash", param=path or None)))
        return value
    props = schema.get("properties")
    extra = schema.get("additionalProperties")
    if props is None and extra is None:
        return value
    shaped = {}
    for key, inner in value.items():
        where = f"{path}[{key}]" if path else key
        if props is not None and key in props:
            shaped[key] = _walk(props[key], inner, where, problems)
        elif extra is not None:
            shaped[key] = _walk(extra, inner, where, problems)
        else:
            problems.append(
                (
                    UNKNOWN,
                    invalid(
                        f"Received unknown parameter: {where}",
                        param=where,
                        code="parameter_unknown",
                    ),
                )
            )
    for key in schema.get("required", []):
        if key not in value:
            where = f"{path}[{key}]" if path else key
            problems.append(
                (
                    MISSING,
                    invalid(
                        f"Missing required param: {where}.", param=where, code="parameter_missing"
                    ),
                )
            )
    return shaped


def _array(schema: dict[str, Any], value: Any, path: str, problems: list) -> Any:
    if not isinstance(value, dict) or not all(k.isdigit() for k in value):
        problems.append((INVALID, invalid("Invalid array", param=path)))
        return value
    items = schema.get("items", {"type": "any"})
    return [_walk(items, value[key], f"{path}[{key}]", problems) for key in sorted(value, key=int)]


def _any_of(schema: dict[str, Any], value: Any, path: str, problems: list) -> Any:
    options = schema["anyOf"]
    if isinstance(value, dict):
        fitting = [o for o in options if o.get("type") in ("object", "array", "any")]
    else:
        fitting = [o for o in options if o.get("type") not in ("object", "array")]
    first: list = []
    for option in fitting or options:
        found: list = []
        shaped = _walk(option, value, path, found)
        if not found:
            return shaped
        first = first or found
    problems.extend(first)
    return value


def _leaves(value: Any, path: tuple[str, ...]) -> Iterable[tuple[str, ...]]:
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            yield from _leaves(inner, (*path, key))
    else:
        yield path


def _name(path: tuple[str, ...]) -> str:
    return path[0] + "".join(f"[{p}]" for p in path[1:])


def _empty(path: str) -> StripeError:
    return invalid(
        f"You passed an empty string for '{path}'. We assume empty values are an attempt to "
        f"unset a parameter; however '{path}' cannot be unset. You should remove '{path}' "
        "from your request or supply a non-empty value.",
        param=path,
        code="parameter_invalid_empty",
    )


def _noun(kind: str) -> str:
    return {"integer": "integer", "number": "decimal", "boolean": "boolean"}.get(kind, "string")


def _code(kind: str) -> str:
    return f"parameter_invalid_{kind}"
