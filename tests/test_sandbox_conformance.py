"""Every object and error the sandbox answers, checked against Stripe's own API description.

One walk drives the sandbox through every endpoint it serves and every state its objects
reach (open, complete, expired, paid, unpaid, authorized, captured, voided, refunded,
delayed and failed payments) and through every refusal it can give; each answer, each
object in a list and each event's object is checked against the vendored schemas
(tests/data/stripe_object_schemas.json, from Stripe's OpenAPI spec and the pinned SDK).
"""

from __future__ import annotations

import inspect
import re
from collections import Counter
from pathlib import Path

import pytest
import requests
from stripe_schema import ERROR_CODES, SCHEMAS, problems

from swagstore.sandbox import api

SANDBOX_SOURCE = Path(__file__).parent.parent / "swagstore" / "sandbox"


class Walk:
    """Requests to the sandbox whose answers are all kept for checking."""

    def __init__(self, sandbox) -> None:
        self.sandbox = sandbox
        self.answers: list[tuple[str, int, dict]] = []
        self.paths: set[str] = set()

    def call(self, method: str, path: str, want: int = 200, **kwargs) -> dict:
        response = self.sandbox.api(method, path, **kwargs)
        return self._keep(f"{method} /v1/{path}", response, want)

    def hosted(self, path: str, want: int = 200, **kwargs) -> dict:
        response = requests.post(
            self.sandbox.url + "/sandbox" + path,
            headers={"Accept": "application/json"},
            timeout=60,
            **kwargs,
        )
        return self._keep(f"POST {path}", response, want)

    def _keep(self, where: str, response: requests.Response, want: int) -> dict:
        assert response.status_code == want, (where, response.status_code, response.text)
        body = response.json()
        self.answers.append((where, response.status_code, body))
        self.paths.add(where)
        return body


def objects_in(body: dict) -> list[dict]:
    """Return the Stripe objects an answer carries: itself, or a list's items."""
    if body.get("object") == "list":
        return body["data"]
    return [body] if "object" in body else []


@pytest.fixture
def walk(sandbox) -> Walk:
    """Drive the sandbox through everything it serves, keeping every answer."""
    w = Walk(sandbox)
    product = w.call("POST", "products", data={"name": "Mug", "metadata[sku]": "mug"})
    w.call("GET", f"products/{product['id']}")
    w.call("POST", f"products/{product['id']}", data={"description": "Blue"})
    w.call("POST", f"products/{product['id']}", data={"name": "Mug, blue"})
    w.call("GET", "products", params={"limit": 3})
    price = w.call(
        "POST", "prices", data={"product": product["id"], "unit_amount": 1200, "currency": "usd"}
    )
    w.call("GET", f"prices/{price['id']}")
    w.call("POST", f"prices/{price['id']}", data={"nickname": "regular"})
    w.call("GET", "prices", params={"product": product["id"]})

    links = {}
    for capture in ("automatic", "manual"):
        links[capture] = w.call(
            "POST",
            "payment_links",
            data={
                "line_items[0][price]": price["id"],
                "line_items[0][quantity]": 1,
                "line_items[0][adjustable_quantity][enabled]": "false",
                "metadata[sku]": "mug",
                "payment_intent_data[capture_method]": capture,
                "payment_intent_data[metadata][sku]": "mug",
                "inactive_message": "Sold out",
                "after_completion[type]": "hosted_confirmation",
                "after_completion[hosted_confirmation][custom_message]": "Thanks!",
            },
        )
    link = links["automatic"]["id"]
    limited = w.call(
        "POST",
        "payment_links",
        data={
            "line_items[0][price]": price["id"],
            "line_items[0][quantity]": 1,
            "restrictions[completed_sessions][limit]": 1,
        },
    )["id"]
    w.hosted(f"/checkout/{w.hosted(f'/payment_links/{limited}/sessions', 201)['id']}/pay")
    w.call("POST", f"payment_links/{limited}", 400, data={"active": "true"})
    w.call(
        "POST",
        f"payment_links/{limited}",
        data={"restrictions[completed_sessions][limit]": 2, "active": "true"},
    )
    w.call("POST", f"payment_links/{limited}", data={"restrictions": ""})
    w.call("GET", f"payment_links/{link}")
    w.call("GET", f"payment_links/{link}/line_items")
    w.call("GET", "payment_links", params={"limit": 5})

    # Sessions in every state: paid, authorized then captured or voided, delayed, failed.
    paid = w.hosted(f"/checkout/{w.hosted(f'/payment_links/{link}/sessions', 201)['id']}/pay")
    manual = links["manual"]["id"]
    held = w.hosted(f"/checkout/{w.hosted(f'/payment_links/{manual}/sessions', 201)['id']}/pay")
    w.call("POST", f"payment_intents/{held['payment_intent']}/capture")
    voided = w.hosted(f"/checkout/{w.hosted(f'/payment_links/{manual}/sessions', 201)['id']}/pay")
    w.call(
        "POST",
        f"payment_intents/{voided['payment_intent']}/cancel",
        data={"cancellation_reason": "abandoned"},
    )
    for outcome in ("succeeded", "failed"):
        session = w.hosted(f"/payment_links/{link}/sessions", 201)["id"]
        w.hosted(f"/checkout/{session}/pay", data={"method": "delayed"})
        w.hosted(f"/checkout/{session}/settle", data={"outcome": outcome})
    w.call("GET", f"checkout/sessions/{paid['id']}")
    w.call("GET", f"checkout/sessions/{paid['id']}/line_items", params={"limit": 1})
    w.call("GET", "checkout/sessions", params={"payment_link": link, "status": "complete"})

    # A session made through the API, with an inline price, expired by the API.
    made = w.call(
        "POST",
        "checkout/sessions",
        data={
            "mode": "payment",
            "line_items[0][price_data][currency]": "usd",
            "line_items[0][price_data][unit_amount]": 900,
            "line_items[0][price_data][product_data][name]": "Cap",
            "line_items[0][quantity]": 2,
            "metadata[hold]": "7",
            "client_reference_id": "7",
            "success_url": "http://booth.test/thanks",
            "cancel_url": "http://booth.test/cancelled",
            "payment_intent_data[capture_method]": "manual",
        },
    )
    w.call("POST", f"checkout/sessions/{made['id']}/expire")
    w.call("GET", f"checkout/sessions/{made['id']}")

    # A PaymentIntent of its own, authorized by the card form and partly captured.
    intent = w.call(
        "POST",
        "payment_intents",
        data={"amount": 1500, "currency": "usd", "capture_method": "manual", "metadata[h]": "1"},
    )
    w.hosted(
        f"/payment_intents/{intent['id']}/confirm", data={"client_secret": intent["client_secret"]}
    )
    w.call("POST", f"payment_intents/{intent['id']}/capture", data={"amount_to_capture": 1000})
    w.call("GET", f"payment_intents/{intent['id']}")

    refund = w.call(
        "POST", "refunds", data={"payment_intent": paid["payment_intent"], "amount": 500}
    )
    w.call(
        "POST", "refunds", data={"payment_intent": paid["payment_intent"], "reason": "duplicate"}
    )
    w.call("GET", f"refunds/{refund['id']}")
    w.call("GET", "refunds", params={"payment_intent": paid["payment_intent"]})
    w.call("POST", f"payment_links/{link}", data={"active": "false"})

    endpoint = w.call(
        "POST",
        "webhook_endpoints",
        data={"url": "http://127.0.0.1:9/hook", "enabled_events[0]": "refund.created"},
    )
    w.call("GET", f"webhook_endpoints/{endpoint['id']}")
    w.call("GET", "webhook_endpoints")
    w.call("POST", "refunds", data={"payment_intent": held["payment_intent"], "amount": 100})
    w.call("DELETE", f"webhook_endpoints/{endpoint['id']}")
    events = w.call("GET", "events", params={"limit": 100})
    w.call("GET", f"events/{events['data'][0]['id']}")
    _refusals(w, product, price, link, paid, intent)
    return w


def _refusals(w: Walk, product: dict, price: dict, link: str, paid: dict, intent: dict) -> None:
    """Every kind of refusal the sandbox gives, each as Stripe shapes it."""
    w.call("POST", "payment_links", 400, data={"line_items[0][price]": price["id"]})
    w.call(
        "POST",
        "payment_links",
        400,
        data={
            "line_items[0][price]": price["id"],
            "line_items[0][quantity]": 1,
            "payment_intent_data[foo]": "x",
        },
    )
    w.call("POST", "products", 400, data={"name": "Hat", "colour": "red"})
    w.call("POST", "products", 400, data={"name": "   "})
    w.call("POST", "products", 400, data={"name": "Hat", "description": ""})
    w.call("POST", "products", 400, data={"name": "Hat", "active": "maybe"})
    w.call("POST", "products", 400, data={"name": "Hat", "metadata": "x"})
    w.call("POST", "products", 400, data={"name": "Hat", "expand[0]": "default_price"})
    w.call("POST", f"products/{product['id']}", 400, data={"name": ""})
    w.call("POST", "prices", 400, data={"product": product["id"], "currency": "usd"})
    w.call(
        "POST",
        "prices",
        400,
        data={"product": product["id"], "currency": "usd", "unit_amount": "ten"},
    )
    w.call("POST", "payment_intents", 400, data={"amount": 25, "currency": "usd"})
    w.call("POST", "payment_intents", 400, data={"amount": 10**8, "currency": "usd"})
    w.call(
        "POST",
        "payment_intents",
        400,
        data={"amount": 900, "currency": "usd", "capture_method": "later"},
    )
    w.call("GET", "payment_intents/pi_nope", 404)
    w.call("GET", "nothing/here", 404)
    w.call("GET", "products", 400, params={"limit": 101})
    w.call("GET", "products", 404, params={"starting_after": "prod_nope"})
    w.call("POST", f"payment_intents/{intent['id']}/capture", 400)
    w.call("POST", f"payment_intents/{intent['id']}/cancel", 400)
    w.call("POST", "refunds", 400, data={"payment_intent": paid["payment_intent"]})
    w.call("POST", "refunds", 400, data={"amount": 100})
    w.call("POST", f"checkout/sessions/{paid['id']}/expire", 400)
    w.call("GET", "events", 400, params={f"types[{n}]": f"t.{n}" for n in range(21)})
    w.call("GET", "events", 400, params={"type": "a.b", "types[0]": "c.d"})
    keyed = {"Idempotency-Key": "conformance-key"}
    w.call("POST", "products", data={"name": "Scarf"}, headers=keyed)
    w.call("POST", "products", 400, data={"name": "Shawl"}, headers=keyed)
    w.call("POST", "prices", 400, data={"product": product["id"]}, headers=keyed)
    w.sandbox.fault("/v1/products", count=1, mode="crash")
    w.call("POST", "products", 500, data={"name": "Crash"}, headers={"Idempotency-Key": "c-1"})
    w.call("POST", "products", 500, data={"name": "Crash"}, headers={"Idempotency-Key": "c-1"})
    unauthenticated = requests.get(f"{w.sandbox.api_base}/v1/products", timeout=60)
    w._keep("GET /v1/products (no key)", unauthenticated, 401)
    live_key = requests.get(
        f"{w.sandbox.api_base}/v1/products",
        headers={"Authorization": "Bearer sk_live_somebody"},
        timeout=60,
    )
    w._keep("GET /v1/products (live key)", live_key, 401)
    w.call("POST", "webhook_endpoints", 400, data={"url": "ftp://x", "enabled_events[0]": "*"})
    w.call("POST", "webhook_endpoints", 400, data={"url": "http://127.0.0.1:9/hook"})
    w.call("GET", "webhook_endpoints/we_nope", 404)
    w.hosted(f"/payment_links/{link}/sessions", 410)
    w.hosted(f"/checkout/{paid['id']}/pay", 400)


def test_every_object_and_error_the_sandbox_answers_is_as_stripes_api_has_it(walk):
    checked: Counter[str] = Counter()
    found: list[str] = []
    for where, status, body in walk.answers:
        if status >= 400:
            checked["error"] += 1
            found += [f"{where}: {p}" for p in problems(body, "error")]
            continue
        for obj in objects_in(body):
            kind = ("deleted_" if obj.get("deleted") else "") + obj["object"]
            assert kind in SCHEMAS, f"{where} answered an object the API has no schema for: {kind}"
            checked[kind] += 1
            found += [f"{where}: {p}" for p in problems(obj, kind)]
            if kind == "event":
                inner = obj["data"]["object"]
                checked[inner["object"]] += 1
                found += [f"{where} {obj['type']}: {p}" for p in problems(inner, inner["object"])]
    objects = sum(n for kind, n in checked.items() if kind != "error")
    print(
        f"\nchecked against Stripe's schemas: {objects} objects, {checked['error']} error "
        f"bodies ({', '.join(f'{k} {n}' for k, n in sorted(checked.items()))})"
    )
    assert not found, "\n".join(found)
    assert set(checked) == {*SCHEMAS}


def test_the_walk_reaches_every_endpoint_and_every_event_the_sandbox_has(walk):
    served = {
        view.operation
        for view in vars(api).values()
        if inspect.isfunction(view) and getattr(view, "operation", None)
    }
    assert len(served) > 20
    ids = r"/(prod|price|plink|cs_test|pi|re|evt|we)_\w+"
    reached = {re.sub(ids, "/{}", p) for p in walk.paths}
    templated = {re.sub(r"\{\w+\}", "{}", op) for op in served}
    assert templated <= reached, sorted(templated - reached)
    emitted = set(re.findall(r'emit\(\s*"([a-z_.]+)"', _sandbox_source()))
    seen = {e["type"] for _, _, body in walk.answers for e in objects_in(body) if "type" in e}
    assert emitted <= seen, sorted(emitted - seen)


def test_a_product_is_renamed_as_stripe_renames_it(sandbox):
    """POST /v1/products/{id} with `name` (spec3: maxLength 5000, not emptyable): the new
    name, the rest left as it was, and checkouts opened after it show the new name."""
    fields = {"name": "Logo T-shirt", "description": "Navy", "metadata[sku]": "t"}
    made, _, link = sandbox.one_unit_link(2500, **fields)
    sandbox.advance_clock(60)
    renamed = sandbox.api("POST", f"products/{made['id']}", data={"name": "Logo T-shirt, L"})
    assert renamed.status_code == 200, renamed.text
    body = renamed.json()
    assert body["name"] == "Logo T-shirt, L" and body["updated"] >= made["updated"] + 60
    unchanged = {k: v for k, v in body.items() if k not in ("name", "updated")}
    assert unchanged == {k: v for k, v in made.items() if k not in ("name", "updated")}
    assert sandbox.api("GET", f"products/{made['id']}").json() == body
    session = sandbox.open_session(link["id"])
    items = sandbox.api("GET", f"checkout/sessions/{session['id']}/line_items").json()["data"]
    assert [i["description"] for i in items] == ["Logo T-shirt, L"]

    empty = sandbox.api("POST", f"products/{made['id']}", data={"name": ""})
    assert (empty.status_code, empty.json()["error"]["code"]) == (400, "parameter_invalid_empty")
    too_long = sandbox.api("POST", f"products/{made['id']}", data={"name": "x" * 5001})
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "name"
    assert sandbox.api("GET", f"products/{made['id']}").json()["name"] == "Logo T-shirt, L"


def test_every_error_code_the_sandbox_can_give_is_one_of_stripes():
    given = set(re.findall(r'code="([a-z_]+)"', _sandbox_source()))
    assert given, "the pattern found no codes: the test would prove nothing"
    assert given <= ERROR_CODES, sorted(given - ERROR_CODES)


def _sandbox_source() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(SANDBOX_SOURCE.glob("*.py")))
