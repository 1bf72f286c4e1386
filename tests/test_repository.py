"""The repository stands alone: tests and tools read nothing outside it."""

from __future__ import annotations

import re

from conftest import ROOT

# The project's shared notes and Stripe's originals live beside the checkout on the
# development machine only; a clone elsewhere has neither.
# Assembled from pieces, so that this guard does not itself name such a path.
OUTSIDE = re.compile(
    "|".join(
        re.escape(a + b) for a, b in [("/wo", "rk/"), ("..", "/shared"), ("shared", "/stripe")]
    )
)


def test_tests_and_tools_name_no_path_outside_the_repository():
    """Mutation tried: FIXTURES pointed back at Stripe's originals beside the checkout fails."""
    files = [ROOT / "Makefile", *(ROOT / ".ci").rglob("*")]
    for folder in ("tests", "bench"):
        files += (ROOT / folder).rglob("*.py")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in files
        if path.is_file() and path != ROOT / "tests" / "test_repository.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert offenders == []
    assert len(files) > 20
