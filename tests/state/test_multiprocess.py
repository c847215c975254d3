"""Several real processes writing one store, and processes killed with SIGKILL.

These run File, SQLite and PostgreSQL backends in worker subprocesses (``_worker.py``):
compare-and-set from several processes never loses an update, concurrent unconditional saves
never produce a torn record, a process killed mid-write leaves the previous state loadable
(and nothing that ``save_state`` had returned is lost), and a killed worker's claim is free
again: at once for File and SQLite (the OS drops the lock), once its lease (1 s here)
expires for PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from state_helpers import PYTHON, WORKER, PostgresTarget, subprocess_env

from flujo.exceptions import RunInProgressError
from flujo.state import FileBackend, PostgresBackend, SQLiteBackend, StateBackend, WorkflowState

pytestmark = pytest.mark.slow

KINDS = ["file", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
TIMEOUT = 60


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    kind = request.param
    if kind == "file":
        return {"kind": kind, "path": str(tmp_path / "files")}
    if kind == "sqlite":
        return {"kind": kind, "path": str(tmp_path / "state.db")}
    target: PostgresTarget = request.getfixturevalue("postgres_target")
    return {"kind": kind, "dsn": target.dsn, "schema": target.schema, "table": target.new_table(),
            "claim_lease": 1.0}


def backend_for(cfg: dict[str, Any]) -> StateBackend:
    if cfg["kind"] == "file":
        return FileBackend(cfg["path"])
    if cfg["kind"] == "sqlite":
        return SQLiteBackend(cfg["path"])
    return PostgresBackend(cfg["dsn"], schema=cfg["schema"], table=cfg["table"], max_size=2,
                           claim_lease=cfg["claim_lease"])


async def _with_backend(cfg: dict[str, Any], action: Any) -> Any:
    backend = backend_for(cfg)
    try:
        return await action(backend)
    finally:
        await backend.close()


def run(cfg: dict[str, Any], action: Any) -> Any:
    return asyncio.run(_with_backend(cfg, action))


def spawn(cfg: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, str(WORKER), json.dumps(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(TIMEOUT)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    return out


def seed(cfg: dict[str, Any], run_id: str, context: dict[str, Any]) -> None:
    async def action(backend: StateBackend) -> None:
        await backend.save_state(
            run_id, WorkflowState(run_id=run_id, pipeline_name="mp", pipeline_context=context)
        )

    run(cfg, action)


def test_compare_and_set_across_processes_loses_no_update(
    store: dict[str, Any], procs: list[subprocess.Popen[str]]
) -> None:
    seed(store, "shared", {"n": 0})
    start_at = time.time() + 1.0
    for _ in range(4):
        procs.append(spawn({**store, "mode": "counter", "run_id": "shared", "n": 15,
                            "start_at": start_at}))  # fmt: skip
    outputs = [finish(p) for p in procs]

    async def check(backend: StateBackend) -> None:
        record = await backend.load_record("shared")
        assert record is not None
        assert record.state.pipeline_context == {"n": 60}
        assert record.revision == 61

    run(store, check)
    assert all(out.startswith("done") for out in outputs)


def test_concurrent_processes_never_tear_a_record(
    store: dict[str, Any], procs: list[subprocess.Popen[str]]
) -> None:
    start_at = time.time() + 1.0
    for _ in range(4):
        procs.append(spawn({**store, "mode": "hammer", "run_id": "torn", "n": 15,
                            "size": 5000, "start_at": start_at}))  # fmt: skip
    for proc in procs:
        finish(proc)

    async def check(backend: StateBackend) -> None:
        record = await backend.load_record("torn")
        assert record is not None and record.revision == 60
        context = record.state.pipeline_context
        assert context["b"] == [context["m"]] * 5000

    run(store, check)


def test_processes_opening_a_new_store_together(
    store: dict[str, Any], procs: list[subprocess.Popen[str]]
) -> None:
    start_at = time.time() + 1.0
    for i in range(6):
        procs.append(spawn({**store, "mode": "hammer", "run_id": f"fresh-{i}", "n": 1,
                            "size": 1, "start_at": start_at}))  # fmt: skip
    for proc in procs:
        finish(proc)

    async def check(backend: StateBackend) -> None:
        assert await backend.list_run_ids() == [f"fresh-{i}" for i in range(6)]

    run(store, check)


@pytest.mark.parametrize("delay", [0.0, 0.013, 0.029])
def test_sigkill_mid_write_keeps_the_last_saved_state(
    store: dict[str, Any], procs: list[subprocess.Popen[str]], delay: float
) -> None:
    proc = spawn({**store, "mode": "saver", "run_id": "crash", "size": 100_000})
    procs.append(proc)
    assert proc.stdout is not None
    last = 0
    deadline = time.monotonic() + TIMEOUT
    while last < 3 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "worker exited"
        last = int(line.split()[1])
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(TIMEOUT)
    tail = proc.stdout.read()
    for line in tail.splitlines():
        last = max(last, int(line.split()[1]))

    async def check(backend: StateBackend) -> None:
        record = await backend.load_record("crash")
        assert record is not None
        context = record.state.pipeline_context
        assert context["i"] >= last  # nothing save_state had returned is lost
        assert context["b"] == [context["i"]] * 100_000  # and the record is whole
        assert record.revision == context["i"]
        await backend.save_state("crash", record.state)  # the store is still writable

    run(store, check)


def test_killed_worker_releases_its_claim(
    store: dict[str, Any], procs: list[subprocess.Popen[str]]
) -> None:
    proc = spawn({**store, "mode": "claimer", "run_id": "job-" + uuid.uuid4().hex[:6]})
    procs.append(proc)
    run_id = json.loads(proc.args[2])["run_id"]  # type: ignore[index]
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "claimed", proc.stderr.read() if proc.stderr else ""

    async def claim_fails(backend: StateBackend) -> None:
        with pytest.raises(RunInProgressError):
            async with backend.claim(run_id):
                pass

    run(store, claim_fails)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(TIMEOUT)
    killed_at = time.monotonic()

    async def claim_succeeds(backend: StateBackend) -> float:
        while True:
            try:
                async with backend.claim(run_id):
                    return time.monotonic() - killed_at
            except RunInProgressError:
                if time.monotonic() - killed_at > 5:
                    raise
                await asyncio.sleep(0.05)

    assert run(store, claim_succeeds) < 5
