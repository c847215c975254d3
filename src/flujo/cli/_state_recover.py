"""``flujo state recover``: find the runs nobody executes, and send them to workers again.

A run saved as ``running`` whose claim nobody holds and that nobody saved for a while was
left by a worker that died, or its message was lost on its way to one (a broker restarted
without persistence). ``--dry-run`` lists them from the store alone; resubmitting needs the
application's task (``--task MODULE:NAME``, a ``FlujoTask``),
whose runner knows the store. A run resubmitted twice still runs once (its claim decides).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from typing import Any

from ..application import control
from ._modules import import_application_modules
from ._output import EXIT_ERROR, EXIT_OK, _err, _UsageError, _use_rich
from ._store import _open_store
from ._terminal import json_text, visible


def _task(spec: str) -> Any:
    """The FlujoTask ``spec`` (``MODULE:NAME``, the name maybe dotted) names, imported with
    the current directory first on the path (as ``celery -A`` does)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute or ":" in attribute:
        raise _UsageError(f"--task takes MODULE:NAME (e.g. shop.tasks:orders), got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    [found] = import_application_modules([module_name])
    from ..integrations.celery import FlujoTask

    for part in attribute.split("."):
        if not hasattr(found, part):
            raise _UsageError(f"{spec}: {module_name} has no attribute {attribute!r}")
        found = getattr(found, part)
    if not isinstance(found, FlujoTask):
        raise _UsageError(f"{spec} is {type(found).__name__}, not a FlujoTask (what "
                          "flujo.integrations.celery.flujo_task returns)")
    return found


async def _recover(args: argparse.Namespace) -> int:
    found: list[tuple[str, datetime, bool]]
    if args.task:
        if args.store or args.pipeline:
            raise _UsageError("with --task, the store and the pipeline are the task's runner's;"
                              " leave out --store and --pipeline")
        task = _task(args.task)
        recovered = await task.recover_async(older_than=args.older_than,
                                             dry_run=args.dry_run, limit=args.limit)
        found = [(r.run_id, r.updated_at, r.resubmitted) for r in recovered]
        unsent = [str(r.error) for r in recovered if r.error is not None]
    else:
        if not args.dry_run:
            raise _UsageError("nothing to resubmit the runs with: give --task MODULE:NAME (the"
                              " application's FlujoTask), or --dry-run to list them")
        async with _open_store(args) as backend:
            unattended = await control.unattended_runs(
                backend, args.pipeline, older_than=args.older_than, limit=args.limit)
        found = [(run_id, updated_at, False) for run_id, updated_at in unattended]
        unsent = []
    _print(found, args)
    for error in unsent:
        _err(error)
    return EXIT_ERROR if unsent else EXIT_OK


def _print(found: list[tuple[str, datetime, bool]], args: argparse.Namespace) -> None:
    if args.format == "json":
        for run_id, updated_at, resubmitted in found:
            print(json_text({"run_id": run_id, "updated_at": updated_at.isoformat(),
                             "resubmitted": resubmitted}))
        return
    for run_id, updated_at, resubmitted in found:
        print(f"{visible(run_id)}\t{updated_at.isoformat()}\t"
              f"{'resubmitted' if resubmitted else 'unattended'}")
    if _use_rich(sys.stderr):
        sent = sum(resubmitted for _, _, resubmitted in found)
        print(f"{len(found)} unattended run{'s' if len(found) != 1 else ''} found,"
              f" {sent} resubmitted", file=sys.stderr)
