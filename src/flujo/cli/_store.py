"""Opening the store a ``flujo state`` command works on.

The URI comes from ``--store`` or ``$FLUJO_STATE_URI``; backend options (table, schema,
compression, encryption keys from ``--key-env``) from the other store options.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from ..exceptions import (
    BackendConfigError,
    BackendUnavailableError,
    CorruptStateError,
    DeserializationError,
    EncryptionError,
    InvalidRunIdError,
)
from ..state import (
    Encryption,
    EnvelopeStateBackend,
    PostgresBackend,
    backend_from_uri,
    redact_dsn,
    validate_run_id,
)
from ._output import _UsageError

#: Environment variable holding the store URI when ``--store`` is not given.
STORE_ENV = "FLUJO_STATE_URI"


def _store_uri(args: argparse.Namespace) -> str:
    uri: str | None = args.store or os.environ.get(STORE_ENV)
    if not uri:
        raise _UsageError(f"no store given: pass --store URI or set {STORE_ENV}")
    return uri


def _scheme(uri: str) -> str:
    return uri.partition("://")[0].lower() if "://" in uri else ""


def redact_uri(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (for messages); keyword DSNs too."""
    return redact_dsn(uri)


def _keys(var_names: Sequence[str]) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for var in var_names:
        value = os.environ.get(var)
        if value is None:
            raise _UsageError(f"--key-env {var}: the environment variable is not set")
        key_id, sep, encoded = value.partition(":")
        if not sep or not key_id:
            raise _UsageError(f"--key-env {var}: expected the value KEY_ID:BASE64_KEY")
        try:
            keys[key_id] = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _UsageError(f"--key-env {var}: the key is not valid base64") from exc
    return keys


def _backend_options(args: argparse.Namespace, uri: str) -> dict[str, Any]:
    scheme = _scheme(uri)
    options: dict[str, Any] = {}
    if args.table is not None:
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise _UsageError("--table applies to sqlite:// and postgresql:// stores only")
        options["table"] = args.table
    for flag, value, name in (("--pg-schema", args.pg_schema, "schema"),
                              ("--connect-timeout", args.connect_timeout, "connect_timeout")):
        if value is not None:
            if scheme not in ("postgresql", "postgres"):
                raise _UsageError(f"{flag} applies to postgresql:// stores only")
            options[name] = value
    if args.compression is not None:
        options["compression"] = None if args.compression == "none" else args.compression
    if args.key_env:
        keys = _keys(args.key_env)
        try:
            options["encryption"] = Encryption(
                keys, active_key_id=next(iter(keys)), accept_plaintext=args.accept_plaintext,
                store=args.store_name, accept_unbound=args.accept_unbound,
            )
        except EncryptionError as exc:
            raise _UsageError(str(exc)) from exc
    else:
        for flag, given in (("--accept-plaintext", args.accept_plaintext),
                            ("--store-name", args.store_name is not None),
                            ("--accept-unbound", args.accept_unbound)):
            if given:
                raise _UsageError(f"{flag} needs the keys (--key-env)")
    return options


def _require_existing(uri: str) -> None:
    """Refuse to read a file or SQLite store that does not exist (instead of creating it)."""
    scheme = _scheme(uri)
    rest = uri.partition("://")[2]
    if scheme == "file" and rest and not Path(rest).is_dir():
        raise BackendUnavailableError(f"no state directory at {rest}")
    database = rest[1:] if scheme == "sqlite" and rest.startswith("/") else ""
    if database and not Path(database).is_file():
        raise BackendUnavailableError(f"no SQLite database at {database}")


@contextlib.asynccontextmanager
async def _open_store(
    args: argparse.Namespace, *, must_exist: bool = True
) -> AsyncIterator[EnvelopeStateBackend]:
    uri = _store_uri(args)
    options = _backend_options(args, uri)
    if must_exist:
        _require_existing(uri)
    try:
        backend = backend_from_uri(uri, **options)
    except (BackendConfigError, TypeError) as exc:  # TypeError: an option it does not take
        raise _UsageError(f"bad store URI or option ({redact_uri(uri)}): {exc}") from exc
    if not isinstance(backend, EnvelopeStateBackend):  # pragma: no cover - all built-ins are
        await backend.close()
        raise _UsageError(f"{type(backend).__name__} does not support the operator tools")
    try:
        if must_exist:
            await _require_schema(backend)
        yield backend
    finally:
        await backend.close()


async def _require_schema(backend: EnvelopeStateBackend) -> None:
    """Refuse to read a PostgreSQL schema that does not exist (reads create nothing; a typo in
    ``--pg-schema`` is no store, as a missing SQLite file is)."""
    if isinstance(backend, PostgresBackend) and not await backend.schema_exists():
        raise BackendUnavailableError(f"no schema {backend.schema!r} in the PostgreSQL database")


# -- run ids ---------------------------------------------------------------------------------


def _check_run_ids(run_ids: Sequence[str]) -> None:
    for run_id in run_ids:
        try:
            validate_run_id(run_id)
        except InvalidRunIdError as exc:
            raise _UsageError(str(exc)) from exc


async def _exists(backend: EnvelopeStateBackend, run_id: str) -> bool:
    """True when a record is stored for ``run_id``, readable or not."""
    try:
        return await backend.read_envelope(run_id) is not None
    except (CorruptStateError, DeserializationError):
        return True
