"""The built-in state backends and the contract they implement."""

from __future__ import annotations

from .base import EnvelopeStateBackend, RunClaim, StateBackend
from .file import FileBackend
from .memory import InMemoryBackend
from .postgres import PostgresBackend
from .sqlite import SQLiteBackend

__all__ = [
    "EnvelopeStateBackend",
    "FileBackend",
    "InMemoryBackend",
    "PostgresBackend",
    "RunClaim",
    "SQLiteBackend",
    "StateBackend",
]
