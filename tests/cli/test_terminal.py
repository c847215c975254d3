"""``flujo.cli._terminal``: what the CLI prints of a store is inert on a terminal.

The commands themselves are tested with hostile stores in ``test_state_cli.py``; these tests
pin the pieces: which characters are escaped, JSON that stays the same data, and integers of
any size shown without Python's digit limit or quadratic conversions.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from collections import deque
from typing import Any

import pytest

from flujo.cli._terminal import int_text, json_text, pretty, visible
from flujo.exceptions import NestingTooDeepError

ACTING = ("Cc", "Cf", "Cs", "Zl", "Zp")  # controls, format (bidi...), separators, surrogates


def acting_characters() -> list[str]:
    return [chr(code) for code in range(sys.maxunicode + 1)
            if unicodedata.category(chr(code)) in ACTING]


def test_every_control_format_and_separator_character_is_escaped() -> None:
    chars = acting_characters()
    assert len(chars) > 2000  # C0, C1, bidi, tags, surrogates...
    text = "".join(chars)
    shown = visible(text)
    assert [c for c in shown if unicodedata.category(c) in ACTING] == []
    assert visible("\x1b]52;c;aGk=\x07") == "\\x1b]52;c;aGk=\\x07"
    assert visible("a\tb\nc\rd\x7f\x9b\u202e\U000e0041") == (
        "a\\tb\\nc\\rd\\x7f\\x9b\\u202e\\U000e0041")
    ordinary = "plain ASCII [/bold] [link=x] café 日本語 \U0001f600 ‰ \\x1b"
    assert visible(ordinary) == ordinary


def test_json_text_is_the_same_data_with_nothing_acting() -> None:
    chars = [c for c in acting_characters() if unicodedata.category(c) != "Cs"]  # not text
    document = {"".join(chars[:50]): ["".join(chars), "café \U0001f600"], "n": 1}
    text = json_text(document, indent=2)
    assert [c for c in text if c not in "\n" and unicodedata.category(c) in ACTING] == []
    assert json.loads(text) == document
    assert json_text("\u202e\U000e0041") == '"\\u202e\\udb40\\udc41"'


def test_integers_show_all_their_digits_while_that_is_cheap() -> None:
    assert int_text(10**4299) == str(10**4299)  # 4,300 digits: all of them
    assert int_text(-(2**80)) == str(-(2**80))
    assert int_text(10**4400 - 1) == "<int with 4400 digits: 99999999…99999999>"
    assert int_text(-(10**5000) - 7) == "<int with 5001 digits: -10000000…00000007>"
    assert int_text(2**100_001 + 5) == "<int of 100002 bits: 0x80000000…00000005>"
    assert int_text(-(2**20_000_000)) == "<int of 20000001 bits: -0x80000000…00000000>"


def test_integers_are_shown_under_a_lower_digit_limit_of_the_process() -> None:
    saved = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        assert int_text(10**700) == "<int with 701 digits: 10000000…00000000>"
        assert json.loads(json_text([10**700, 10**600])) == [
            {"$t": "int@1", "v": hex(10**700)}, 10**600]
    finally:
        sys.set_int_max_str_digits(saved)


class Unshowable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr\x1b]52;c;x\x07")


class Items(list[Any]):
    pass


def test_pretty_shows_a_value_whose_repr_fails() -> None:
    big = 10**5000
    shown = pretty({"u": Unshowable(), "d": deque([big]), "f": frozenset({big}),
                    "l": Items([big]), "t": (big, "\x1b")})
    summary = "<int with 5001 digits: 10000000…00000000>"
    assert "'u': <Unshowable: cannot be shown: RuntimeError: no repr\\x1b]52;c;x\\x07>" in shown
    assert f"'d': deque([{summary}])" in shown
    assert f"'f': frozenset({{{summary}}})" in shown
    assert f"'l': [{summary}]" in shown  # as repr shows a list subclass
    assert f"'t': ({summary}, '\\x1b')" in shown


def test_json_nested_past_the_recursion_limit_is_a_typed_error() -> None:
    value: Any = []
    for _ in range(sys.getrecursionlimit() + 100):
        value = [value]
    with pytest.raises(NestingTooDeepError):
        json_text(value)
