"""The Celery application of the Celery campaign (celery_campaign.py) and its CI runs,
configured by environment variables: a 5-step pipeline whose steps log when they start and
end, and the task that executes its runs. Workers import it by name (``-A celery_app``)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from celery import Celery

from flujo import Flujo, Pipeline, PipelineContext, Step
from flujo.integrations.celery import flujo_task
from flujo.state import PostgresBackend, SQLiteBackend, StateBackend

PREFIX = os.environ["FLUJO_TEST_PREFIX"]
LOG = Path(os.environ["FLUJO_TEST_LOG"])
STEP_S = float(os.environ.get("FLUJO_TEST_STEP_S", "0.1"))
STEPS = ("reserve", "charge", "pack", "ship", "notify")

app = Celery("celery_app", broker=os.environ["FLUJO_TEST_BROKER"])
app.conf.update(
    broker_transport_options={
        "global_keyprefix": PREFIX,
        # a message a dead worker held comes back after this long (longer than a step)
        "visibility_timeout": float(os.environ.get("FLUJO_TEST_VISIBILITY_S", "4")),
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)


def _event(run_id: str, step: str, event: str) -> None:
    line = json.dumps({"run": run_id, "step": step, "event": event, "pid": os.getpid(),
                       "t": time.time()})
    with LOG.open("a") as log:  # one short write per line: appends do not interleave
        log.write(line + "\n")


def _step(name: str) -> Step[str, str]:
    def step(data: str, *, context: PipelineContext) -> str:
        _event(context.run_id, name, "start")
        time.sleep(STEP_S)
        _event(context.run_id, name, "end")
        return f"{data}>{name}"
    return Step.from_callable(step, name=name)


def _store() -> StateBackend:
    if os.environ.get("FLUJO_TEST_SCHEMA"):
        return PostgresBackend(os.environ["FLUJO_TEST_STORE"],
                               schema=os.environ["FLUJO_TEST_SCHEMA"],
                               claim_lease=float(os.environ.get("FLUJO_TEST_LEASE_S", "2")))
    return SQLiteBackend(os.environ["FLUJO_TEST_STORE"])


pipeline: Pipeline[str, str] = Pipeline([_step(name) for name in STEPS])
runner: Flujo[PipelineContext, str] = Flujo(pipeline, state_backend=_store(),
                                            pipeline_name="chaos")
orders = flujo_task(app, runner, busy_retry_delay=0.3)
