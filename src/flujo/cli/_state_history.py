"""``flujo state history``, ``fork`` and ``prune``, and the checkpoint ``show --at`` reads.

They need no pipeline: a step is named by its name (from the names the run stored) or its
index, and a checkpoint by its revision.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import timedelta
from typing import Any

from .. import state as _state
from ..application.control import choose_checkpoint, stored_step_names
from ..exceptions import (
    CheckpointNotFoundError,
    EncryptionError,
    PipelineError,
    RunNotFoundError,
    StateConflictError,
)
from ..state import (
    Checkpoint,
    Envelope,
    EnvelopeStateBackend,
    ForkOrigin,
    StateRecord,
    fork_run_id,
    forked_state,
)
from . import _output
from ._output import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    _err,
    _print_tsv,
    _Progress,
    _rich_cell,
    _UsageError,
    _use_rich,
)
from ._store import _check_run_ids, _open_store
from ._terminal import json_text, visible

__all__ = ["_fork", "_history", "_prune", "checkpoint_envelope", "checkpoint_record",
           "parse_age"]

_AGE = re.compile(r"^(\d{1,9})([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w``: an age for ``--older-than``."""
    found = _AGE.match(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(
            f"not an age: {text!r} (a number and a unit: s, m, h, d or w, e.g. 30d)")
    try:
        return timedelta(**{_UNITS[found[2]]: int(found[1])})
    except OverflowError:
        raise argparse.ArgumentTypeError(
            f"age {text!r} is longer than Python can count (at most 999999999 days)") from None


def _step_arg(text: str, names: list[str] | None) -> str | int:
    """A step's name (when the run has a step of that name, even one made of digits), else
    an index written in digits, else a name (refused, listing the names)."""
    if (names is not None and text in names) or not (text.isascii() and text.isdigit()):
        return text
    return int(text)


async def _chosen(backend: EnvelopeStateBackend, run_id: str, step: str | None,
                  revision: int | None) -> Checkpoint:
    checkpoints = await backend.history(run_id)
    if not checkpoints:
        raise RunNotFoundError(f"{backend.describe(run_id)}: no such run")
    names: list[str] | None = []
    if step is not None:
        try:
            names = await stored_step_names(backend, run_id) or []
        except EncryptionError:  # no key given: an index still finds the checkpoint
            names = None
    try:
        return choose_checkpoint(checkpoints, names, backend.describe(run_id),
                                 step=None if step is None else _step_arg(step, names),
                                 revision=revision)
    except CheckpointNotFoundError:
        raise
    except PipelineError as exc:  # no such step: the command line named it wrong
        raise _UsageError(str(exc)) from exc


def _gone(backend: EnvelopeStateBackend, run_id: str, revision: int) -> RunNotFoundError:
    return RunNotFoundError(f"{backend.describe(run_id)}: the checkpoint at revision"
                            f" {revision} is no longer stored")


async def checkpoint_envelope(backend: EnvelopeStateBackend, run_id: str, step: str | None,
                              revision: int | None) -> Envelope:
    """The record of the checkpoint after ``step`` or at ``revision`` as stored (a delta
    holds only what changed), nothing decoded or decrypted (``show --raw --at``)."""
    chosen = await _chosen(backend, run_id, step, revision)
    envelope = await backend.read_record(run_id, chosen.revision)
    if envelope is None:
        raise _gone(backend, run_id, chosen.revision)
    return envelope


async def checkpoint_record(backend: EnvelopeStateBackend, run_id: str, step: str | None,
                            revision: int | None) -> tuple[StateRecord, Checkpoint]:
    """The state after ``step`` (a name or an index) or at ``revision`` (``show --at``,
    ``fork``), and that checkpoint."""
    chosen = await _chosen(backend, run_id, step, revision)
    record = await backend.state_at(run_id, chosen.revision)
    if record is None:
        raise _gone(backend, run_id, chosen.revision)
    return record, chosen


# -- history -----------------------------------------------------------------------------------


def _row(checkpoint: Checkpoint) -> tuple[Any, ...]:
    return (checkpoint.revision, checkpoint.steps_done, checkpoint.step or "-",
            checkpoint.attempt or "-", checkpoint.status, checkpoint.kind, checkpoint.size,
            checkpoint.saved_at.isoformat())


_COLUMNS = ("REVISION", "DONE", "STEP", "ATTEMPT", "STATUS", "KIND", "BYTES", "SAVED")


async def _history(args: argparse.Namespace) -> int:
    _check_run_ids([args.run_id])
    async with _open_store(args) as backend:
        checkpoints = await backend.history(args.run_id)
    if not checkpoints:
        _err(f"no run {args.run_id!r} in the store")
        return EXIT_NOT_FOUND
    fmt = args.format
    if fmt == "auto":
        fmt = "table" if _use_rich(sys.stdout) else "tsv"
    if fmt == "json":
        for c in checkpoints:
            print(json_text({"revision": c.revision, "steps_done": c.steps_done,
                             "step": c.step, "attempt": c.attempt, "status": c.status,
                             "kind": c.kind, "size": c.size,
                             "saved_at": c.saved_at.isoformat()}))
    elif fmt == "table":
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in _COLUMNS:
            table.add_column(column, no_wrap=column != "STEP")
        for c in checkpoints:
            table.add_row(*(_rich_cell(v) for v in _row(c)))
        Console(file=sys.stdout).print(table)
    else:
        _print_tsv([_row(c) for c in checkpoints], None if args.no_header else _COLUMNS)
    return EXIT_OK


# -- fork --------------------------------------------------------------------------------------


async def _fork(args: argparse.Namespace) -> int:
    _check_run_ids([args.run_id] + ([args.new_run_id] if args.new_run_id else []))
    async with _open_store(args) as backend:
        record, chosen = await checkpoint_record(backend, args.run_id, args.at,
                                                 args.revision)
        new_id = args.new_run_id or fork_run_id(args.run_id, _state_suffix())
        origin = ForkOrigin(run_id=args.run_id, revision=chosen.revision, step=chosen.step,
                            steps_done=chosen.steps_done)
        try:
            await backend.save_state(new_id, forked_state(record.state, new_id, origin),
                                     expected_revision=0)
        except StateConflictError as exc:
            raise StateConflictError(f"run {new_id!r} already exists: give the fork another"
                                     " --new-run-id") from exc
    _print_tsv([("forked", args.run_id, chosen.revision, new_id)], None)
    _err(f"run {new_id!r} starts from revision {chosen.revision} of {args.run_id!r}"
         f" ({chosen.steps_done} step(s) done); run it by its id to run the remaining steps")
    return EXIT_OK


def _state_suffix() -> str:
    import uuid

    return uuid.uuid4().hex[:8]


# -- prune -------------------------------------------------------------------------------------


async def _prune(args: argparse.Namespace) -> int:
    if args.older_than is None and args.keep_last is None:
        raise _UsageError("prune needs --older-than AGE or --keep-last N (it never removes"
                          " every finished run)")
    statuses = args.status or None
    async with _open_store(args) as backend:
        if not args.dry_run and not args.yes:
            preview = await backend.prune(older_than=args.older_than, keep_last=args.keep_last,
                                          status=statuses, history_only=args.history_only,
                                          dry_run=True)
            if not (preview.deleted or preview.compacted):
                _err(preview.summary())
                return EXIT_OK
            if not _confirm(preview):
                _err("nothing pruned")
                return EXIT_NOT_FOUND
        with _Progress("pruning", None) as bar:
            report = await backend.prune(
                older_than=args.older_than, keep_last=args.keep_last, status=statuses,
                history_only=args.history_only, dry_run=args.dry_run, progress=bar.update)
    action = ("would compact" if args.dry_run else "compacted") if args.history_only else \
        ("would delete" if args.dry_run else "deleted")
    _print_tsv([(action, run_id) for run_id in report.compacted or report.deleted], None)
    for run_id, why in sorted(report.skipped.items()):
        _err(f"skipped {run_id!r}: {why}")
    _err(report.summary())
    return EXIT_OK


def _confirm(preview: _state.PruneReport) -> bool:
    if not _output._is_tty(sys.stdin):  # via the module: the one place to stub it
        raise _UsageError("refusing to prune without confirmation: pass --yes (or"
                          " --dry-run to see what would go)")
    runs = preview.compacted or preview.deleted
    what = "compact the history of" if preview.compacted else "delete"
    return _output.confirmed(visible(f"{what} {len(runs)} run(s) ({preview.records_removed}"
                                     f" record(s), {preview.bytes_removed:,} bytes)?"))


def show_options(show: argparse.ArgumentParser) -> None:
    """``show --at STEP`` / ``--revision N``."""
    at = show.add_mutually_exclusive_group()
    at.add_argument("--at", metavar="STEP",
                    help="the state saved right after this step (a name, or an index from 0)"
                         " finished, from the run's checkpoint history")
    at.add_argument("--revision", type=int, metavar="N", help="the state at checkpoint N")
