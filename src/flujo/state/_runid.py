"""Run-id validation shared by every backend.

The same rules apply to every backend, so a run id that one backend accepts can be copied to
any other (for example when moving runs from SQLite to PostgreSQL). The rules exist because the
file-based stores use the run id as a file name: nothing in a run id may escape the store's
directory or collide with the store's own files.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from flujo.exceptions import InvalidRunIdError

__all__ = ["MAX_RUN_ID_BYTES", "validate_run_id"]

#: Longest accepted run id, in UTF-8 bytes. Leaves room for suffixes within the common
#: 255-byte file-name limit.
MAX_RUN_ID_BYTES = 200

_FORBIDDEN = frozenset("/\\\x00")


def validate_run_id(run_id: Any) -> str:
    """Return ``run_id`` if it is safe to use as a storage key, else raise InvalidRunIdError.

    A run id must be a non-empty ``str`` of at most ``MAX_RUN_ID_BYTES`` UTF-8 bytes that
    does not start with ``.`` (this also refuses ``.`` and ``..``; dot-files are the stores'
    own temporary and lock files), does not start or end with whitespace, and contains no path
    separator (``/``, ``\\``), NUL byte or other control character.
    """
    if not isinstance(run_id, str):
        raise InvalidRunIdError(f"run id must be a str, got {type(run_id).__name__}: {run_id!r}")
    if not run_id:
        raise InvalidRunIdError("run id must not be empty")
    try:
        size = len(run_id.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidRunIdError(f"run id {run_id!r} is not valid Unicode text") from exc
    if size > MAX_RUN_ID_BYTES:
        raise InvalidRunIdError(
            f"run id {run_id[:40]!r}... is {size} bytes long; the limit is {MAX_RUN_ID_BYTES}"
        )
    if run_id.startswith("."):
        raise InvalidRunIdError(f"run id {run_id!r} must not start with '.'")
    if run_id != run_id.strip():
        raise InvalidRunIdError(f"run id {run_id!r} must not start or end with whitespace")
    for char in run_id:
        if char in _FORBIDDEN:
            raise InvalidRunIdError(
                f"run id {run_id!r} must not contain {char!r} (path separators and NUL are refused)"
            )
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidRunIdError(
                f"run id {run_id!r} must not contain the control character {char!r}"
            )
    return run_id
