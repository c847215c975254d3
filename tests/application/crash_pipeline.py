"""A pipeline shared by the crash tests' parent and child processes.

Every step appends its name to the side-effect log (``FLUJO_TEST_LOG``) *before* it can
crash, so the log counts executions, crashed ones included. ``FLUJO_TEST_CRASH_AT=<step>``
makes that step SIGKILL its own process after logging.
"""

from __future__ import annotations

import os
import signal
import time
from contextvars import ContextVar
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from flujo import Flujo, PipelineContext, Step
from flujo.state import StateBackend

STEP_NAMES = ("load", "enrich", "price", "total", "ship")
CRASH_IN_PROCESS: ContextVar[str | None] = ContextVar("crash_in_process")


class Item(BaseModel):
    sku: str
    price: Decimal
    added: datetime


class CrashContext(PipelineContext):
    items: list[Item] = Field(default_factory=list)
    seen: set[str] = Field(default_factory=set)


class SimulatedCrash(BaseException):
    """Raised by a step in-process to stand for a crash: the runner must not catch it."""


def _enter(name: str) -> None:
    log = os.environ.get("FLUJO_TEST_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(name + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    if os.environ.get("FLUJO_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if CRASH_IN_PROCESS.get(None) == name:
        raise SimulatedCrash(name)
    if os.environ.get("FLUJO_TEST_HANG_AT") == name:
        time.sleep(60)  # held until the test kills this process


def load(order: str, *, context: CrashContext) -> list[Item]:
    _enter("load")
    base = datetime(2026, 3, 29, 1, 30, tzinfo=ZoneInfo("Europe/Paris"))
    context.items = [Item(sku=f"{order}-{i}", price=Decimal(f"{i}.10"),
                          added=base + timedelta(hours=i)) for i in range(3)]
    return context.items


def enrich(items: list[Item], *, context: CrashContext) -> tuple[Item, ...]:
    _enter("enrich")
    context.seen |= {item.sku for item in items}
    return tuple(items)


async def price(items: tuple[Item, ...], *, context: CrashContext) -> dict[str, Decimal]:
    _enter("price")
    return {item.sku: item.price * 2 for item in items}


def total(prices: dict[str, Decimal], *, context: CrashContext) -> Decimal:
    _enter("total")
    context.scratchpad["total_at"] = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    return sum(prices.values(), Decimal("0.00"))


def ship(amount: Decimal, *, context: CrashContext) -> dict[str, Any]:
    _enter("ship")
    return {"amount": amount, "skus": frozenset(context.seen), "run": context.run_id}


def build_runner(backend: StateBackend | str) -> Flujo[CrashContext]:
    pipeline = (Step.from_callable(load) >> Step.from_callable(enrich) >> Step.from_callable(price)
                >> Step.from_callable(total) >> Step.from_callable(ship))
    return Flujo(pipeline, context_model=CrashContext, state_backend=backend,
                 pipeline_name="crashy", pipeline_version="1")


class CountingContext(PipelineContext):
    counter: int = 0


def start(order: str, *, context: CountingContext) -> list[str]:
    context.scratchpad["order"] = order
    return [order]


def bump(items: list[str], *, context: CountingContext) -> list[str]:
    """Changes its context and input in place, then dies (under ``FLUJO_TEST_CRASH_AT=bump``)
    or fails: either way, none of its changes may reach the saved state."""
    context.counter += 1
    context.scratchpad["bumped"] = context.counter
    items.append("bumped")
    _enter("bump")
    raise RuntimeError(f"bump failed with counter {context.counter}")


def build_counting_runner(backend: StateBackend | str) -> Flujo[CountingContext]:
    return Flujo(Step.from_callable(start) >> Step.from_callable(bump),
                 context_model=CountingContext, state_backend=backend,
                 pipeline_name="counting", pipeline_version="1")


class Approval(BaseModel):
    approved: bool
    reviewer: str


def draft(order: str, *, context: CountingContext) -> str:
    _enter("draft")
    context.counter += 1
    return f"ship {order}"


def apply(answer: Approval, *, context: CountingContext) -> str:
    _enter("apply")
    return f"{answer.reviewer}: {'yes' if answer.approved else 'no'}"


def build_hitl_runner(backend: StateBackend | str) -> Flujo[CountingContext]:
    """draft >> approve (a human step) >> apply."""
    return Flujo(Step.from_callable(draft) >> Step.human("approve", input_model=Approval)
                 >> Step.from_callable(apply),
                 context_model=CountingContext, state_backend=backend,
                 pipeline_name="hitl", pipeline_version="1")


def prepare(order: str, *, context: CountingContext) -> str:
    _enter("prepare")
    return order


def fetch(order: str, *, context: CountingContext) -> str:
    """Fails while ``FLUJO_TEST_FAIL_FETCH`` is set; changes its context first."""
    context.counter += 1
    _enter("fetch")
    if os.environ.get("FLUJO_TEST_FAIL_FETCH"):
        raise ConnectionError("upstream is down")
    return f"fetched {order} with counter {context.counter}"


def build_flaky_runner(backend: StateBackend | str) -> Flujo[CountingContext]:
    """prepare >> fetch (3 retries, a 60 s backoff, so a test can kill it while it waits)."""
    return Flujo(Step.from_callable(prepare)
                 >> Step.from_callable(fetch, retries=3, backoff=60.0),
                 context_model=CountingContext, state_backend=backend,
                 pipeline_name="flaky", pipeline_version="1", cancel_poll_interval=0.05)


#: PostgreSQL claim lease of the crash tests' workers (seconds).
CLAIM_LEASE = 1.0


def make_backend(kind: str, location: str, schema: str | None = None) -> StateBackend:
    """The same store from any process: ``file``/``sqlite`` paths or a Postgres DSN."""
    from flujo.state import FileBackend, PostgresBackend, SQLiteBackend

    if kind == "file":
        return FileBackend(location)
    if kind == "sqlite":
        return SQLiteBackend(location)
    if kind == "postgres":
        # A killed worker's claim frees when its lease expires: keep that short here.
        return PostgresBackend(location, schema=schema or "public", min_size=1, max_size=2,
                               claim_lease=CLAIM_LEASE)
    raise ValueError(f"unknown backend kind {kind!r}")
