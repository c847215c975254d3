"""Where a value holds text that JSON cannot carry: a lone surrogate (``"\\ud800"``).

Python strings may hold surrogate code points on their own (``surrogateescape``-decoded
bytes, sliced UTF-16); UTF-8, and so JSON text, cannot. The encoder passes strings through
untouched (checking every one would slow every save), so the JSON writer is the first to
notice, with no idea where. This search runs only then, to name the path, in the value's own
terms (``$.messages[2].content``) where it can, else in the encoded data's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from ..exceptions import SerializationError
from ._codec import is_unicode
from ._paths import key_segment

_MAX_VISITS = 1_000_000


def lone_surrogate_error(value: Any, data: Any, context: str) -> SerializationError:
    """The error for JSON text refused over a lone surrogate in ``value`` (encoded: ``data``)."""
    found = _first_bad_text(value) or _first_bad_text(data)
    if found is None:
        return SerializationError(f"{context}: a string is not valid Unicode text")
    path, text = found
    bad = next(ch for ch in text if 0xD800 <= ord(ch) <= 0xDFFF)
    return SerializationError(
        f"{context}: the string {_excerpt(text)} holds a lone surrogate {bad!r}, which is not "
        "valid Unicode text (JSON cannot store it; decode its bytes with errors='replace', "
        "or store them as bytes)", path=path)


def _first_bad_text(root: Any) -> tuple[str, str] | None:
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("$", root)]
    visits = 0
    while stack and visits < _MAX_VISITS:
        path, value = stack.pop()
        visits += 1
        if isinstance(value, str):
            if not (value.isascii() or is_unicode(value)):
                return path, value
            continue
        if id(value) in seen:
            continue
        seen.add(id(value))
        children = list(_children(path, value))
        stack.extend(reversed(children))  # depth-first, in order: the first bad text
    return None


def _children(path: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}{key_segment(key)}", key  # a key may be the bad text
            yield f"{path}{key_segment(key)}", item
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            yield f"{path}[{index}]", item
    elif isinstance(value, BaseModel):
        yield from _attributes(path, value.__dict__)
        yield from _attributes(path, value.__pydantic_extra__ or {})
        yield from _attributes(path, value.__pydantic_private__ or {})
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            if hasattr(value, field.name):
                yield f"{path}.{field.name}", getattr(value, field.name)
        yield from _attributes(path, getattr(value, "__dict__", {}))


def _attributes(path: str, namespace: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for name, item in namespace.items():
        yield f"{path}{key_segment(name)}", item


def _excerpt(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")
