"""text.one_line: what staff type is kept as one storable line."""

from __future__ import annotations

import pytest

from swagstore.text import one_line


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("  Ann   Lee ", "Ann Lee"),
        ("paid\x00 in\tcoins\r\n", "paid in coins"),
        ("bell\x07 and escape\x1b[31m", "bell and escape[31m"),
        ("lone \ud800surrogate", "lone surrogate"),
        (
            "family \U0001f468\u200d\U0001f469\u200d\U0001f467",
            "family \U0001f468\u200d\U0001f469\u200d\U0001f467",
        ),
        (None, ""),
    ],
)
def test_typed_text_becomes_one_storable_line(typed, kept):
    assert one_line(typed, 100) == kept


def test_it_is_cut_to_the_limit_after_cleaning():
    assert one_line("\x00" * 50 + "abcdef", 3) == "abc"
