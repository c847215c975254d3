"""Exact JSON text <-> data for stored records.

orjson is used when it is exact. It refuses integers outside 64 bits on output and silently
turns them into floats on input, so both directions fall back to the stdlib ``json`` module
(which is exact for integers of any size) when large integers may be involved. Non-finite
numbers (``NaN``, ``Infinity``) are refused in both directions: they are not JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

__all__ = ["JSONError", "containers", "dumps", "loads"]

# An integer of 19 digits or more may be one orjson would read as a float: the text then goes
# to the stdlib parser. A run of digits right after a "." is a fraction, which orjson reads
# exactly (every float a runner writes, such as a latency of 0.00021724999999150896, has
# one), so it does not count. Digits inside strings may count; that only costs the slower
# (still exact) stdlib parser. Found by mapping every digit to "0", "." to itself and
# everything else to " ", then searching for a space and 19 zeros: both at C speed (the
# regex \d{19} retries at every digit of every shorter run, 10x slower on number-heavy
# records). That search advances a byte at a time through the spaces filling the map (its
# needle holds one); a search for the 19 zeros alone skips them, so it goes first, and most
# records, with no such run, are done.
_DIGITS_ONLY = bytes(0x30 if 0x30 <= byte <= 0x39 else byte if byte == 0x2E else 0x20
                     for byte in range(256))
_LONG_RUN = b"0" * 19
_LONG_INTEGER = b" " + _LONG_RUN


def _long_digits(data: bytes) -> bool:
    digits = data.translate(_DIGITS_ONLY)
    first = digits.find(_LONG_RUN)
    if first < 0:
        return False
    # a run that starts the text, or one after a space from the first run on
    return first == 0 or digits.find(_LONG_INTEGER, first - 1) >= 0


class JSONError(ValueError):
    """Internal: the text is not valid JSON or the data cannot be written as JSON."""


def dumps(data: Any) -> bytes:
    """Compact UTF-8 JSON of ``data`` (which must already be JSON-compatible)."""
    try:
        return orjson.dumps(data)
    except TypeError as exc:
        if "64-bit" not in str(exc):
            raise JSONError(str(exc)) from exc
    try:
        text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise JSONError(str(exc)) from exc
    return text.encode("utf-8")


def containers(data: bytes) -> int:
    """An upper bound on the arrays and objects in the JSON text ``data``: its ``[`` and ``{``
    (those inside strings too), counted at memchr speed before anything is parsed. Each
    costs 56 bytes or more once parsed, from a 2-byte ``[]``: the count bounds what parsing
    a hostile text can allocate."""
    return data.count(b"[") + data.count(b"{")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} does not fit a float")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(raw: bytes | str) -> Any:
    """Parse JSON text exactly (integers of any size stay integers)."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    try:
        if not _long_digits(data):
            return orjson.loads(data)
        return json.loads(
            data.decode("utf-8"), parse_float=_finite, parse_constant=_refuse_constant
        )
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # orjson.JSONDecodeError is a ValueError; the stdlib parser raises RecursionError on
        # deeply nested input, which must be a damaged record too, not an interpreter error.
        raise JSONError(str(exc)) from exc
