"""Check JSON the sandbox answers against Stripe's object schemas (tests/data, vendored).

The schemas are written by tools/vendor_stripe_spec.py from Stripe's OpenAPI spec and the
pinned SDK; `problems(value, kind)` lists every way a value differs from its schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = json.loads(
    (Path(__file__).parent / "data" / "stripe_object_schemas.json").read_text(encoding="utf-8")
)
SCHEMAS: dict[str, Any] = DATA["objects"]
ERROR_CODES: frozenset[str] = frozenset(DATA["error_codes"])
_TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def problems(value: Any, kind: str) -> list[str]:
    """List how a Stripe object (or an `error` body) differs from the API's schema."""
    found: list[str] = []
    _check(value, SCHEMAS[kind], kind, found)
    if kind == "error" and isinstance(value, dict):
        code = value.get("error", {}).get("code")
        if code is not None and code not in ERROR_CODES:
            found.append(f"error.code: {code!r} is not one of Stripe's error codes")
    return found


def _check(value: Any, schema: dict[str, Any], path: str, found: list[str]) -> None:
    if value is None:
        if not schema.get("nullable") and schema.get("type") != "any":
            found.append(f"{path}: null, but the API never has null here")
        return
    if "anyOf" in schema:
        tries = []
        for option in schema["anyOf"]:
            inner: list[str] = []
            _check(value, option, path, inner)
            if not inner:
                return
            tries.append(inner)
        found.append(f"{path}: matches none of its forms ({tries[0][0]})")
        return
    kind = schema.get("type", "any")
    if kind == "any":
        return
    expected = _TYPES[kind]
    if not isinstance(value, expected) or (kind != "boolean" and isinstance(value, bool)):
        found.append(f"{path}: {type(value).__name__} {value!r:.40}, the API has {kind}")
        return
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if kind == "string" and len(value) > schema.get("maxLength", len(value)):
        found.append(f"{path}: longer than {schema['maxLength']}")
    if kind == "array":
        for n, item in enumerate(value):
            _check(item, schema.get("items", {"type": "any"}), f"{path}[{n}]", found)
    if kind == "object":
        _object(value, schema, path, found)


def _object(value: dict[str, Any], schema: dict[str, Any], path: str, found: list[str]) -> None:
    props = schema.get("properties")
    extra = schema.get("additionalProperties")
    if props is None:
        if extra is not None:
            for key, inner in value.items():
                _check(inner, extra, f"{path}.{key}", found)
        return
    for key, inner in value.items():
        if key in props:
            _check(inner, props[key], f"{path}.{key}", found)
        elif extra is not None:
            _check(inner, extra, f"{path}.{key}", found)
        else:
            found.append(f"{path}.{key}: not a field of this object in the API")
    for key in schema.get("required", []):
        if key not in value:
            found.append(f"{path}.{key}: missing, the API always has it")
