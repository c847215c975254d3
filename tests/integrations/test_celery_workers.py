"""Real Celery workers (prefork and solo) against a real Redis broker and a shared store,
SIGKILLed while they execute runs: every run completes with the result of an uninterrupted
run, a step runs twice only when its worker was killed inside it, and no two workers are
ever inside one step of one run (from the steps' own log).

The bounded version of the campaign in tools/reliability/celery_campaign.py."""

from __future__ import annotations

import contextlib
import importlib
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("celery")
redis = pytest.importorskip("redis")

HERE = Path(__file__).resolve().parent
REDIS_URL = os.environ.get("FLUJO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_unavailable(reason: str) -> None:
    if os.environ.get("FLUJO_REQUIRE_REDIS"):
        pytest.fail(f"FLUJO_REQUIRE_REDIS is set but {reason}")
    pytest.skip(reason)


@pytest.fixture
def broker() -> Iterator[tuple[str, str]]:
    """Redis's URL and a key prefix of this test's own, its keys removed afterwards."""
    url = REDIS_URL
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _redis_unavailable(f"Redis is not reachable at {url}: {exc}")
    prefix = f"flujo-test-{uuid.uuid4().hex[:10]}:"
    try:
        yield url, prefix
    finally:
        for key in client.scan_iter(match=f"{prefix}*", count=500):
            client.delete(key)
        client.close()


class PrivateRedis:
    """A redis-server of this test's own (keeping nothing on disk), to restart at will."""

    def __init__(self, folder: Path) -> None:
        with contextlib.closing(socket.socket()) as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder = folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.server: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.server = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.kill()  # as a crash: nothing it held survives
            self.server.wait(10)


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        _redis_unavailable("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Cluster:
    """Worker processes of ``celery_app`` in ``folder``; the test's handle on them."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.workers: list[subprocess.Popen[bytes]] = []
        self.kills: list[tuple[int, float]] = []  # (pid, when)
        self.logs: list[Path] = []

    def start(self, pool: str, concurrency: int = 1) -> subprocess.Popen[bytes]:
        log = self.folder / f"worker-{len(self.workers)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "celery_app", "worker",
                 "--pool", pool, "--concurrency", str(concurrency), "--loglevel", "WARNING",
                 "--without-mingle", "--without-gossip", "--without-heartbeat",
                 "--hostname", f"w{len(self.workers)}@%h"],
                cwd=self.folder, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.workers.append(worker)
        return worker

    def executing_pids(self) -> list[int]:
        """The processes that execute tasks: prefork children, solo workers."""
        pids: list[int] = []
        for worker in self.workers:
            if worker.poll() is not None:
                continue
            found = subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True,
                                   text=True, check=False).stdout.split()
            pids += [int(pid) for pid in found] or [worker.pid]
        return pids

    def kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            self.kills.append((pid, time.time()))

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)

    def output(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
                         for log in self.logs if log.exists())


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[Callable[..., tuple[Cluster, ModuleType]]]:
    """``make(store_settings, (broker_url, key_prefix))``: the app imported here, and a
    cluster of its workers (stopped afterwards)."""
    made: list[tuple[Cluster, ModuleType]] = []

    def make(store: dict[str, str], broker: tuple[str, str]) -> tuple[Cluster, ModuleType]:
        shutil.copy(HERE / "celery_app.py", tmp_path / "celery_app.py")
        env = {**os.environ, "FLUJO_TEST_BROKER": broker[0], "FLUJO_TEST_PREFIX": broker[1],
               "FLUJO_TEST_LOG": str(tmp_path / "steps.log"), **store,
               "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
        for name, value in env.items():
            if name.startswith("FLUJO_TEST_"):
                monkeypatch.setenv(name, value)
        monkeypatch.syspath_prepend(str(tmp_path))
        sys.modules.pop("celery_app", None)
        module = importlib.import_module("celery_app")
        made.append((Cluster(tmp_path, env), module))
        return made[-1]

    try:
        yield make
    finally:
        for cluster_, _ in made:
            cluster_.stop()
        sys.modules.pop("celery_app", None)


def _events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _wait_done(app: ModuleType, run_ids: list[str], cluster: Cluster,
               timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    recovered = False
    while True:
        states = {rid: app.runner.state_at(rid) for rid in run_ids}
        if all(state.status == "completed" for state in states.values()):
            return states
        if time.monotonic() > deadline:
            pending = {rid: s.status for rid, s in states.items() if s.status != "completed"}
            pytest.fail(f"runs not completed: {pending}\n{cluster.output()}")
        if not recovered and time.monotonic() > deadline - timeout / 2:
            # what the periodic recovery does: messages the broker lost are sent again
            app.orders.recover(older_than=timedelta(seconds=5))
            recovered = True
        time.sleep(0.3)


def _check_log(events: list[dict[str, Any]], run_ids: list[str],
               kills: list[tuple[int, float]]) -> int:
    """Every step of every run ran to its end; a step ran again only after the process
    that ran it before was killed (inside it, or before its outcome was saved); no two
    processes were inside one step of one run at once. Returns how many steps ran again."""
    killed_at = dict(kills)
    spans: dict[tuple[str, str], list[tuple[float, float, int, bool]]] = defaultdict(list)
    starts: dict[tuple[str, str, int], float] = {}
    for event in events:
        key = (event["run"], event["step"], event["pid"])
        if event["event"] == "start":
            assert key not in starts, f"{key} started twice in one process"
            starts[key] = event["t"]
        else:
            spans[key[:2]].append((starts.pop(key), event["t"], event["pid"], True))
    for (run, step, pid), began in starts.items():  # started, never ended: killed inside
        assert pid in killed_at, f"{run}/{step} in process {pid} never ended, not killed"
        spans[(run, step)].append((began, killed_at[pid], pid, False))
    again = 0
    for run in run_ids:
        for step in ("reserve", "charge", "pack", "ship", "notify"):
            found = sorted(spans[(run, step)])
            assert found and found[-1][3], f"{run}/{step}: the last execution did not end"
            for began, _, pid, _ in found[:-1]:
                assert killed_at.get(pid, 0.0) >= began, (
                    f"{run}/{step} ran again, but process {pid} was not killed after it "
                    f"began it: {found}")
            for (_, end, _, _), (start, *_rest) in itertools.pairwise(found):
                assert end <= start, f"{run}/{step}: two workers inside at once: {found}"
            again += len(found) - 1
    return again


def _store_settings(store: str, folder: Path,
                    request: pytest.FixtureRequest) -> dict[str, str]:
    if store == "postgres":
        dsn, schema = request.getfixturevalue("postgres_schemas")("celery")
        return {"FLUJO_TEST_STORE": dsn, "FLUJO_TEST_SCHEMA": schema,
                "FLUJO_TEST_LEASE_S": "1.5"}
    return {"FLUJO_TEST_STORE": str(folder / "state.db")}


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_killed_workers_runs_complete_exactly_as_uninterrupted(
        store: str, cluster: Callable[..., tuple[Cluster, ModuleType]],
        broker: tuple[str, str], tmp_path: Path, request: pytest.FixtureRequest) -> None:
    nodes, app = cluster(_store_settings(store, tmp_path, request), broker)
    nodes.start("prefork", concurrency=2)
    nodes.start("solo")
    run_ids = [app.orders.submit(f"order-{i}", run_id=f"order-{i}") for i in range(16)]
    rng = random.Random(7)
    log = tmp_path / "steps.log"
    solo_killed = False
    deadline = time.monotonic() + 60
    while len(nodes.kills) < 5 and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.3, 0.7))
        if not log.exists():
            continue
        inside = {e["pid"] for e in _events(log)[-6:] if e["event"] == "start"}
        candidates = [pid for pid in nodes.executing_pids() if pid in inside]
        if not candidates:
            continue
        victim = rng.choice(candidates)
        solo = any(w.pid == victim for w in nodes.workers)
        if solo and solo_killed:
            continue
        nodes.kill(victim)
        if solo:  # a solo worker is the whole process: start another in its place
            solo_killed = True
            nodes.start("solo")
    states = _wait_done(app, run_ids, nodes, timeout=90)
    for i, rid in enumerate(run_ids):
        expected = f"order-{i}>reserve>charge>pack>ship>notify"
        assert states[rid].last_step_output == expected
        assert [step.name for step in states[rid].step_history] == [
            "reserve", "charge", "pack", "ship", "notify"]
    again = _check_log(_events(log), run_ids, nodes.kills)
    print(f"{store}: {len(nodes.kills)} kills, {again} steps ran again")
    assert again >= 1, "no worker was killed inside a step"
    assert app.orders.recover(older_than=timedelta(0), dry_run=True) == []


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_runs_whose_messages_a_restarted_broker_lost_are_recovered(
        store: str, cluster: Callable[..., tuple[Cluster, ModuleType]],
        private_broker: PrivateRedis, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Redis restarted without persistence loses every queued and unacknowledged message:
    the runs stay saved, ``recover`` finds those nobody executes and sends them again."""
    nodes, app = cluster({**_store_settings(store, tmp_path, request),
                          "FLUJO_TEST_STEP_S": "0.2"},
                         (private_broker.url, f"flujo-test-{uuid.uuid4().hex[:10]}:"))
    nodes.start("prefork", concurrency=2)
    run_ids = [app.orders.submit(f"order-{i}", run_id=f"order-{i}") for i in range(10)]
    log = tmp_path / "steps.log"
    deadline = time.monotonic() + 30
    while not (log.exists() and len(_events(log)) >= 6) and time.monotonic() < deadline:
        time.sleep(0.05)
    private_broker.stop()
    lost_at = time.time()
    time.sleep(0.5)
    private_broker.start()
    # What the periodic recovery task does, called here until every run is done.
    deadline = time.monotonic() + 90
    resubmitted: set[str] = set()
    while True:
        states = {rid: app.runner.state_at(rid) for rid in run_ids}
        if all(state.status == "completed" for state in states.values()):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"not completed: { {r: s.status for r, s in states.items()} }\n"
                        f"{nodes.output()}")
        resubmitted |= {found.run_id for found in
                        app.orders.recover(older_than=timedelta(seconds=1))}
        time.sleep(0.5)
    assert resubmitted, "the restart lost no message: nothing was recovered"
    for i, rid in enumerate(run_ids):
        assert states[rid].last_step_output == f"order-{i}>reserve>charge>pack>ship>notify"
    events = _events(log)
    _check_log(events, run_ids, [])
    assert any(e["t"] > lost_at and e["run"] in resubmitted for e in events)
