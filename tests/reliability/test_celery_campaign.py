"""CI run of the Celery campaign (scripts/reliability/celery_campaign.py): real prefork and
solo Celery workers execute durable runs from a real Redis and are SIGKILLed inside steps;
a broker of the campaign's own is killed and restarted without persistence. Every run must
complete exactly as uninterrupted, a step may run again only after its process was killed,
and no two processes may ever be inside one step of one run."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import time

import pytest

from conftest import require_postgres

pytest.importorskip("celery")
redis = pytest.importorskip("redis")

from celery_campaign import check_log, cluster_of, read_events, run_campaign  # noqa: E402

REDIS_URL = os.environ.get("FLUJO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_unavailable(reason: str) -> None:
    if os.environ.get("FLUJO_REQUIRE_REDIS"):
        pytest.fail(f"FLUJO_REQUIRE_REDIS is set but {reason}")
    pytest.skip(reason)


def _shared_redis() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _redis_unavailable(f"Redis is not reachable at {REDIS_URL}: {exc}")
    finally:
        client.close()
    return REDIS_URL


def _seed() -> int:
    seed = int(os.environ.get("FLUJO_RELIABILITY_SEED", random.randrange(2**32)))
    print(f"FLUJO_RELIABILITY_SEED={seed}")
    return seed


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_killed_workers_on_a_shared_redis(store: str) -> None:
    if store == "postgres":
        require_postgres()
    report = run_campaign(store=store, runs=16, prefork=1, solo=1, kills=5,
                          broker_restart=False, broker=_shared_redis(), seed=_seed())
    assert report.kills == 5
    assert report.steps_ran_again >= 1  # a kill landed inside a step, which ran again


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_killed_workers_and_a_broker_restarted_without_persistence(store: str) -> None:
    if store == "postgres":
        require_postgres()
    if shutil.which("redis-server") is None:
        _redis_unavailable("redis-server is not installed")
    report = run_campaign(store=store, runs=16, prefork=1, solo=1, kills=4,
                          broker_restart=True, step_s=0.15, seed=_seed())
    assert report.broker_restarts == 1
    assert report.recovered >= 1  # the restart lost messages; recover sent them again


def test_a_cancellation_reaches_the_worker_executing_the_run() -> None:
    """``runner.cancel`` in this process; the run executes in a Celery worker, which stops
    it at its next step boundary and saves it as cancelled; a later message runs nothing."""
    with cluster_of("sqlite", broker=_shared_redis(), step_s=0.5) as (nodes, app, _):
        nodes.start("solo")
        run_id = app.orders.submit("order-c", run_id="order-c")
        log = nodes.folder / "steps.log"
        deadline = time.monotonic() + 60
        while not read_events(log) and time.monotonic() < deadline:
            time.sleep(0.05)
        # the worker's claim, seen from here: its lock is listed by the kernel
        held = asyncio.run(app.runner.backend.claim_holders([run_id]))
        worker_pid = int(held[run_id].holder.split(":")[1])
        assert worker_pid != os.getpid()
        assert worker_pid in {e["pid"] for e in read_events(log)}
        assert app.runner.cancel(run_id) == "running"  # requested: the worker is inside
        while app.runner.state_at(run_id).status != "cancelled":
            assert time.monotonic() < deadline, nodes.output()
            time.sleep(0.1)
        ran = [e["step"] for e in read_events(log) if e["event"] == "end"]
        assert 1 <= len(ran) < 5
        app.orders.resubmit(run_id)
        time.sleep(1.5)
        assert [e["step"] for e in read_events(log) if e["event"] == "end"] == ran
        assert app.runner.state_at(run_id).status == "cancelled"


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_sigterm_stops_a_run_after_its_step_and_another_worker_goes_on(pool: str) -> None:
    """Celery's warm shutdown (SIGTERM): the worker stops the run it executes once the step
    it is in has been saved, releases the claim, queues the run again and exits; a new
    worker runs the remaining steps. No step runs twice, none is skipped."""
    with cluster_of("sqlite", broker=_shared_redis(), step_s=0.6) as (nodes, app, _):
        worker = nodes.start(pool, concurrency=1)
        run_id = app.orders.submit("order-t", run_id="order-t")
        log = nodes.folder / "steps.log"
        deadline = time.monotonic() + 60
        while not read_events(log) and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        ended = [e["step"] for e in read_events(log) if e["event"] == "end"]
        assert 1 <= len(ended) < 5, nodes.output()  # it did not finish the whole run
        state = app.runner.state_at(run_id)
        assert (state.status, state.current_step_index) == ("running", len(ended))
        assert asyncio.run(app.runner.backend.claim_holders([run_id])) == {}
        nodes.start(pool, concurrency=1)
        while app.runner.state_at(run_id).status != "completed":
            assert time.monotonic() < deadline + 60, nodes.output()
            time.sleep(0.1)
        events = read_events(log)
        assert [e["step"] for e in events if e["event"] == "end"] == [
            "reserve", "charge", "pack", "ship", "notify"]
        check_log(events, [run_id], [])
