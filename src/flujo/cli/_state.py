"""``flujo state ...``: operators' tools for a state store given by URI.

``ls``, ``show``, ``export``, ``import``, ``migrate`` and ``delete`` work on any built-in
backend (``sqlite:///state.db``, ``file:///dir``, ``postgresql://...``; see docs/cli.md).
Output is a rich table / pretty print when a person is watching (stdout is a terminal) and
plain tab-separated text when piped; progress bars go to stderr when it is a terminal. The
exit code says what went wrong (:data:`EXIT_CODES`).

``rich`` is imported only when it is used, so piped output works without it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import importlib
import inspect
import json
import os
import pprint
import sys
import tomllib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, get_args

from ..exceptions import (
    BackendConfigError,
    BackendUnavailableError,
    CorruptStateError,
    DeserializationError,
    EncryptionError,
    FlujoError,
    InvalidRunIdError,
    MigrationError,
    StateConflictError,
    UnknownTypeError,
)
from ..serialization import safe_serialize
from ..state import (
    LEGACY_CONTEXT_MARKER,
    Encryption,
    Envelope,
    EnvelopeStateBackend,
    MigrationReport,
    RunStatus,
    RunSummary,
    backend_from_uri,
    migrate_all,
    validate_run_id,
)

__all__ = [
    "EXIT_CODES",
    "EXIT_CORRUPT",
    "EXIT_ERROR",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "STORE_ENV",
    "add_state_commands",
    "exit_code_for",
]

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_CORRUPT = 4
EXIT_ERROR = 5

#: Exit code -> meaning (also printed by ``flujo state --help``).
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_NOT_FOUND: "run not found, or a check failed (migrate --check, import refused)",
    EXIT_USAGE: "usage error: bad arguments, bad store URI or option (BackendConfigError),"
    " a module that cannot be imported",
    EXIT_UNAVAILABLE: "the store cannot be reached or opened (BackendUnavailableError)",
    EXIT_CORRUPT: "a stored or imported record is damaged (CorruptStateError, "
    "DeserializationError)",
    EXIT_ERROR: "any other flujo error: migration failure, missing key, conflict, ...",
}

#: Environment variable holding the store URI when ``--store`` is not given.
STORE_ENV = "FLUJO_STATE_URI"

_STATUSES: tuple[str, ...] = get_args(RunStatus)
_PROG = "flujo state"


class _UsageError(Exception):
    """A usage problem found after argument parsing (exit code 2)."""


def exit_code_for(exc: BaseException) -> int:
    """The exit code for an error (see :data:`EXIT_CODES`)."""
    if isinstance(exc, _UsageError | InvalidRunIdError | BackendConfigError):
        return EXIT_USAGE
    if isinstance(exc, BackendUnavailableError):
        return EXIT_UNAVAILABLE
    if isinstance(exc, MigrationError):  # readable data this code cannot bring up to date
        return EXIT_ERROR
    if isinstance(exc, CorruptStateError | DeserializationError):
        return EXIT_CORRUPT
    return EXIT_ERROR


def _hint(exc: BaseException) -> str:
    if isinstance(exc, UnknownTypeError):
        return "import the application's types with --module NAME (or [tool.flujo] modules)"
    if isinstance(exc, EncryptionError):
        return "pass the store's keys with --key-env VAR (see flujo state --help)"
    if isinstance(exc, CorruptStateError):
        return "the record was left exactly as it was found"
    return ""


# -- output ----------------------------------------------------------------------------------


def _is_tty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed stream
        return False


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _use_rich(stream: IO[str]) -> bool:
    """Rich output when a person is watching ``stream`` and rich is installed."""
    return _is_tty(stream) and _rich_available()


def _err(message: str) -> None:
    print(f"{_PROG}: {message}", file=sys.stderr)


def _report_error(exc: BaseException) -> None:
    name = "error" if isinstance(exc, _UsageError) else type(exc).__name__
    lines = [f"{name}: {exc}"]
    lines += [f"  {note}" for note in getattr(exc, "__notes__", ())]
    hint = _hint(exc)
    if hint:
        lines.append(f"  hint: {hint}")
    _err("\n".join(lines))


def _plain_cell(value: object) -> str:
    """One TSV cell: tabs and line breaks in free text must not break the columns."""
    text = "" if value is None else str(value)
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def _print_tsv(rows: Sequence[Sequence[object]], header: Sequence[str] | None) -> None:
    if header is not None:
        print("\t".join(header))
    for row in rows:
        print("\t".join(_plain_cell(cell) for cell in row))


class _Progress:
    """A progress bar on stderr when a person is watching it; silent otherwise."""

    def __init__(self, label: str, total: int | None) -> None:
        self.label = label
        self.total = total
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if _use_rich(sys.stderr):
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(file=sys.stderr),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def update(self, completed: int, total: int | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, total=total or self.total)

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, steps)

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.stop()


# -- opening the store -----------------------------------------------------------------------


def _configured_modules() -> list[str]:
    """``[tool.flujo] modules`` of ./pyproject.toml (the same rule as ``flujo schema``)."""
    pyproject = Path("pyproject.toml")
    if not pyproject.is_file():
        return []
    try:
        table = tomllib.loads(pyproject.read_text("utf-8")).get("tool", {}).get("flujo", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise _UsageError(f"cannot read {pyproject}: {exc}") from exc
    modules = table.get("modules", []) if isinstance(table, dict) else []
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise _UsageError("[tool.flujo] modules in pyproject.toml must be a list of module names")
    return modules


def _import_modules(names: Sequence[str]) -> None:
    """Import the application's modules so its types are registered before decoding.

    The operator names them; stored data never does.
    """
    for name in names or _configured_modules():
        try:
            importlib.import_module(name)
        except Exception as exc:  # an import error, or the module's own code failing
            raise _UsageError(
                f"cannot import module {name!r}: {type(exc).__name__}: {exc}"
            ) from exc


def _store_uri(args: argparse.Namespace) -> str:
    uri: str | None = args.store or os.environ.get(STORE_ENV)
    if not uri:
        raise _UsageError(f"no store given: pass --store URI or set {STORE_ENV}")
    return uri


def _scheme(uri: str) -> str:
    return uri.partition("://")[0].lower() if "://" in uri else ""


def redact_uri(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (for messages)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        authority = f"{userinfo}@{host}"
    if "password=" in tail:
        parts = tail.split("password=")
        tail = parts[0] + "".join(
            "password=***" + (p[p.index("&"):] if "&" in p else "") for p in parts[1:]
        )
    return f"{scheme}{sep}{authority}{slash}{tail}"


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
                keys, active_key_id=next(iter(keys)), accept_plaintext=args.accept_plaintext
            )
        except EncryptionError as exc:
            raise _UsageError(str(exc)) from exc
    elif args.accept_plaintext:
        raise _UsageError("--accept-plaintext needs the keys (--key-env)")
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
        yield backend
    finally:
        await backend.close()


Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _handler(command: Command) -> Callable[[argparse.Namespace], int]:
    """Wrap an async command: import modules, run it, turn errors into exit codes."""

    def run(args: argparse.Namespace) -> int:
        try:
            _import_modules(args.module)
            return asyncio.run(command(args))
        except (FlujoError, _UsageError) as exc:
            _report_error(exc)
            return exit_code_for(exc)
        except KeyboardInterrupt:
            _err("interrupted")
            return 130
        except BrokenPipeError:  # `flujo state ls | head`: the reader is gone, stop quietly
            _discard_stdout()
            return 141

    run.__name__ = run.__qualname__ = f"state_{command.__name__.strip('_')}"
    return run


def _discard_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


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


def _not_found(run_id: str) -> int:
    _err(f"no run {run_id!r} in the store")
    return EXIT_NOT_FOUND


# -- ls ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    index: int | None
    names: tuple[str, ...] | None
    note: str = ""  # why the step is unknown: "locked" (encrypted), "damaged", ...

    def text(self) -> str:
        if self.index is None:
            return self.note or "?"
        if not self.names:  # index = steps finished; the names say how many there are
            return f"{self.index} done"
        total = len(self.names)
        if self.index >= total:
            return f"{total}/{total} done"
        return f"{self.index + 1}/{total} {self.names[self.index]}"

    def name(self) -> str | None:
        if self.index is None or not self.names or self.index >= len(self.names):
            return None
        return self.names[self.index]


async def _step_of(
    backend: EnvelopeStateBackend, run_id: str, damaged: dict[str, FlujoError]
) -> _Step:
    """Where a run is, read from its payload without decoding any value (no types needed)."""
    try:
        envelope = await backend.read_envelope(run_id)
        if envelope is None:
            return _Step(None, None, "deleted")
        data = backend.codec.payload_data(envelope, what=backend.describe(run_id))
    except EncryptionError:
        return _Step(None, None, "locked")
    except MigrationError:
        return _Step(None, None, "newer")
    except (CorruptStateError, DeserializationError) as exc:
        damaged[run_id] = exc
        return _Step(None, None, "damaged")
    if not isinstance(data, dict):
        return _Step(None, None)
    index = data.get("current_step_index")
    names = data.get("step_names")
    ok_index = index if isinstance(index, int) and not isinstance(index, bool) else None
    ok_names = (
        tuple(names) if isinstance(names, list) and all(isinstance(n, str) for n in names) else None
    )
    return _Step(ok_index, ok_names)


async def _list_by_reading(
    backend: EnvelopeStateBackend, args: argparse.Namespace, damaged: dict[str, FlujoError]
) -> list[RunSummary]:
    """``list_runs`` for a store where one damaged record makes the backend's listing fail."""
    rows: list[RunSummary] = []
    for run_id in await backend.list_run_ids():
        try:
            env = await backend.read_envelope(run_id)
        except (CorruptStateError, DeserializationError) as exc:
            damaged[run_id] = exc
            continue
        if env is None:
            continue
        if args.status is not None and env.status != args.status:
            continue
        if args.pipeline is not None and env.pipeline_name != args.pipeline:
            continue
        rows.append(RunSummary(run_id=run_id, pipeline_name=env.pipeline_name, status=env.status,
                               revision=env.revision, created_at=env.created_at,
                               updated_at=env.updated_at))
    rows.sort(key=lambda r: r["run_id"])
    rows.sort(key=lambda r: r["updated_at"], reverse=True)
    end = None if args.limit is None else args.offset + args.limit
    return rows[args.offset:end]


_STATUS_STYLE = {"completed": "green", "failed": "red", "running": "yellow",
                 "paused": "cyan", "cancelled": "dim"}


async def _ls(args: argparse.Namespace) -> int:
    damaged: dict[str, FlujoError] = {}
    async with _open_store(args) as backend:
        try:
            rows = await backend.list_runs(status=args.status, pipeline_name=args.pipeline,
                                           limit=args.limit, offset=args.offset)
        except CorruptStateError:
            rows = await _list_by_reading(backend, args, damaged)
        steps = [await _step_of(backend, row["run_id"], damaged) for row in rows]

    fmt = args.format
    if fmt == "auto":
        fmt = "table" if _use_rich(sys.stdout) else "tsv"
    if fmt == "json":
        for row, step in zip(rows, steps, strict=True):
            print(json.dumps({
                "run_id": row["run_id"], "status": row["status"],
                "pipeline_name": row["pipeline_name"], "step": step.index,
                "step_name": step.name(), "steps": None if step.names is None else len(step.names),
                "revision": row["revision"], "created_at": row["created_at"].isoformat(),
                "updated_at": row["updated_at"].isoformat(),
            }, ensure_ascii=False))
    elif fmt == "table":
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("RUN ID", "STATUS", "PIPELINE", "STEP", "REV", "UPDATED (UTC)"):
            table.add_column(column, no_wrap=column != "PIPELINE")
        for row, step in zip(rows, steps, strict=True):
            style = _STATUS_STYLE.get(row["status"], "")
            table.add_row(row["run_id"], f"[{style}]{row['status']}[/]" if style else row["status"],
                          row["pipeline_name"], step.text(), str(row["revision"]),
                          row["updated_at"].strftime("%Y-%m-%d %H:%M:%S"))
        console = Console(file=sys.stdout)
        console.print(table)
        if not rows:
            console.print("[dim]no runs[/]")
    else:
        _print_tsv(
            [(r["run_id"], r["status"], r["pipeline_name"], s.text(), r["revision"],
              r["updated_at"].isoformat()) for r, s in zip(rows, steps, strict=True)],
            None if args.no_header else
            ("RUN_ID", "STATUS", "PIPELINE", "STEP", "REVISION", "UPDATED"),
        )
    for run_id, exc in sorted(damaged.items()):
        _err(f"damaged record {run_id!r}: {exc}")
    return EXIT_CORRUPT if damaged else EXIT_OK


# -- show --------------------------------------------------------------------------------------


def _envelope_document(envelope: Envelope) -> Any:
    """The envelope as it is stored: header fields, then the payload."""
    if envelope.stored_envelope_version == 0:  # earlier flujo: the bare state dict
        return envelope.payload
    return {**envelope.header(), "payload": envelope.payload}


def _print_json(document: Any) -> None:
    if _use_rich(sys.stdout):
        from rich.console import Console

        Console(file=sys.stdout).print_json(data=document, ensure_ascii=False)
    else:
        print(json.dumps(document, indent=2, ensure_ascii=False))


async def _show(args: argparse.Namespace) -> int:
    _check_run_ids([args.run_id])
    async with _open_store(args) as backend:
        if args.raw:
            envelope = await backend.read_envelope(args.run_id)
            if envelope is None:
                return _not_found(args.run_id)
            _print_json(_envelope_document(envelope))
            return EXIT_OK
        record = await backend.load_record(args.run_id)
    if record is None:
        return _not_found(args.run_id)
    state, envelope = record.state, record.envelope
    values = state.to_dict()
    if args.json:
        _print_json(safe_serialize(values, mode="json"))
        return EXIT_OK
    names = values.get("step_names")
    step = _Step(state.current_step_index,
                 tuple(names) if isinstance(names, list | tuple) else None)
    header: list[tuple[str, str]] = [
        ("run", state.run_id),
        ("pipeline", f"{state.pipeline_name} (version {state.pipeline_version})"),
        ("status", state.status + (f": {state.error}" if state.error else "")),
        ("step", step.text()),
        ("revision", str(envelope.revision)),
        ("created", envelope.created_at.isoformat()),
        ("updated", envelope.updated_at.isoformat()),
        ("codec", envelope.codec + (f" (key {envelope.key_id})" if envelope.key_id else "")),
        ("versions", f"envelope {envelope.stored_envelope_version}, state schema "
                     f"{envelope.state_version}, types "
                     + (", ".join(f"{k}@{v}" for k, v in envelope.manifest.items()) or "-")),
    ]
    if _use_rich(sys.stdout):
        from rich.console import Console
        from rich.pretty import Pretty
        from rich.table import Table

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        for key, value in header:
            grid.add_row(key, value)
        console = Console(file=sys.stdout)
        console.print(grid)
        console.print()
        console.print(Pretty(values, expand_all=False, indent_guides=True))
    else:
        for key, value in header:
            print(f"{key}:\t{_plain_cell(value)}")
        print()
        print(pprint.pformat(values, sort_dicts=False, width=100))
    return EXIT_OK


# -- export / import ---------------------------------------------------------------------------


@contextlib.contextmanager
def _output_file(path: str | None) -> Iterator[IO[bytes]]:
    """The export sink: stdout, or a file that appears only once it is complete."""
    if path is None or path == "-":
        stream = getattr(sys.stdout, "buffer", None)
        if stream is None:  # pragma: no cover - a text-only stdout replacement
            raise _UsageError("stdout is not binary; pass --out FILE")
        yield stream
        stream.flush()
        return
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with open(partial, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise _UsageError(f"cannot write {target}: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _export_line(backend: EnvelopeStateBackend, envelope: Envelope) -> bytes:
    if envelope.stored_envelope_version == 0:  # earlier flujo's bare dict, kept as it is
        bare = {k: v for k, v in envelope.payload.items() if k != LEGACY_CONTEXT_MARKER}
        return json.dumps(bare, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False).encode("utf-8")
    return backend.codec.to_bytes(envelope)


async def _export(args: argparse.Namespace) -> int:
    _check_run_ids(args.run_ids)
    missing: list[str] = []
    skipped: dict[str, FlujoError] = {}
    written = 0
    async with _open_store(args) as backend:
        if args.run_ids:
            run_ids = list(args.run_ids)
        elif args.status is not None or args.pipeline is not None:
            rows = await backend.list_runs(status=args.status, pipeline_name=args.pipeline)
            run_ids = sorted(r["run_id"] for r in rows)
        else:
            run_ids = await backend.list_run_ids()
        with _output_file(args.out) as sink, _Progress("exporting", len(run_ids)) as bar:
            for run_id in run_ids:
                bar.advance()
                try:
                    envelope = await backend.read_envelope(run_id)
                except (CorruptStateError, DeserializationError) as exc:
                    if not args.skip_damaged:
                        exc.add_note("pass --skip-damaged to export the other runs")
                        raise
                    skipped[run_id] = exc
                    continue
                if envelope is None:
                    if args.run_ids:
                        missing.append(run_id)
                    continue
                sink.write(_export_line(backend, envelope) + b"\n")
                written += 1
    for run_id, error in skipped.items():
        _err(f"skipped damaged record {run_id!r}: {error}")
    for run_id in missing:
        _err(f"no run {run_id!r} in the store")
    _err(f"exported {written} run(s)" + (f", skipped {len(skipped)} damaged" if skipped else ""))
    return EXIT_NOT_FOUND if missing else EXIT_OK


@contextlib.contextmanager
def _input_lines(path: str) -> Iterator[tuple[Iterator[bytes], int | None]]:
    if path == "-":
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:  # pragma: no cover
            raise _UsageError("stdin is not binary; pass a FILE")
        yield iter(stream), None
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
        size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise _UsageError(f"cannot read {path}: {exc}") from exc
    with handle:
        yield iter(handle), size


async def _import_line(
    backend: EnvelopeStateBackend, args: argparse.Namespace, line: bytes, what: str,
    present: set[str], imported: list[str], existing: list[str],
) -> None:
    envelope = backend.codec.parse(line, what=what)
    try:
        validate_run_id(envelope.run_id)
    except InvalidRunIdError as exc:
        raise CorruptStateError(f"{what}: {exc}") from exc
    if args.dry_run:
        (existing if envelope.run_id in present else imported).append(envelope.run_id)
        return
    try:
        await backend.write_envelope(envelope, expected_revision=None if args.overwrite else 0)
    except StateConflictError:
        existing.append(envelope.run_id)
        return
    imported.append(envelope.run_id)


async def _import(args: argparse.Namespace) -> int:
    imported: list[str] = []
    existing: list[str] = []
    source = "stdin" if args.file == "-" else args.file
    async with _open_store(args, must_exist=False) as backend:
        present = set(await backend.list_run_ids()) if args.dry_run else set()
        with _input_lines(args.file) as (lines, size), _Progress("importing", size) as bar:
            try:
                for number, line in enumerate(lines, 1):
                    bar.advance(len(line))
                    if line.strip():
                        await _import_line(backend, args, line, f"{source} line {number}",
                                           present, imported, existing)
            except FlujoError as exc:
                if imported and not args.dry_run:
                    exc.add_note(f"the {len(imported)} run(s) before this line were imported")
                raise
    verb = "would import" if args.dry_run else "imported"
    if existing:
        what = "would replace" if args.overwrite else "refused (already in the store)"
        if args.dry_run and args.overwrite:
            imported += existing
        else:
            _err(f"{what}: {', '.join(existing)}")
    _err(f"{verb} {len(imported)} run(s)"
         + (f", {len(existing)} already in the store (use --overwrite to replace them)"
            if existing and not args.overwrite else ""))
    return EXIT_NOT_FOUND if existing and not args.overwrite else EXIT_OK


# -- migrate -----------------------------------------------------------------------------------


async def _run_migrate_all(
    backend: EnvelopeStateBackend, *, dry_run: bool, stop_on_failure: bool, label: str
) -> MigrationReport:
    """``migrate_all`` with a progress bar, stopping at the first failure when asked.

    Uses ``progress=`` / ``stop_on_failure=`` when this flujo's ``migrate_all`` has them;
    otherwise shows a spinner and (for the write pass) relies on the dry-run pass before it.
    """
    params = inspect.signature(migrate_all).parameters
    with _Progress(label, None) as bar:
        if "progress" in params and "stop_on_failure" in params:
            extra: dict[str, Any] = {"progress": bar.update, "stop_on_failure": stop_on_failure}
            return await migrate_all(backend, dry_run=dry_run, **extra)
        return await migrate_all(backend, dry_run=dry_run)


def _print_report(report: MigrationReport) -> None:
    verb = "would rewrite" if report.dry_run else "rewrote"
    if report.changed:
        rows = [(c.run_id, c.from_revision, "-" if c.to_revision is None else c.to_revision,
                 "; ".join(c.reasons)) for c in report.changed]
        if _use_rich(sys.stdout):
            from rich.console import Console
            from rich.table import Table

            table = Table(box=None, header_style="bold", pad_edge=False,
                          title=f"{verb} {len(rows)} run(s)", title_justify="left")
            for column in ("RUN ID", "FROM REV", "TO REV", "WHY"):
                table.add_column(column)
            for row in rows:
                table.add_row(*(str(cell) for cell in row))
            Console(file=sys.stdout).print(table)
        else:
            _print_tsv(rows, None)
    for failure in report.failed:
        _err(f"FAILED {failure.run_id}: {failure.message}")
        for note in getattr(failure.error, "__notes__", ()):
            _err(f"  {note}")
        hint = _hint(failure.error)
        if hint:
            _err(f"  hint: {hint}")
    skipped: list[str] = list(getattr(report, "skipped", ()))
    _err(f"scanned {report.scanned} run(s): {len(report.up_to_date)} up to date, {verb}"
         f" {len(report.changed)}, {len(report.failed)} failed"
         + (f"; stopped at the first failure, {len(skipped)} run(s) not examined"
            if skipped else ""))


def _compression_of(codec: str) -> str | None:
    return next((part for part in codec.split("+") if part in ("zlib", "zstd")), None)


def _compression_changes(report: MigrationReport) -> dict[str, str]:
    """Runs whose rewrite would change their compression, with the change (``a -> b``)."""
    changes: dict[str, str] = {}
    for change in report.changed:
        for reason in change.reasons:  # "codec json+zlib -> json" (see EnvelopeCodec.outdated)
            old, arrow, new = reason.removeprefix("codec ").partition(" -> ")
            if reason.startswith("codec ") and arrow and _compression_of(old) != (
                    _compression_of(new)):
                changes[change.run_id] = f"{old} -> {new}"
    return changes


async def _migrate(args: argparse.Namespace) -> int:
    dry_run = args.dry_run or args.check
    async with _open_store(args) as backend:
        plan = await _run_migrate_all(backend, dry_run=True, stop_on_failure=False,
                                      label="checking")
        # Compression is the store's configuration: never change it unless told to.
        unasked = {} if args.compression is not None else _compression_changes(plan)
        if dry_run or plan.failed or unasked:
            _print_report(plan)
        if plan.failed:
            if not dry_run:
                _err("nothing was rewritten: fix the failed run(s) first")
            return exit_code_for(plan.failed[0].error)
        if unasked:
            examples = ", ".join(sorted(set(unasked.values()))[:3])
            _err(f"{len(unasked)} run(s) would change their compression ({examples}) because"
                 " no --compression was given: pass the --compression the application uses,"
                 " or --compression none to store them uncompressed")
            if not dry_run:
                return EXIT_USAGE
        if dry_run:
            return EXIT_NOT_FOUND if args.check and plan.changed else EXIT_OK
        if not plan.changed:
            _print_report(plan)
            return EXIT_OK
        report = await _run_migrate_all(backend, dry_run=False, stop_on_failure=True,
                                        label="migrating")
    _print_report(report)
    return exit_code_for(report.failed[0].error) if report.failed else EXIT_OK


# -- delete ------------------------------------------------------------------------------------


async def _delete(args: argparse.Namespace) -> int:
    _check_run_ids(args.run_ids)
    if not args.yes:
        if not _is_tty(sys.stdin):
            raise _UsageError("refusing to delete without confirmation: pass --yes")
        answer = input(f"delete {len(args.run_ids)} run(s): {', '.join(args.run_ids)}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            _err("nothing deleted")
            return EXIT_NOT_FOUND
    missing = 0
    async with _open_store(args) as backend:
        for run_id in args.run_ids:
            if not await _exists(backend, run_id):
                _err(f"no run {run_id!r} in the store")
                missing += 1
                continue
            await backend.delete_state(run_id)
            print(f"deleted\t{run_id}")
    return EXIT_NOT_FOUND if missing else EXIT_OK


# -- the parser --------------------------------------------------------------------------------

_EPILOG = "exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())

_DESCRIPTION = f"""\
Inspect and maintain a state store. The store is --store URI or ${STORE_ENV}:
  sqlite:///state.db  sqlite:////abs/state.db  file:///abs/dir  file://rel/dir
  postgresql://user@host/db  (--pg-schema, --table)
Records of encrypted stores need their keys: --key-env VAR, where VAR holds KEY_ID:BASE64
(repeatable; the first is the key new records are written with)."""


def _store_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("store options")
    group.add_argument("--store", metavar="URI", help=f"the state store (default: ${STORE_ENV})")
    group.add_argument("--module", action="append", default=[], metavar="NAME",
                       help="import this module first so its types are registered (repeatable;"
                            " default: [tool.flujo] modules in ./pyproject.toml)")
    group.add_argument("--table", metavar="NAME", help="table name (sqlite, postgresql)")
    group.add_argument("--pg-schema", metavar="NAME", help="PostgreSQL schema (default: public)")
    group.add_argument("--connect-timeout", type=float, metavar="SECONDS",
                       help="PostgreSQL connect timeout (default: 10)")
    group.add_argument("--compression", choices=("none", "zlib", "zstd", "auto"),
                       help="compression of records written (import, migrate)")
    group.add_argument("--key-env", action="append", default=[], metavar="VAR",
                       help="environment variable holding KEY_ID:BASE64_KEY (repeatable)")
    group.add_argument("--accept-plaintext", action="store_true",
                       help="with --key-env: also read unencrypted records (to encrypt a store"
                            " with migrate)")
    return common


def add_state_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add the ``state`` command group (``ls``, ``show``, ``export``, ``import``, ``migrate``,
    ``delete``) to a parser's subcommands. Each command sets ``handler``: a function of the
    parsed arguments returning the exit code."""
    common = _store_options()
    raw = argparse.RawDescriptionHelpFormatter
    state = subparsers.add_parser(
        "state", help="inspect, back up, move and migrate stored runs",
        description=_DESCRIPTION, epilog=_EPILOG, formatter_class=raw)
    commands = state.add_subparsers(dest="state_command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, command: Command) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, parents=[common], help=help_text,
                                     description=help_text, epilog=_EPILOG, formatter_class=raw)
        parser.set_defaults(handler=_handler(command))
        return parser

    ls = add("ls", "list runs, most recently updated first", _ls)
    ls.add_argument("--status", choices=_STATUSES)
    ls.add_argument("--pipeline", metavar="NAME", help="only runs of this pipeline")
    ls.add_argument("--limit", type=_non_negative, default=50, help="at most N runs (default 50)")
    ls.add_argument("--all", dest="limit", action="store_const", const=None,
                    help="no limit")
    ls.add_argument("--offset", type=_non_negative, default=0, help="skip the first N runs")
    ls.add_argument("--format", choices=("auto", "table", "tsv", "json"), default="auto",
                    help="auto: a table on a terminal, tab-separated when piped")
    ls.add_argument("--no-header", action="store_true", help="tsv: no header line")

    show = add("show", "print a run's decoded state", _show)
    show.add_argument("run_id", metavar="RUN_ID")
    mode = show.add_mutually_exclusive_group()
    mode.add_argument("--raw", action="store_true",
                      help="the stored envelope as JSON (nothing decoded or decrypted)")
    mode.add_argument("--json", action="store_true",
                      help="the state as plain JSON (types not kept; for people and jq)")

    export = add("export", "write runs as JSON lines (one stored envelope per line)", _export)
    export.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="default: every run")
    export.add_argument("-o", "--out", metavar="FILE", help="default: stdout")
    export.add_argument("--status", choices=_STATUSES)
    export.add_argument("--pipeline", metavar="NAME")
    export.add_argument("--skip-damaged", action="store_true",
                        help="export the other runs when a record is damaged")

    imp = add("import", "store runs from JSON lines written by export", _import)
    imp.add_argument("file", metavar="FILE", help="'-' for stdin")
    imp.add_argument("--overwrite", action="store_true", help="replace runs already stored")
    imp.add_argument("--dry-run", action="store_true", help="check the file, write nothing")

    migrate = add("migrate", "rewrite stored records to the current versions", _migrate)
    migrate.add_argument("--dry-run", action="store_true", help="report, write nothing")
    migrate.add_argument("--check", action="store_true",
                         help="like --dry-run; exit 1 if any run needs rewriting")

    delete = add("delete", "delete runs", _delete)
    delete.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value
