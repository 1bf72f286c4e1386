"""Vendor the part of Stripe's API description that the sandbox and its tests need.

Usage: .venv/bin/python tools/vendor_stripe_spec.py SPEC3_JSON [--fixtures FIXTURES3_JSON]

Reads Stripe's OpenAPI spec (stripe/openapi `openapi/spec3.json`, API 2024-04-10) and the
installed `stripe` SDK, whose typed params and resources describe the API version the store
pins (newer than the spec). Writes two trimmed files that the repository keeps:

- swagstore/sandbox/data/stripe_params.json: the request parameters of every operation the
  sandbox serves (the sandbox checks each request against them at run time);
- tests/data/stripe_object_schemas.json: the schemas of the objects the sandbox answers, and
  Stripe's error codes (the conformance test checks every answer against them).

How the two sources combine, field by field and parameter by parameter:
- names: the pinned version's (the SDK's). A name only in the 2024 spec was removed since
  and is dropped; a name only in the SDK is newer and taken from it;
- enum values: the SDK's where it lists them (e.g. `ui_mode`: `hosted_page`), else the spec's;
- everything else (types, nullable, required, maxLength, "" to unset): the spec's, or the
  SDK's type for newer names;
- which fields an object always carries: the spec's required and nullable fields, plus the
  newer fields present in Stripe's newer example objects (fixtures3.json), when given;
- error codes: the SDK's list (`PaymentIntent.LastPaymentError.code`); the 2024 spec has none.
Expandable fields keep only their id form: the sandbox never expands.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

import stripe
from stripe._api_version import _ApiVersion
from stripe._object_classes import OBJECT_CLASSES
from stripe._stripe_object import StripeObject

ROOT = Path(__file__).resolve().parent.parent
PARAMS_OUT = ROOT / "swagstore" / "sandbox" / "data" / "stripe_params.json"
OBJECTS_OUT = ROOT / "tests" / "data" / "stripe_object_schemas.json"
SPEC_COMMIT = "b89252df"
FIXTURES_COMMIT = "f6c2a48f"

# What the sandbox serves (its own routes, not Stripe's rules): every operation here is
# checked against Stripe's parameters; every object here is checked by the tests.
OPERATIONS = [
    "GET /v1/products",
    "POST /v1/products",
    "GET /v1/products/{id}",
    "POST /v1/products/{id}",
    "GET /v1/prices",
    "POST /v1/prices",
    "GET /v1/prices/{price}",
    "POST /v1/prices/{price}",
    "GET /v1/payment_links",
    "POST /v1/payment_links",
    "GET /v1/payment_links/{payment_link}",
    "POST /v1/payment_links/{payment_link}",
    "GET /v1/payment_links/{payment_link}/line_items",
    "GET /v1/checkout/sessions",
    "POST /v1/checkout/sessions",
    "GET /v1/checkout/sessions/{session}",
    "GET /v1/checkout/sessions/{session}/line_items",
    "POST /v1/checkout/sessions/{session}/expire",
    "POST /v1/payment_intents",
    "GET /v1/payment_intents/{intent}",
    "POST /v1/payment_intents/{intent}/capture",
    "POST /v1/payment_intents/{intent}/cancel",
    "GET /v1/refunds",
    "POST /v1/refunds",
    "GET /v1/refunds/{refund}",
    "GET /v1/events",
    "GET /v1/events/{id}",
    "GET /v1/webhook_endpoints",
    "POST /v1/webhook_endpoints",
    "GET /v1/webhook_endpoints/{webhook_endpoint}",
    "DELETE /v1/webhook_endpoints/{webhook_endpoint}",
]
OBJECTS = [
    "product",
    "price",
    "payment_link",
    "checkout.session",
    "payment_intent",
    "refund",
    "item",
    "event",
    "webhook_endpoint",
]
NONE = type(None)
ANY = {"type": "any"}


class Report:
    """Counts of what came from where, printed at the end."""

    def __init__(self, sdk: Sdk) -> None:
        self.sdk = sdk
        self.removed: list[str] = []
        self.newer: list[str] = []
        self.enums: list[str] = []


# The spec ------------------------------------------------------------------------------


class Spec:
    """Stripe's OpenAPI document, read into the small schema language the repo uses."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.doc = document
        self.components = document["components"]["schemas"]

    def request(self, operation: str) -> dict[str, Any]:
        """Return an operation's parameters (form body or query) as one object schema."""
        method, path = operation.split(" ", 1)
        op = self.doc["paths"][path][method.lower()]
        body = op.get("requestBody", {}).get("content", {})
        schema = body.get("application/x-www-form-urlencoded", {}).get("schema")
        props: dict[str, Any] = {}
        required: list[str] = []
        if schema:
            props = {k: self.node(v, ()) for k, v in schema.get("properties", {}).items()}
            required = list(schema.get("required", []))
        for param in op.get("parameters", []):
            if param["in"] == "query":
                props[param["name"]] = self.node(param["schema"], ())
                if param.get("required"):
                    required.append(param["name"])
        return {"type": "object", "properties": props, "required": sorted(required)}

    def object(self, name: str) -> dict[str, Any]:
        """Return a response object's schema, with every reference written out."""
        return self.node({"$ref": f"#/components/schemas/{name}"}, ())

    def node(self, raw: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
        """Translate one OpenAPI schema; a reference met again on its own path stays open."""
        if "$ref" in raw:
            name = raw["$ref"].rsplit("/", 1)[1]
            if name in seen:
                return {"type": "any", "cycle": name}
            return self.node(self.components[name], (*seen, name))
        out: dict[str, Any] = {}
        if raw.get("nullable"):
            out["nullable"] = True
        if "anyOf" in raw:
            options = raw["anyOf"]
            if "x-expansionResources" in raw:
                # An id, or the object when expanded: the sandbox never expands.
                options = [o for o in options if "$ref" not in o]
                out["expandable"] = True
            if {"enum": [""], "type": "string"} in options:
                options = [o for o in options if o != {"enum": [""], "type": "string"}]
                out["emptyable"] = True
            nodes = [self.node(o, seen) for o in options]
            if len(nodes) == 1:
                merged = {**nodes[0], **out}
                if nodes[0].get("nullable"):
                    merged["nullable"] = True
                return merged
            return {**out, "type": "any", "anyOf": nodes}
        kind = raw.get("type", "object")
        out["type"] = kind
        if "enum" in raw:
            out["enum"] = list(raw["enum"])
        if "maxLength" in raw:
            out["maxLength"] = raw["maxLength"]
        if kind == "array":
            out["items"] = self.node(raw.get("items", {}), seen)
        if kind == "object":
            props = raw.get("properties")
            if props is not None:
                out["properties"] = {k: self.node(v, seen) for k, v in props.items()}
                always = set(raw.get("required", []))
                # A response field is always there when required or nullable; others (an
                # includable `line_items`, a `deleted` flag) only sometimes.
                always |= {k for k, v in props.items() if v.get("nullable")}
                out["required"] = sorted(always)
            extra = raw.get("additionalProperties")
            if isinstance(extra, dict):
                out["additionalProperties"] = self.node(extra, seen)
            elif props is None:
                out["additionalProperties"] = {"type": "any"}
        return out


# The SDK -------------------------------------------------------------------------------


def sdk_operations() -> dict[str, tuple[str, str]]:
    """Map "METHOD /v1/path" to the SDK's (params class, module) from its service modules."""
    found: dict[str, tuple[str, str]] = {}
    package = Path(stripe.__file__).parent
    for source in sorted(package.rglob("_*_service.py")):
        module = ".".join(("stripe", *source.relative_to(package).with_suffix("").parts))
        tree = ast.parse(source.read_text(encoding="utf-8"))
        imports = {
            alias.name: node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef):
                continue
            call = _request_call(func)
            params = [a for a in func.args.args if a.arg == "params"]
            if call is None or not params or params[0].annotation is None:
                continue
            name = _class_name(params[0].annotation)
            if name and name in imports:
                found[call] = (name, imports[name] or module)
    return found


def _request_call(func: ast.FunctionDef) -> str | None:
    for node in ast.walk(func):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "_request"):
            continue
        method, url = node.args[0], node.args[1]
        if isinstance(url, ast.Call) and isinstance(url.func, ast.Attribute):
            url = url.func.value  # "/v1/x/{id}".format(...)
        if isinstance(method, ast.Constant) and isinstance(url, ast.Constant):
            return f"{str(method.value).upper()} {url.value}"
    return None


def _class_name(annotation: ast.expr) -> str | None:
    text = ast.unparse(annotation)
    for piece in text.replace("Optional[", "").replace("]", "").split("|"):
        piece = piece.strip().strip("'\"")
        if piece.endswith("Params"):
            return piece
    return None


class Sdk:
    """Translate the SDK's type annotations into the repo's schema language."""

    def params(self, class_name: str, module: str) -> dict[str, Any]:
        """Return a params TypedDict as an object schema."""
        return self.node(getattr(importlib.import_module(module), class_name), ())

    def resource(self, name: str) -> dict[str, Any]:
        """Return a resource class (e.g. checkout.session) as an object schema."""
        module, class_name = OBJECT_CLASSES[name]
        return self.node(getattr(importlib.import_module(module), class_name), ())

    def hints(self, cls: type) -> dict[str, Any]:
        module = sys.modules[cls.__module__]
        scope: dict[str, Any] = {**vars(stripe), **vars(module)}
        # Nested classes name their siblings and parents' siblings bare.
        owner: Any = module
        for part in cls.__qualname__.split(".")[:-1]:
            owner = getattr(owner, part)
            scope.update(vars(owner))
        for mod, attr in OBJECT_CLASSES.values():
            scope.setdefault(attr, (mod, attr))
        raw = {}
        for klass in reversed(cls.__mro__):
            raw.update(getattr(klass, "__annotations__", {}))
        if stripe.RequestOptions in getattr(cls, "__orig_bases__", ()):
            # api_key, idempotency_key, ...: options of the call, not parameters.
            raw = {k: v for k, v in raw.items() if k not in stripe.RequestOptions.__annotations__}
        out = {}
        for key, value in raw.items():
            if key.isupper() or key.startswith("_"):
                continue
            out[key] = _evaluate(value, scope)
        return out

    def node(self, tp: Any, seen: tuple[type, ...]) -> dict[str, Any]:
        """Translate one annotation."""
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            return self.union(list(args), seen)
        if origin is typing.Literal:
            if all(isinstance(a, str) for a in args):
                return {"type": "string", "enum": list(args)}
            return {"type": "any"}
        if origin is list:
            return {"type": "array", "items": self.node(args[0], seen)}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.node(args[1], seen)}
        if _is(tp, "NotRequired") or _is(tp, "Required"):
            return self.node(args[0], seen)
        if origin is not None and getattr(origin, "__name__", "") == "UntypedStripeObject":
            return {"type": "object", "additionalProperties": self.node(args[0], seen)}
        if origin is not None and getattr(origin, "__name__", "") == "ListObject":
            return {"type": "object", "list_of": self.node(args[0], seen)}
        if isinstance(tp, tuple):  # a resource named by a forward reference
            return {"type": "object", "resource": tp[1]}
        if tp is str:
            return {"type": "string"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp in (float,) or getattr(tp, "__name__", "") == "Decimal":
            return {"type": "number"}
        if tp is typing.Any or tp is object or tp is _Unresolved:
            return {"type": "any"}
        if isinstance(tp, type) and hasattr(tp, "__required_keys__"):
            return self.typed_dict(tp, seen)
        if isinstance(tp, type) and issubclass(tp, StripeObject):
            name = getattr(tp, "OBJECT_NAME", None)
            if seen and isinstance(name, str) and name in OBJECT_CLASSES:
                # Another resource: described once, where it is the root.
                return {"type": "object", "resource": name}
            if tp in seen:
                return {"type": "any", "cycle": tp.__name__}
            props = {k: self.node(v, (*seen, tp)) for k, v in self.hints(tp).items()}
            return {"type": "object", "properties": props}
        raise TypeError(f"no schema for {tp!r}")

    def typed_dict(self, tp: type, seen: tuple[type, ...]) -> dict[str, Any]:
        hints = self.hints(tp)
        required = sorted(k for k in tp.__required_keys__ if k in hints)  # type: ignore[attr-defined]
        props = {k: self.node(v, (*seen, tp)) for k, v in hints.items()}
        return {"type": "object", "properties": props, "required": required}

    def union(self, args: list[Any], seen: tuple[type, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if NONE in args:
            out["nullable"] = True
            args = [a for a in args if a is not NONE]
        literals = [a for a in args if typing.get_origin(a) is typing.Literal]
        values = [v for lit in literals for v in typing.get_args(lit)]
        if "" in values:
            out["emptyable"] = True
            values.remove("")
        rest = [a for a in args if typing.get_origin(a) is not typing.Literal]
        if values and all(isinstance(v, str) for v in values):
            # Literal[...] | str: the values this version knows (open for newer ones).
            rest = [a for a in rest if a is not str]
            node = {"type": "string", "enum": values}
            if not rest:
                return {**node, **out}
            nodes = [node, *(self.node(a, seen) for a in rest)]
        else:
            nodes = [self.node(a, seen) for a in rest]
        resources = [n for n in nodes if n.get("resource") or n.get("properties") or n == ANY]
        ids = [n for n in nodes if n == {"type": "string"}]
        if ids and resources and len(ids) + len(resources) == len(nodes):
            return {"type": "string", "expandable": True, **out}
        nodes = [n for i, n in enumerate(nodes) if n not in nodes[:i]]
        if len(nodes) == 1:
            return {**nodes[0], **out}
        return {"type": "any", "anyOf": nodes, **out}


def _is(tp: Any, name: str) -> bool:
    return getattr(typing.get_origin(tp) or tp, "_name", None) == name or (
        getattr(typing.get_origin(tp), "__name__", "") == name
    )


class _Unresolved:
    """A name the SDK imports only for type checkers and does not export."""


class _Scope(dict):
    def __missing__(self, key: str) -> Any:
        try:
            return getattr(stripe, key)
        except AttributeError:
            return _Unresolved


def _evaluate(value: Any, scope: dict[str, Any]) -> Any:
    """Resolve string and ForwardRef annotations (resources become (module, class) tuples)."""
    if isinstance(value, typing.ForwardRef):
        value = value.__forward_arg__
    if isinstance(value, str):
        value = eval(value, dict(vars(typing)), _Scope(scope))  # noqa: S307 (the SDK's own)
    origin, args = typing.get_origin(value), typing.get_args(value)
    if isinstance(value, tuple):
        module, name = value
        return getattr(importlib.import_module(module), name)
    if origin is None or origin is typing.Literal:
        return value
    resolved = tuple(_evaluate(a, scope) for a in args)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[resolved]  # noqa: UP007
    try:
        return value.copy_with(resolved)
    except AttributeError:
        return origin[resolved]


# Combining the two ---------------------------------------------------------------------


def combine(spec: dict | None, sdk: dict | None, where: str, report: Report) -> dict[str, Any]:
    """Merge a spec node with the SDK's node for the same place (see the module docstring)."""
    if sdk is None:
        return spec or {"type": "any"}
    if spec is None:
        report.newer.append(where)
        return {**sdk, "source": "sdk"}
    if sdk.get("resource") and "properties" in spec:
        # A resource embedded whole (a line item's price): the SDK describes it once.
        sdk = report.sdk.resource(sdk["resource"])
    out = dict(spec)
    if sdk.get("enum") and spec.get("enum") and set(sdk["enum"]) != set(spec["enum"]):
        report.enums.append(where)
        out["enum"] = list(sdk["enum"])
    if spec.get("type") == "array" and sdk.get("type") == "array":
        out["items"] = combine(spec.get("items"), sdk.get("items"), where + "[]", report)
    if "properties" in spec and "properties" in sdk:
        props = {}
        for name in sorted(set(spec["properties"]) | set(sdk["properties"])):
            inner = f"{where}.{name}"
            if name not in sdk["properties"]:
                report.removed.append(inner)
                continue
            props[name] = combine(
                spec["properties"].get(name), sdk["properties"][name], inner, report
            )
        out["properties"] = props
        out["required"] = [r for r in spec.get("required", []) if r in props]
    if "anyOf" in spec and "anyOf" in sdk and len(spec["anyOf"]) == len(sdk["anyOf"]):
        out["anyOf"] = [
            combine(a, b, where, report) for a, b in zip(spec["anyOf"], sdk["anyOf"], strict=True)
        ]
    return out


def add_example_fields(node: dict[str, Any], example: Any) -> None:
    """Count newer fields as always present where Stripe's newer example object has them."""
    if not isinstance(example, dict) or "properties" not in node:
        return
    required = set(node.get("required", []))
    for name, child in node["properties"].items():
        if name in example:
            if child.get("source") == "sdk":
                required.add(name)
            add_example_fields(child, example[name])
    node["required"] = sorted(required)


def error_codes() -> list[str]:
    """Return Stripe's error codes as the SDK lists them."""
    hint = stripe.PaymentIntent.LastPaymentError.__annotations__["code"]
    codes: list[str] = []

    def walk(tp: Any) -> None:
        if typing.get_origin(tp) is typing.Literal:
            codes.extend(typing.get_args(tp))
        for arg in typing.get_args(tp):
            if not isinstance(arg, str):
                walk(arg)

    walk(hint)
    return sorted(set(codes))


def main(argv: list[str] | None = None) -> int:
    """Write the two vendored files from a spec3.json and the installed SDK."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("spec", type=Path, help="path to Stripe's openapi/spec3.json")
    parser.add_argument("--fixtures", type=Path, help="path to openapi/fixtures3.json")
    args = parser.parse_args(argv)
    document = json.loads(args.spec.read_text(encoding="utf-8"))
    spec, sdk = Spec(document), Sdk()
    report = Report(sdk)
    fixtures = {}
    if args.fixtures:
        fixtures = json.loads(args.fixtures.read_text(encoding="utf-8"))["resources"]
    sdk_ops = sdk_operations()

    licence = (
        f"Derived from Stripe's OpenAPI specification (github.com/stripe/openapi, "
        f"openapi/spec3.json at {SPEC_COMMIT}, API {document['info']['version']}) and the "
        f"stripe Python SDK {stripe.VERSION} (API {_ApiVersion.CURRENT}); both MIT licence, "
        "Copyright (c) Stripe, Inc. Written by tools/vendor_stripe_spec.py: do not edit."
    )
    operations = {}
    for operation in OPERATIONS:
        method, path = operation.split(" ", 1)
        pinned = None
        if operation in sdk_ops:
            pinned = sdk.params(*sdk_ops[operation])
        else:
            print(
                f"note: the SDK has no params for {operation}; the spec's stand", file=sys.stderr
            )
        operations[operation] = combine(spec.request(operation), pinned, operation, report)
    objects = {}
    for name in OBJECTS:
        node = combine(spec.object(name), sdk.resource(name), name, report)
        add_example_fields(node, fixtures.get(name))
        objects[name] = node
    objects["error"] = spec.node(document["components"]["schemas"]["error"], ())
    # What DELETE answers: {"id", "object", "deleted": true}.
    objects["deleted_webhook_endpoint"] = spec.object("deleted_webhook_endpoint")

    if args.fixtures:
        licence += f" Always-present newer fields per fixtures3.json at {FIXTURES_COMMIT}."
    common = {"licence": licence, "api_version": _ApiVersion.CURRENT}
    PARAMS_OUT.parent.mkdir(parents=True, exist_ok=True)
    OBJECTS_OUT.parent.mkdir(parents=True, exist_ok=True)
    PARAMS_OUT.write_text(
        json.dumps({**common, "operations": operations}, indent=1, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    OBJECTS_OUT.write_text(
        json.dumps(
            {**common, "objects": objects, "error_codes": error_codes()}, indent=1, sort_keys=True
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"{len(operations)} operations -> {PARAMS_OUT.relative_to(ROOT)}")
    codes = len(error_codes())
    print(f"{len(objects)} objects, {codes} error codes -> {OBJECTS_OUT.relative_to(ROOT)}")
    print(f"newer than the spec (from the SDK): {len(report.newer)}")
    print(f"removed since the spec (dropped): {len(report.removed)}")
    for where in report.removed:
        print(f"  removed: {where}")
    print(f"enum values changed since the spec (the SDK's kept): {len(report.enums)}")
    for where in report.enums:
        print(f"  enum: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
