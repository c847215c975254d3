"""The built-in state backends and the contract they implement."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .base import ClaimHolder, ClaimWatch, EnvelopeStateBackend, RunClaim, StateBackend
from .memory import InMemoryBackend

if TYPE_CHECKING:
    from .file import FileBackend
    from .postgres import PostgresBackend
    from .sqlite import SQLiteBackend

# Imported when first named: a process that never opens a store of that kind does not pay
# for it when importing flujo.
_LAZY = {"FileBackend": ".file", "PostgresBackend": ".postgres", "SQLiteBackend": ".sqlite"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value

__all__ = [
    "ClaimHolder",
    "ClaimWatch",
    "EnvelopeStateBackend",
    "FileBackend",
    "InMemoryBackend",
    "PostgresBackend",
    "RunClaim",
    "SQLiteBackend",
    "StateBackend",
]
