"""``flujo state resume`` and ``flujo state cancel``: an operator answers or stops a run.

Neither needs the pipeline: ``resume`` records the answer to a paused run (validated against
the input model the pause declared, which ``--module`` makes known) exactly as a runner
would, in one compare-and-set save under the run's claim; the run then goes on when a worker
runs it by its id. ``cancel`` cancels a run nobody executes at once and asks the worker
executing one to stop at its next step boundary.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..application import control
from ..application.control import accept_answer, input_model_for
from ..exceptions import RunNotFoundError
from ._output import EXIT_OK, _UsageError
from ._store import _check_run_ids, _open_store
from ._terminal import visible

#: The largest answer file read (an answer is a small object a person wrote).
MAX_ANSWER_BYTES = 16 * 1024 * 1024


def _read_answer(path: str) -> bytes:
    try:
        if path == "-":
            stream = getattr(sys.stdin, "buffer", None)
            if stream is None:  # pragma: no cover
                raise _UsageError("stdin is not binary; pass a FILE")
            data: bytes = stream.read(MAX_ANSWER_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                if os.fstat(handle.fileno()).st_size > MAX_ANSWER_BYTES:
                    raise _UsageError(f"{path} is over {MAX_ANSWER_BYTES:,} bytes; an answer"
                                      " is a small JSON object")
                data = handle.read(MAX_ANSWER_BYTES + 1)
    except OSError as exc:
        raise _UsageError(f"cannot read {path}: {exc}") from exc
    if len(data) > MAX_ANSWER_BYTES:
        raise _UsageError(f"the answer is over {MAX_ANSWER_BYTES:,} bytes; an answer is a"
                          " small JSON object")
    return data


async def _resume(args: argparse.Namespace) -> int:
    _check_run_ids([args.run_id])
    answer = _read_answer(args.input)
    async with _open_store(args) as backend:
        what = backend.describe(args.run_id)
        async with control.claimed(backend, args.run_id) as claim:
            state, revision, _ = await control.load_run(backend, args.run_id)
            if state is None:
                raise RunNotFoundError(f"{what}: no such run")
            pause = control.pause_of(what, state)
            registry = control.registry_of(backend)
            model = input_model_for(what, pause, None, registry)
            value = accept_answer(what, pause, model, answer, registry)
            answered, _ = control.answered_state(state, value)
            await control.save_run(backend, answered, revision, claim)
    names = answered.step_names or []
    if answered.status == "completed":
        print(f"answered: run {visible(args.run_id)} is completed (the paused step was its"
              " last)")
    else:
        following = names[answered.current_step_index] \
            if answered.current_step_index < len(names) else "?"
        print(f"answered: run {visible(args.run_id)} goes on with step"
              f" {visible(following)!r} when a worker runs it"
              f" (runner.run(run_id={args.run_id!r}))")
    return EXIT_OK


async def _cancel(args: argparse.Namespace) -> int:
    _check_run_ids([args.run_id])
    async with _open_store(args) as backend:
        status = await control.cancel_run(backend, args.run_id)
    run = visible(args.run_id)
    if status == "running":
        print(f"cancellation requested: the worker executing run {run} stops at its next"
              " step boundary and saves it as cancelled")
    elif status == "cancelled":
        print(f"cancelled: run {run}")
    else:
        print(f"run {run} is {status}; nothing to cancel")
    return EXIT_OK
