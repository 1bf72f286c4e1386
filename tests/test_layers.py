"""The package's layers: every module imports on its own, and imports only point down.

Each module is imported first in a fresh interpreter, so a circle that only works in one
import order fails here. The graph is read from the source (every import, also inside a
function), so a circle hidden behind a function-level import fails too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "swagstore"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(module_name(p) for p in PACKAGE.rglob("*.py"))


def imports_of(module: str, *, top_level_only: bool = False) -> set[str]:
    """Return every module of the package (and `stripe`) that a module imports, anywhere."""
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from . import x` imports the module x; `from .m import name` imports m.
            names = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
            names = names or [base]
        else:
            continue
        for name in names:
            if name == "stripe" or name.startswith("stripe."):
                found.add("stripe")
            elif name in MODULES and name != module:
                found.add(name)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_the_graph_is_read_from_the_source():
    # The graph must see real edges, or the checks below would pass on an empty graph.
    assert "swagstore.inventory" in GRAPH["swagstore.holds"]
    assert "stripe" in GRAPH["swagstore.payments"]
    assert "swagstore.sandbox.delivery" in GRAPH["swagstore.sandbox"]
    assert "swagstore.views.admin" in GRAPH["swagstore"]  # imported inside create_app


def test_there_is_no_import_circle():
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == "open":
                cycle = path[path.index(target) :] + [target]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            visit(module, [module])


# From the bottom up: a module may import modules of its own layer or a lower one.
LAYERS = [
    {
        "swagstore.models",
        "swagstore.qr",
        "swagstore.charts",
        "swagstore.money",
        "swagstore.clock",
        "swagstore.amounts",
        "swagstore.lan",
        "swagstore.event_schema",
        "swagstore.text",
    },
    {
        "swagstore.payments",
        "swagstore.inventory",
        "swagstore.auth",
        "swagstore.schema",
    },
    {
        "swagstore.catalog",
        "swagstore.offer",
        "swagstore.holds",
        "swagstore.stripe_sync",
        "swagstore.pickup",
    },
    {"swagstore.hold_checkout"},
    {"swagstore.tasks"},
    {"swagstore.fulfilment", "swagstore.sales", "swagstore.backoffice"},
    {"swagstore.events", "swagstore.stream"},
    # The preflight reads every layer below it; nothing in the domain imports it.
    {m for m in MODULES if m.startswith("swagstore.preflight")},
]
DOMAIN = set().union(*LAYERS)
# The web and command layer: blueprints, the app-wide error pages and HTTP hardening, the
# flask commands and the background worker they start.
UPPER = {
    m
    for m in MODULES
    if m in ("swagstore.cli", "swagstore.errors", "swagstore.security", "swagstore.worker")
    or ".views" in m
}
SANDBOX = {m for m in MODULES if m.startswith("swagstore.sandbox")}


def layer(module: str) -> int:
    return next(n for n, members in enumerate(LAYERS) if module in members)


def test_every_product_module_has_a_place():
    product = set(MODULES) - SANDBOX - UPPER - {"swagstore"}
    assert product <= DOMAIN, f"put {sorted(product - DOMAIN)} in a layer of LAYERS"


@pytest.mark.parametrize("module", sorted(DOMAIN & set(MODULES)))
def test_domain_modules_import_only_their_layer_or_lower(module):
    for target in GRAPH[module] - {"stripe"}:
        assert target in DOMAIN, f"{module} imports {target}, which is not domain code"
        assert layer(target) <= layer(module), f"{module} imports the upper {target}"


def test_only_payments_imports_stripe():
    assert {m for m, targets in GRAPH.items() if "stripe" in targets} == {"swagstore.payments"}


def test_the_sandbox_is_loaded_only_by_the_app_factory_init_db_and_worker_in_sandbox_mode():
    # Each imports it inside a function, under `if SANDBOX`: the factory mounts it, init-db
    # makes its tables, the worker delivers its webhooks. test_factory proves a live store
    # then never loads it.
    product = set(MODULES) - SANDBOX
    importers = {m for m in product if GRAPH[m] & SANDBOX}
    assert importers == {"swagstore", "swagstore.cli", "swagstore.worker"}
    assert GRAPH["swagstore"] & SANDBOX == {"swagstore.sandbox"}
    assert not any(imports_of(m, top_level_only=True) & SANDBOX for m in product)


def test_the_sandbox_never_imports_the_product():
    for module in SANDBOX:
        # The money formatter is a leaf (Babel only): the hosted pages write amounts with it.
        product = GRAPH[module] - SANDBOX - {"swagstore.models", "swagstore.money"}
        assert not product, f"{module} imports {sorted(product)}"
