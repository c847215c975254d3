"""``flujo state ls``, ``show`` and ``export``: reading a store (nothing is written)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from ..exceptions import (
    CorruptStateError,
    DeserializationError,
    EncryptionError,
    FlujoError,
    MigrationError,
)
from ..serialization import mask_secrets, safe_deserialize, safe_serialize
from ..state import (
    LEGACY_CONTEXT_MARKER,
    ClaimHolder,
    Envelope,
    EnvelopeStateBackend,
    PauseRequest,
    RunSummary,
    StateRecord,
)
from ._outfile import private_output_file
from ._output import (
    EXIT_CORRUPT,
    EXIT_NOT_FOUND,
    EXIT_OK,
    _cell,
    _err,
    _not_found,
    _print_json,
    _print_tsv,
    _Progress,
    _rich_cell,
    _UsageError,
    _use_rich,
)
from ._state_history import checkpoint_envelope, checkpoint_record
from ._store import _check_run_ids, _open_store
from ._terminal import json_text, pretty, visible

# -- ls ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    index: int | None
    names: tuple[str, ...] | None
    note: str = ""  # why the step is unknown: "locked" (encrypted), "damaged", ...
    pause: PauseRequest | None = None  # what a paused run waits for

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
        data = await backend.plain_state(run_id)
        if data is None:
            return _Step(None, None, "deleted")
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
    return _Step(ok_index, ok_names, pause=_pause_in(backend, data.get("pause")))


def _pause_in(backend: EnvelopeStateBackend, stored: Any) -> PauseRequest | None:
    """The pause stored in a payload (flujo's own type: no application type is needed)."""
    if stored is None:
        return None
    try:
        pause = safe_deserialize(stored, registry=backend.codec.registry)
    except FlujoError:
        return None
    return pause if isinstance(pause, PauseRequest) else None


def _waiting(step: _Step) -> str:
    """What a paused run waits for, for a person: the message and the input model's name."""
    if step.pause is None:
        return ""
    message = step.pause.message or "(no message)"
    return f"{message} [{step.pause.input_type}]"


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
        # Listing running runs shows which worker holds each one's claim, and since when.
        running = args.status == "running"
        holders = await _holders(backend, [row["run_id"] for row in rows]) if running else {}

    # Listing paused runs shows what each waits for (read from its record, as the step is).
    paused = args.status == "paused"
    fmt = args.format
    if fmt == "auto":
        fmt = "table" if _use_rich(sys.stdout) else "tsv"
    if fmt == "json":
        for row, step in zip(rows, steps, strict=True):
            print(json_text({
                "run_id": row["run_id"], "status": row["status"],
                "pipeline_name": row["pipeline_name"], "step": step.index,
                "step_name": step.name(), "steps": None if step.names is None else len(step.names),
                "revision": row["revision"], "created_at": row["created_at"].isoformat(),
                "updated_at": row["updated_at"].isoformat(),
                "pause": None if step.pause is None else {
                    "step": step.pause.step, "message": step.pause.message,
                    "input_type": step.pause.input_type},
                **({"claim": _claim_document(holders.get(row["run_id"]))} if running else {}),
            }))
    elif fmt == "table":
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        columns = ["RUN ID", "STATUS", "PIPELINE", "STEP", "REV", "UPDATED (UTC)"]
        extra = (["WAITING FOR"] if paused else []) + \
            (["HELD BY", "SINCE (UTC)"] if running else [])
        for column in columns + extra:
            table.add_column(column, no_wrap=column not in ("PIPELINE", "WAITING FOR"))
        for row, step in zip(rows, steps, strict=True):
            cells = [_rich_cell(row["run_id"]),
                     _rich_cell(row["status"], _STATUS_STYLE.get(row["status"], "")),
                     _rich_cell(row["pipeline_name"]), _rich_cell(step.text()),
                     _rich_cell(row["revision"]),
                     _rich_cell(row["updated_at"].strftime("%Y-%m-%d %H:%M:%S"))]
            held = [_rich_cell(cell) for cell in
                    _held(holders.get(row["run_id"]), "%Y-%m-%d %H:%M:%S")]
            table.add_row(*cells, *([_rich_cell(_waiting(step))] if paused else []),
                          *(held if running else []))
        console = Console(file=sys.stdout)
        console.print(table)
        if not rows:
            console.print("[dim]no runs[/]")
    else:
        _print_tsv(
            [(r["run_id"], r["status"], r["pipeline_name"], s.text(), r["revision"],
              r["updated_at"].isoformat(), *([_waiting(s)] if paused else []),
              *(_held(holders.get(r["run_id"])) if running else []))
             for r, s in zip(rows, steps, strict=True)],
            None if args.no_header else
            ("RUN_ID", "STATUS", "PIPELINE", "STEP", "REVISION", "UPDATED",
             *(["WAITING_FOR"] if paused else []),
             *(["HELD_BY", "HELD_SINCE"] if running else [])),
        )
    for run_id, exc in sorted(damaged.items()):
        _err(f"damaged record {run_id!r}: {exc}")
    return EXIT_CORRUPT if damaged else EXIT_OK


async def _holders(backend: EnvelopeStateBackend,
                   run_ids: list[str]) -> dict[str, ClaimHolder]:
    try:
        return await backend.claim_holders(run_ids)
    except NotImplementedError:  # a backend that cannot tell: every cell says so
        return {}


def _held(holder: ClaimHolder | None, when: str | None = None) -> list[str]:
    """The HELD BY / SINCE cells: ``-`` for a run nobody executes (it waits for a worker,
    or its worker died; ``flujo state recover``)."""
    if holder is None:
        return ["-", "-"]
    since = holder.since.strftime(when) if when else holder.since.isoformat()
    return [visible(holder.holder), since]


def _claim_document(holder: ClaimHolder | None) -> dict[str, str] | None:
    return None if holder is None else {"holder": holder.holder,
                                        "since": holder.since.isoformat()}


# -- show --------------------------------------------------------------------------------------


def _envelope_document(envelope: Envelope) -> Any:
    """The envelope as it is stored: header fields, then the payload, with the value of every
    stored secret masked (``flujo state export`` keeps them: it is for machines)."""
    payload = mask_secrets(envelope.payload)
    if envelope.stored_envelope_version == 0:  # earlier flujo: the bare state dict
        return payload
    return {**envelope.header(), "payload": payload}



async def _show(args: argparse.Namespace) -> int:
    _check_run_ids([args.run_id])
    async with _open_store(args) as backend:
        at = args.at is not None or args.revision is not None
        if args.raw and not at:
            envelope = await backend.read_envelope(args.run_id)
            if envelope is None:
                return _not_found(args.run_id)
            _print_json(_envelope_document(envelope))
            return EXIT_OK
        if at and args.raw:  # a checkpoint's stored record: nothing decoded
            _print_json(_envelope_document(await checkpoint_envelope(
                backend, args.run_id, args.at, args.revision)))
            return EXIT_OK
        if at:  # a checkpoint from the history
            record: StateRecord | None = (await checkpoint_record(
                backend, args.run_id, args.at, args.revision))[0]
        else:
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
    if state.pause is not None:  # what an operator answering needs first
        header.insert(3, ("waiting for", _waiting(_Step(None, None, pause=state.pause))
                          + f" (version {state.pause.input_version}; its JSON Schema is"
                          " pause.input_schema below)"))
    if _use_rich(sys.stdout):
        from rich.console import Console
        from rich.highlighter import ReprHighlighter
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        for key, value in header:
            grid.add_row(key, _rich_cell(value))
        console = Console(file=sys.stdout)
        console.print(grid)
        console.print()
        console.print(ReprHighlighter()(Text(pretty(values, width=console.width))))
    else:
        for key, value in header:
            print(f"{key}:\t{_cell(value)}")
        print()
        print(pretty(values))
    return EXIT_OK


# -- export ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _output_file(path: str | None) -> Iterator[IO[bytes]]:
    """The export sink: stdout, or a private file that appears only once it is complete."""
    if path is None or path == "-":
        stream = getattr(sys.stdout, "buffer", None)
        if stream is None:  # pragma: no cover - a text-only stdout replacement
            raise _UsageError("stdout is not binary; pass --out FILE")
        yield stream
        stream.flush()
        return
    with private_output_file(path) as handle:
        yield handle


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
                except (CorruptStateError, DeserializationError, EncryptionError) as exc:
                    if not args.skip_damaged:
                        exc.add_note("pass --skip-damaged to export the other runs"
                                     + (" (or --key-env: a run saved since its last whole"
                                        " state is exported rebuilt from its chain)"
                                        if isinstance(exc, EncryptionError) else ""))
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
