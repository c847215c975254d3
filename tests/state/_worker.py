"""A worker process for the multi-process and crash tests.

Usage: ``python _worker.py '<json config>'``. The config names the backend (``kind``: file,
sqlite or postgres, with ``path`` or ``dsn``/``schema``/``table``), the ``mode`` and its
parameters. Progress goes to stdout one line at a time so the parent can follow (and kill).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from flujo.exceptions import StateConflictError
from flujo.state import (
    FileBackend,
    PostgresBackend,
    SQLiteBackend,
    StateBackend,
    WorkflowState,
)


def make_backend(cfg: dict[str, Any]) -> StateBackend:
    if cfg["kind"] == "file":
        return FileBackend(cfg["path"])
    if cfg["kind"] == "sqlite":
        return SQLiteBackend(cfg["path"])
    return PostgresBackend(cfg["dsn"], schema=cfg["schema"], table=cfg["table"], max_size=2,
                           claim_lease=cfg.get("claim_lease", 30.0))


def state(run_id: str, context: dict[str, Any]) -> WorkflowState:
    return WorkflowState(run_id=run_id, pipeline_name="mp", pipeline_context=context)


async def counter(backend: StateBackend, cfg: dict[str, Any]) -> None:
    """Increment ``n`` with compare-and-set, retrying on conflicts."""
    run_id = cfg["run_id"]
    conflicts = 0
    for _ in range(cfg["n"]):
        while True:
            record = await backend.load_record(run_id)
            assert record is not None
            context = dict(record.state.pipeline_context)
            context["n"] += 1
            try:
                await backend.save_state(
                    run_id, state(run_id, context), expected_revision=record.revision
                )
                break
            except StateConflictError:
                conflicts += 1
    print(f"done conflicts={conflicts}")


async def hammer(backend: StateBackend, cfg: dict[str, Any]) -> None:
    """Unconditional saves of large, self-checking states."""
    run_id = cfg["run_id"]
    for i in range(cfg["n"]):
        marker = f"{os.getpid()}-{i}"
        await backend.save_state(run_id, state(run_id, {"m": marker, "b": [marker] * cfg["size"]}))
    print("done")


async def saver(backend: StateBackend, cfg: dict[str, Any]) -> None:
    """Save i = 1, 2, 3... forever, reporting each save once it has returned."""
    run_id = cfg["run_id"]
    i = 0
    while True:
        i += 1
        await backend.save_state(run_id, state(run_id, {"i": i, "b": [i] * cfg["size"]}))
        print(f"saved {i}", flush=True)


async def claimer(backend: StateBackend, cfg: dict[str, Any]) -> None:
    """Hold the claim on the run until killed."""
    async with backend.claim(cfg["run_id"]):
        print("claimed", flush=True)
        await asyncio.sleep(3600)


MODES = {"counter": counter, "hammer": hammer, "saver": saver, "claimer": claimer}


async def main() -> None:
    cfg = json.loads(sys.argv[1])
    backend = make_backend(cfg)
    try:
        start_at = cfg.get("start_at")
        if start_at is not None:
            await asyncio.sleep(max(0.0, start_at - time.time()))
        await MODES[cfg["mode"]](backend, cfg)
    finally:
        await backend.close()


if __name__ == "__main__":
    asyncio.run(main())
