"""Stored text made safe to show: what the ``flujo state`` commands print goes through here.

Whoever can write a store chooses its pipeline names, step names, error messages, run ids
of imported files and every string of a state, and the operator reads them on a terminal.
Printed as they are, an ESC or C1 control sequence drives the terminal (OSC 52 writes the
clipboard, OSC 8 makes hyperlinks, CSI clears the screen or moves the cursor), a bidi
override reorders what is shown, and rich markup (``[/bold]``, ``[link=...]``) crashes or
restyles rich output. So:

* ``visible`` replaces every control character (C0, DEL, C1), bidi and other format
  character, line and paragraph separator and lone surrogate with a visible escape
  (``\\x1b``, ``\\t``, ``\\u202e``): the operator sees that something odd is stored, and
  nothing reaches the terminal that acts on it. Rich output is built from ``Text`` objects
  holding such text, never from markup.
* ``json_text`` writes JSON whose strings carry the same characters as ``\\uXXXX``
  escapes (still the same JSON data), and integers too long for decimal digits in the
  tagged form flujo stores them in.
* ``pretty`` is the pretty-printed form of a decoded state: ``repr`` of its values
  (which escapes control characters in strings), integers too long for decimal digits
  summarised, values whose ``repr`` fails shown field by field, and the whole through
  ``visible``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pprint
import re
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from ..exceptions import NestingTooDeepError
from ..serialization import check_expanded_size

__all__ = ["int_text", "json_text", "pretty", "visible"]

#: Characters never written to a terminal as they are: Unicode categories Cc (C0, DEL, C1),
#: Cf (bidi overrides and isolates, zero-width and other format characters), Zl, Zp and Cs
#: (lone surrogates, which cannot even be encoded as UTF-8). Ranges reach a little past
#: Unicode 14's assignments, for characters later versions add to them.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e007f]"
)
#: The same, less C0: JSON text escapes those itself, and its own line breaks are C0.
_UNSAFE_IN_JSON = re.compile(_UNSAFE.pattern.replace("\x00-\x1f", "", 1))

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # JSON spells a character outside the BMP as a UTF-16 surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def visible(text: str) -> str:
    """``text`` with every character that could act on a terminal shown as an escape."""
    return _UNSAFE.sub(_escape, text)


# -- integers ----------------------------------------------------------------------------------

#: Integers up to this many bits are shown with all their digits (about 4,300, Python's
#: default ``sys.get_int_max_str_digits()``): converting more costs time quadratic in the
#: size, and stored integers can have millions of digits.
_FULL_BITS = 14_300
#: Up to this many bits the digit count and the leading digits are computed exactly (a few
#: milliseconds); beyond, the integer is summarised in hexadecimal (linear time).
_DECIMAL_SUMMARY_BITS = 100_000
_EDGE_DIGITS = 8


def _full_digits(value: int) -> str | None:
    """All the decimal digits of ``value`` when that is cheap and allowed, else None."""
    if value.bit_length() > _FULL_BITS:
        return None
    try:
        return int.__repr__(value)
    except ValueError:  # over a lower sys.set_int_max_str_digits() of this process
        return None


def _digit_count(magnitude: int) -> int:
    """The number of decimal digits of ``magnitude`` (> 0), exactly."""
    count = max(1, int((magnitude.bit_length() - 1) * math.log10(2)))  # at most 1 short
    while magnitude >= 10**count:
        count += 1
    return count


def int_text(value: int) -> str:
    """``value`` in decimal when that is cheap, else a summary that says so:
    ``<int with 6021 digits: 39802768…09301376>`` or, past 100,000 bits,
    ``<int of 4000000 bits: 0x9f3a9c2b…0000d2e1>``."""
    digits = _full_digits(value)
    if digits is not None:
        return digits
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    bits = magnitude.bit_length()
    if bits <= _DECIMAL_SUMMARY_BITS:
        count = _digit_count(magnitude)
        head = magnitude // 10 ** (count - _EDGE_DIGITS)
        tail = magnitude % 10**_EDGE_DIGITS
        return f"<int with {count} digits: {sign}{head}…{tail:0{_EDGE_DIGITS}d}>"
    head = magnitude >> (bits - 4 * _EDGE_DIGITS)
    tail = magnitude & ((1 << 4 * _EDGE_DIGITS) - 1)
    return f"<int of {bits} bits: {sign}0x{head:x}…{tail:0{_EDGE_DIGITS}x}>"


# -- JSON --------------------------------------------------------------------------------------


def _json_ready(data: Any) -> Any:
    """JSON-compatible ``data`` with each integer too long for decimal digits in the tagged
    form flujo stores it in (``{"$t": "int@1", "v": "0x..."}``, docs/format.md)."""
    if isinstance(data, int) and not isinstance(data, bool) and _full_digits(data) is None:
        return {"$t": "int@1", "v": hex(data)}
    if isinstance(data, dict):
        return {key: _json_ready(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_json_ready(value) for value in data]
    return data


def json_text(document: Any, *, indent: int | None = None) -> str:
    """``document`` as JSON text safe to print: the same data, with every character
    ``visible`` would escape written as a ``\\uXXXX`` escape."""
    try:
        text = json.dumps(_json_ready(document), indent=indent, ensure_ascii=False)
    except RecursionError as exc:  # deeper than Python's recursion limit (about 1,000)
        raise NestingTooDeepError("nested too deeply to print as JSON") from exc
    return _UNSAFE_IN_JSON.sub(_json_escape, text)


# -- pretty printing ---------------------------------------------------------------------------


class _StatePrinter(pprint.PrettyPrinter):
    """``pprint`` that shows long integers by ``int_text`` and, when a value's ``repr``
    fails (a model holding such an integer), shows it field by field instead of failing."""

    def format(
        self, object: Any, context: dict[int, int], maxlevels: int, level: int
    ) -> tuple[str, bool, bool]:
        if isinstance(object, int) and type(object).__repr__ is int.__repr__:
            return int_text(object), True, False
        try:
            return super().format(object, context, maxlevels, level)
        except Exception as exc:  # any repr may fail; the value is still shown
            return self._by_parts(object, context, maxlevels, level, exc), False, False

    def _by_parts(self, value: Any, context: dict[int, int], maxlevels: int, level: int,
                  error: Exception) -> str:
        def show(item: Any) -> str:
            return self.format(item, context, maxlevels, level + 1)[0]

        name = type(value).__name__
        try:
            fields = _named_parts(value)
            if fields is not None:
                return f"{name}({', '.join(f'{k}={show(v)}' if k else show(v) for k, v in fields)})"
            if isinstance(value, Mapping):
                return f"{name}({{{', '.join(f'{show(k)}: {show(v)}' for k, v in value.items())}}})"
            if isinstance(value, set | frozenset):
                items = "{" + ", ".join(show(item) for item in value) + "}"
                return items if type(value) is set else f"{name}({items})"
            if isinstance(value, list | tuple | deque):
                return f"{name}([{', '.join(show(item) for item in value)}])"
        except Exception as exc:  # reported below instead of the first error
            error = exc
        return f"<{name}: cannot be shown: {type(error).__name__}: {error}>"


def _named_parts(value: Any) -> Iterable[tuple[str | None, Any]] | None:
    """The fields ``repr`` shows of a pydantic model, dataclass or NamedTuple; else None."""
    if isinstance(value, type):
        return None
    repr_args = getattr(type(value), "__repr_args__", None)  # pydantic's repr protocol
    if callable(repr_args):
        return list(repr_args(value))
    if dataclasses.is_dataclass(value):
        return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr]
    names = getattr(type(value), "_fields", None)  # a NamedTuple's
    if isinstance(value, tuple) and isinstance(names, tuple):
        return list(zip(names, value, strict=False))
    return None


def pretty(value: Any, *, width: int = 100) -> str:
    """The pretty-printed form of a decoded value, safe to print (see the module docstring).

    Raises SerializationError for a value whose shared objects would print as more values
    than any terminal holds (``check_expanded_size``)."""
    check_expanded_size(value)
    text = _StatePrinter(width=width, sort_dicts=False).pformat(value)
    return "\n".join(visible(line) for line in text.split("\n"))
