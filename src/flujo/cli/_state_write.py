"""``flujo state import``, ``migrate`` and ``delete``: changing a store."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator

from ..exceptions import CorruptStateError, FlujoError, InvalidRunIdError, StateConflictError
from ..state import (
    Encryption,
    EnvelopeStateBackend,
    MigrationReport,
    migrate_all,
    validate_run_id,
)
from . import _output
from ._output import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    _err,
    _hint,
    _print_tsv,
    _Progress,
    _rich_cell,
    _UsageError,
    _use_rich,
    exit_code_for,
)
from ._store import _check_run_ids, _exists, _open_store
from ._terminal import visible

# -- import ------------------------------------------------------------------------------------


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
        with _input_lines(args.file) as (lines, size), _Progress("importing", size,
                                                                   in_bytes=True) as bar:
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
    """``migrate_all`` with a progress bar, stopping at the first failure when asked. When a
    writing pass is interrupted (Ctrl-C, a lost store), it says which runs were rewritten
    before it stopped."""
    report = MigrationReport(dry_run=dry_run)
    try:
        with _Progress(label, None) as bar:
            return await migrate_all(backend, dry_run=dry_run, stop_on_failure=stop_on_failure,
                                     progress=bar.update, report=report)
    except BaseException:  # (Ctrl-C is a cancellation inside asyncio.run)
        if not dry_run:
            _print_report(report)
            _err(f"interrupted: {len(report.changed)} run(s) rewritten before it stopped"
                 + (" (listed above)" if report.changed else "")
                 + "; the others are as they were: run migrate again for the rest")
        raise


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
                table.add_row(*(_rich_cell(cell) for cell in row))
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
    """The compressor a codec string names (the CLI encrypts with AES-GCM only)."""
    stages = codec.split("+")[1:]
    if stages[-1:] == [Encryption.AES_GCM]:
        stages.pop()
    return stages[0] if stages else None


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
            _err(f"scanned {plan.scanned} run(s): all up to date, nothing to rewrite")
            return EXIT_OK
        report = await _run_migrate_all(backend, dry_run=False, stop_on_failure=True,
                                        label="migrating")
    _print_report(report)
    return exit_code_for(report.failed[0].error) if report.failed else EXIT_OK


# -- delete ------------------------------------------------------------------------------------


async def _delete(args: argparse.Namespace) -> int:
    _check_run_ids(args.run_ids)
    if not args.yes:
        if not _output._is_tty(sys.stdin):  # via the module: the one place to stub it
            raise _UsageError("refusing to delete without confirmation: pass --yes")
        if not _output.confirmed(
                visible(f"delete {len(args.run_ids)} run(s): {', '.join(args.run_ids)}?")):
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
            _print_tsv([("deleted", run_id)], None)
    return EXIT_NOT_FOUND if missing else EXIT_OK
