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


# Names Windows gives to devices, whatever follows a dot: escaped like other characters.
_DEVICES = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(1, 10)),
                      *(f"LPT{n}" for n in range(1, 10))})


def _escaped(ch: str) -> str:
    return "".join(f"~{byte:02X}" for byte in ch.encode())


def file_stem(name: str) -> str:
    """``name`` with every character but letters, digits and ``._@-`` written as ``~`` and
    the hex of its UTF-8 bytes: ``opsapp:Ctx`` -> ``opsapp~3ACtx``, ``a~b`` -> ``a~7Eb``;
    a name that starts like a Windows device (``con``, ``aux.x``) gets its first character
    escaped too. Readable where names are plain, and never the same for two names (on a
    file system that ignores case, two names that differ only in case still meet)."""
    stem = "".join(ch if ch in _KEPT else _escaped(ch) for ch in name)
    if stem.split(".", 1)[0].split("@", 1)[0].upper() in _DEVICES:
        stem = _escaped(stem[0]) + stem[1:]
    return stem


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
