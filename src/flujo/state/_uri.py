"""``backend_from_uri``: pick and configure a backend from one string."""

from __future__ import annotations

from typing import Any

from flujo.exceptions import BackendConfigError

from ._redact import redact_dsn
from .backends.base import StateBackend

__all__ = ["backend_from_uri"]


def backend_from_uri(uri: str, **options: Any) -> StateBackend:
    """Build a backend from a URI; ``options`` go to the backend's constructor.

    ==================================  ===========================================
    ``memory://``                       ``InMemoryBackend``
    ``file:///var/lib/app/state``       ``FileBackend`` (absolute directory)
    ``file://state``                    ``FileBackend`` (relative directory)
    ``sqlite:///state.db``              ``SQLiteBackend`` (relative file)
    ``sqlite:////var/lib/app/state.db`` ``SQLiteBackend`` (absolute file)
    ``postgresql://user@host/db``       ``PostgresBackend`` (also ``postgres://``)
    ==================================  ===========================================
    """
    if not isinstance(uri, str):
        raise BackendConfigError(f"a state backend URI must be a str, got {type(uri).__name__}")
    shown = redact_dsn(uri)  # what messages quote: a mistyped postgresql:// URI has a password
    if "://" not in uri:
        raise BackendConfigError(f"not a state backend URI: {shown!r} (expected e.g. 'sqlite:///state.db')")
    scheme, _, rest = uri.partition("://")
    scheme = scheme.lower()
    if scheme == "memory":
        if rest:
            raise BackendConfigError(f"memory:// takes no path, got {shown!r}")
        from .backends.memory import InMemoryBackend

        return InMemoryBackend(**options)
    if scheme == "file":
        if not rest:
            raise BackendConfigError(f"file:// needs a directory, got {shown!r}")
        from .backends.file import FileBackend

        return FileBackend(rest, **options)
    if scheme == "sqlite":
        if not rest.startswith("/") or len(rest) < 2:
            raise BackendConfigError(
                f"expected sqlite:///relative.db or sqlite:////absolute.db, got {shown!r}"
            )
        from .backends.sqlite import SQLiteBackend

        return SQLiteBackend(rest[1:], **options)
    if scheme in ("postgresql", "postgres"):
        from .backends.postgres import PostgresBackend

        return PostgresBackend(uri, **options)
    raise BackendConfigError(
        f"unknown state backend scheme {scheme!r} in {shown!r};"
        " use memory://, file://, sqlite:/// or postgresql://"
    )
