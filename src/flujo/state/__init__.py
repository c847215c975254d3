"""Durable, versioned persistence of workflow state.

Every save is stored as one self-describing ``Envelope`` (docs/envelope.md), a whole
state or a delta of the save before, by one of the backends (docs/backends.md), all
implementing ``StateBackend``; the backends keep every checkpoint (``history``,
``state_at``) until it is pruned (``prune``, ``compact``). Old records keep
loading: per-type migrations run inside the serialization layer, whole-state migrations are
registered here (docs/migrations.md), and ``migrate_all`` rewrites a store in place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._compression import Compressor, ZlibCompressor, ZstdCompressor, register_compressor
from ._crypto import Cipher, Encryption
from ._envelope import (
    ENVELOPE_VERSION,
    FORMAT,
    Envelope,
    envelope_json_schema,
    envelope_schema_text,
)
from ._envelope_codec import DEFAULT_MAX_PAYLOAD_BYTES, EnvelopeCodec
from ._maintenance import MigrationChange, MigrationFailure, MigrationReport, migrate_all
from ._migrations import (
    StateMigration,
    StateMigrations,
    default_state_migrations,
    register_state_migration,
    set_state_version,
)
from ._redact import redact_dsn
from ._runid import validate_run_id
from ._upgrade import LEGACY_CONTEXT_MARKER
from ._uri import backend_from_uri
from .backends import (
    ClaimHolder,
    ClaimWatch,
    EnvelopeStateBackend,
    InMemoryBackend,
    RunClaim,
    StateBackend,
)
from .backends._history import Checkpoint, PruneReport
from .backends.base import CurrentRecord, SealedRecord, StoredRecord, WriteRecord
from .models import (
    ForkOrigin,
    PauseRequest,
    RunStatus,
    RunSummary,
    StateRecord,
    WorkflowState,
    fork_run_id,
    forked_state,
)

if TYPE_CHECKING:
    from .backends.file import FileBackend
    from .backends.postgres import PostgresBackend
    from .backends.sqlite import SQLiteBackend


def __getattr__(name: str) -> Any:
    """The file, SQLite and PostgreSQL backends, imported when first named."""
    from . import backends

    if name not in backends._LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(backends, name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "ENVELOPE_VERSION",
    "FORMAT",
    "LEGACY_CONTEXT_MARKER",
    "Checkpoint",
    "Cipher",
    "ClaimHolder",
    "ClaimWatch",
    "Compressor",
    "CurrentRecord",
    "Encryption",
    "Envelope",
    "EnvelopeCodec",
    "EnvelopeStateBackend",
    "FileBackend",
    "ForkOrigin",
    "InMemoryBackend",
    "MigrationChange",
    "MigrationFailure",
    "MigrationReport",
    "PauseRequest",
    "PostgresBackend",
    "PruneReport",
    "RunClaim",
    "RunStatus",
    "RunSummary",
    "SQLiteBackend",
    "SealedRecord",
    "StateBackend",
    "StateMigration",
    "StateMigrations",
    "StateRecord",
    "StoredRecord",
    "WorkflowState",
    "WriteRecord",
    "ZlibCompressor",
    "ZstdCompressor",
    "backend_from_uri",
    "default_state_migrations",
    "envelope_json_schema",
    "envelope_schema_text",
    "fork_run_id",
    "forked_state",
    "migrate_all",
    "redact_dsn",
    "register_compressor",
    "register_state_migration",
    "set_state_version",
    "validate_run_id",
]
