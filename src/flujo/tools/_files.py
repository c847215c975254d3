"""One portable file-name rule for everything ``flujo schema export`` and ``flujo schema docs``
write: a type's name (``opsapp:Ctx``, ``Page[int]``) as a file name that every common file
system accepts and that no other name maps to."""

from __future__ import annotations

import re
import string

__all__ = ["TYPE_SCHEMA_SUFFIX", "file_stem", "name_of_stem", "type_schema_file"]

TYPE_SCHEMA_SUFFIX = ".schema.json"
# Letters, digits and ._@- are kept: valid everywhere (Windows refuses <>:"/\|?* and control
# characters), unreserved in URLs (the docs link the files), and what flujo's own names use.
_KEPT = frozenset(string.ascii_letters + string.digits + "._@-")
_ESCAPE = re.compile(r"(?:~[0-9A-F]{2})+")


def file_stem(name: str) -> str:
    """``name`` with every character but letters, digits and ``._@-`` written as ``~`` and
    the hex of its UTF-8 bytes: ``opsapp:Ctx`` -> ``opsapp~3ACtx``, ``a~b`` -> ``a~7Eb``.
    Readable where names are plain, and never the same for two names."""
    return "".join(ch if ch in _KEPT else "".join(f"~{byte:02X}" for byte in ch.encode())
                   for ch in name)


def name_of_stem(stem: str) -> str:
    """The name ``file_stem`` made ``stem`` from. A stem with no escape is the name itself,
    so folders written before this rule (``opsapp:Ctx@1.schema.json``) still read."""
    def decode(match: re.Match[str]) -> str:
        raw = bytes(int(match.group(0)[i + 1:i + 3], 16) for i in range(0, len(match.group(0)), 3))
        return raw.decode("utf-8", errors="surrogateescape")

    return _ESCAPE.sub(decode, stem)


def type_schema_file(tag: str) -> str:
    """The path, in an exported folder, of the schema of ``tag`` (``name@version``)."""
    return f"types/{file_stem(tag)}{TYPE_SCHEMA_SUFFIX}"
