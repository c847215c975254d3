"""Celery campaign: real Celery workers execute durable runs and are SIGKILLed at random.

    python scripts/reliability/celery_campaign.py --store postgres --runs 300 --kills 20 \\
        --json celery-postgres.json

Workers of ``celery_app`` (``--prefork`` workers of 2 processes each and ``--solo`` solo
workers) take their messages from a Redis of the campaign's own (``redis-server`` on a free
port, keeping nothing on disk, or ``--broker URL`` with a key prefix of the campaign's own).
Every run is submitted at once (``FlujoTask.submit``). While they execute, a process that
is inside a step is SIGKILLed ``--kills`` times, early on (a prefork child, which its worker
replaces, or a whole solo worker, replaced by a new one), and then the broker is killed and
started again, losing every queued and unacknowledged message (``--no-broker-restart`` skips it).
From then on, every two seconds ``recover`` sends the runs nobody executes again, as the
periodic recovery task would.

Checked at the end, from the store and from the log the steps write:

* every run completed with exactly the result of an uninterrupted run;
* every step of every run ran to its end; a step ran again only after the process that ran
  it before was killed (inside it, or before its outcome was saved);
* no two processes were ever inside one step of one run at once;
* no run is left that ``recover`` would resubmit.

Reported: runs per second (submission to the last completion), kills, steps that ran
again, runs resubmitted by ``recover``.
"""

from __future__ import annotations

import argparse
import asyncio
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
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import postgres_dsn, postgres_schema, write_json  # noqa: E402

STEPS = ("reserve", "charge", "pack", "ship", "notify")


class CampaignError(AssertionError):
    """A check of the campaign failed."""


# -- the broker and the workers ------------------------------------------------------------

class PrivateRedis:
    """A redis-server of the campaign's own (keeping nothing on disk), to restart at will."""

    def __init__(self, folder: Path) -> None:
        with contextlib.closing(socket.socket()) as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder = folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.server: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

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


class Cluster:
    """The worker processes of ``celery_app``, started in ``folder`` with ``env``."""

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

    def is_solo(self, pid: int) -> bool:
        return any(worker.pid == pid for worker in self.workers)

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


# -- the checks ------------------------------------------------------------------------------

def read_events(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def check_log(events: list[dict[str, Any]], run_ids: list[str],
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
            if key in starts:
                raise CampaignError(f"{key} started twice in one process")
            starts[key] = event["t"]
        else:
            spans[key[:2]].append((starts.pop(key), event["t"], event["pid"], True))
    for (run, step, pid), began in starts.items():  # started, never ended: killed inside
        if pid not in killed_at:
            raise CampaignError(f"{run}/{step} in process {pid} never ended; not killed")
        spans[(run, step)].append((began, killed_at[pid], pid, False))
    again = 0
    for run in run_ids:
        for step in STEPS:
            found = sorted(spans[(run, step)])
            if not found or not found[-1][3]:
                raise CampaignError(f"{run}/{step}: its last execution did not end: {found}")
            for began, _, pid, _ in found[:-1]:
                if killed_at.get(pid, 0.0) < began:
                    raise CampaignError(f"{run}/{step} ran again, but process {pid} was not "
                                        f"killed after it began it: {found}")
            for (_, end, _, _), (start, *_rest) in itertools.pairwise(found):
                if end > start:
                    raise CampaignError(f"{run}/{step}: two workers inside at once: {found}")
            again += len(found) - 1
    return again


# -- the campaign ----------------------------------------------------------------------------

@dataclass
class Report:
    store: str
    runs: int
    workers: str
    kills: int = 0
    broker_restarts: int = 0
    steps_ran_again: int = 0
    recovered: int = 0
    seconds: float = 0.0
    runs_per_s: float = 0.0


@contextlib.contextmanager
def _store(kind: str, folder: Path) -> Iterator[dict[str, str]]:
    if kind == "postgres":
        dsn = postgres_dsn()
        with postgres_schema(dsn, "celery_campaign") as schema:
            yield {"FLUJO_TEST_STORE": dsn, "FLUJO_TEST_SCHEMA": schema,
                   "FLUJO_TEST_LEASE_S": "1.5"}
    else:
        yield {"FLUJO_TEST_STORE": str(folder / "state.db")}


@contextlib.contextmanager
def _app(env: dict[str, str]) -> Iterator[ModuleType]:
    """``celery_app`` imported in this process (to submit and to read the store), configured
    by ``env``'s FLUJO_TEST_ variables only while the campaign runs."""
    saved = {name: value for name, value in os.environ.items()
             if name.startswith("FLUJO_TEST_")}
    for name in saved:
        del os.environ[name]
    os.environ.update({name: value for name, value in env.items()
                       if name.startswith("FLUJO_TEST_")})
    sys.modules.pop("celery_app", None)
    try:
        yield importlib.import_module("celery_app")
    finally:
        sys.modules.pop("celery_app", None)
        for name in [name for name in os.environ if name.startswith("FLUJO_TEST_")]:
            del os.environ[name]
        os.environ.update(saved)


@contextlib.contextmanager
def cluster_of(store: str = "sqlite", *, broker: str | None = None, step_s: float = 0.1
               ) -> Iterator[tuple[Cluster, ModuleType, PrivateRedis | None]]:
    """A cluster of ``celery_app`` workers (none started yet), the app imported here, and
    the campaign's own Redis (None with ``broker``): a store, a broker and a folder of their
    own, all removed afterwards."""
    if shutil.which("redis-server") is None and broker is None:
        raise CampaignError("redis-server is not installed")
    with tempfile.TemporaryDirectory(prefix="celery-campaign-") as tmp:
        folder = Path(tmp)
        private = PrivateRedis(folder) if broker is None else None
        if private is not None:
            private.start()
        prefix = f"flujo-campaign-{uuid.uuid4().hex[:10]}:"
        broker_url = private.url if private is not None else str(broker)
        try:
            with _store(store, folder) as settings:
                inherited = {name: value for name, value in os.environ.items()
                             if not name.startswith("FLUJO_TEST_")}
                env = {**inherited, **settings, "FLUJO_TEST_BROKER": broker_url,
                       "FLUJO_TEST_PREFIX": prefix, "FLUJO_TEST_LOG": str(folder / "steps.log"),
                       "FLUJO_TEST_STEP_S": str(step_s),
                       "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
                cluster = Cluster(folder, env)
                try:
                    with _app(env) as app:
                        yield cluster, app, private
                finally:
                    cluster.stop()
        finally:
            if private is not None:
                private.stop()
            else:
                _forget_keys(broker_url, prefix)


def run_campaign(*, store: str = "sqlite", runs: int = 16, prefork: int = 1, solo: int = 1,
                 kills: int = 5, broker_restart: bool = True, broker: str | None = None,
                 step_s: float = 0.1, seed: int | None = None,
                 timeout: float = 120.0) -> Report:
    """One campaign; raises CampaignError when a check fails."""
    rng = random.Random(seed)
    if broker is not None and broker_restart:
        raise CampaignError("--broker names a shared server: it cannot be restarted")
    with cluster_of(store, broker=broker, step_s=step_s) as (cluster, app, private):
        return _campaign(cluster, app, private, rng, store=store, runs=runs, prefork=prefork,
                         solo=solo, kills=kills, broker_restart=broker_restart,
                         timeout=timeout)


def _forget_keys(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=f"{prefix}*", count=500):
        client.delete(key)
    client.close()


def _campaign(cluster: Cluster, app: ModuleType, private: PrivateRedis | None,
              rng: random.Random, *, store: str, runs: int, prefork: int, solo: int,
              kills: int, broker_restart: bool, timeout: float) -> Report:
    report = Report(store, runs, f"{prefork} prefork x2, {solo} solo")
    for _ in range(prefork):
        cluster.start("prefork", concurrency=2)
    for _ in range(solo):
        cluster.start("solo")
    started = time.monotonic()
    run_ids = [app.orders.submit(f"order-{i}", run_id=f"order-{i}") for i in range(runs)]
    log = cluster.folder / "steps.log"
    deadline = started + timeout
    # the kills spread over the first sixth of the time the runs take without them (a
    # killed worker's runs wait for its lease, so PostgreSQL runs may end sooner than that
    # estimate says); the broker restart comes after them
    processes = 2 * prefork + solo
    spacing = len(STEPS) * runs * float(os.environ["FLUJO_TEST_STEP_S"]) / processes \
        / (6 * kills + 6)
    next_kill = started + spacing
    restarted = not broker_restart
    recovered: set[str] = set()
    last_recover = time.monotonic()
    while True:
        time.sleep(rng.uniform(0.05, 0.25))
        now = time.monotonic()
        if now > deadline:
            pending = [rid for rid in run_ids if app.runner.state_at(rid).status != "completed"]
            raise CampaignError(f"not completed after {timeout:.0f} s: {pending[:20]}\n"
                                f"{cluster.output()}")
        if len(cluster.kills) < kills and now >= next_kill and _kill_one(cluster, log, rng):
            next_kill = now + spacing * rng.uniform(0.5, 1.5)
        if not restarted and len(cluster.kills) >= kills and private is not None:
            private.stop()
            time.sleep(0.5)
            private.start()
            restarted = True
            report.broker_restarts += 1
        # What the periodic recovery task does, once the broker lost its messages. (Before,
        # runs wait in the queue for longer than the 3 s that stand for recover's age here,
        # and would be sent again and again: in production, older_than outlasts the queue.)
        if broker_restart and restarted and now - last_recover > 2.0:
            last_recover = now
            recovered |= {r.run_id for r in app.orders.recover(older_than=timedelta(seconds=3))}
        if _all_done(app, len(run_ids)):
            break
    if not restarted:
        raise CampaignError(f"the runs ended after {len(cluster.kills)} of {kills} kills,"
                            " before the broker restart: give more --runs or a longer --step-s")
    report.seconds = round(time.monotonic() - started, 2)
    report.runs_per_s = round(runs / report.seconds, 2)
    for i, rid in enumerate(run_ids):
        state = app.runner.state_at(rid)
        expected = f"order-{i}>" + ">".join(STEPS)
        if state.last_step_output != expected or \
                [step.name for step in state.step_history] != list(STEPS):
            raise CampaignError(f"{rid}: {state.last_step_output!r} != {expected!r}")
    report.kills = len(cluster.kills)
    if report.kills < kills:
        raise CampaignError(f"the runs ended after {report.kills} of {kills} kills: give "
                            "more --runs or a longer --step-s")
    report.steps_ran_again = check_log(read_events(log), run_ids, cluster.kills)
    report.recovered = len(recovered)
    left = app.orders.recover(older_than=timedelta(0), dry_run=True)
    if left:
        raise CampaignError(f"runs left unattended: {[r.run_id for r in left]}")
    return report


def _kill_one(cluster: Cluster, log: Path, rng: random.Random) -> bool:
    """SIGKILL a process that is inside a step (a killed solo worker is replaced); False
    when none is."""
    inside: dict[int, int] = defaultdict(int)
    for event in read_events(log)[-40:]:
        inside[event["pid"]] += 1 if event["event"] == "start" else -1
    candidates = [pid for pid in cluster.executing_pids() if inside.get(pid, 0) > 0]
    if not candidates:
        return False
    victim = rng.choice(candidates)
    solo = cluster.is_solo(victim)
    cluster.kill(victim)
    if solo:
        cluster.start("solo")
    return True


def _all_done(app: ModuleType, runs: int) -> bool:
    done = app.runner.backend.list_runs(status="completed", pipeline_name="chaos")
    return len(asyncio.run(done)) == runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--prefork", type=int, default=2, help="prefork workers (2 processes)")
    parser.add_argument("--solo", type=int, default=1, help="solo workers")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--no-broker-restart", dest="broker_restart", action="store_false")
    parser.add_argument("--broker", metavar="URL",
                        help="a Redis to share (keys under a prefix of the campaign's own; "
                             "not restarted); default: a redis-server of its own")
    parser.add_argument("--step-s", type=float, default=0.1, help="seconds per step")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--json", metavar="FILE", help="write the report here")
    args = parser.parse_args(argv)
    # stopped from outside (timeout, Ctrl-C): leave no worker or redis-server behind
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    try:
        report = run_campaign(store=args.store, runs=args.runs, prefork=args.prefork,
                              solo=args.solo, kills=args.kills,
                              broker_restart=args.broker_restart, broker=args.broker,
                              step_s=args.step_s, seed=seed, timeout=args.timeout)
    except CampaignError as exc:
        print(f"FAILED (seed {seed}): {exc}", file=sys.stderr)
        return 1
    write_json(args.json, {"seed": seed, **asdict(report)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
