"""``flujo demo``: a pipeline killed mid-run and resumed by its run id, then paused for a
person's typed approval and resumed with it.

This module is the demo's application: its types, steps and runner (``--module flujo.demo``
lets ``flujo state`` read the run it stores, as ``--module yourapp`` would yours), and the
narrated run ``run_demo``.

A child process runs the pipeline on the embedded SQLite store (``runs.db`` in the demo's
folder, ``./flujo-demo`` by default) and is killed with SIGKILL in the middle of step 2. The
parent, a different process, runs the same pipeline with the same ``run_id``: step 1 is not
run again, step 2 is re-executed, and step 3 (a human step) pauses the run for an
``Approval``. An answer missing a field is refused, leaving the run paused; a valid one
resumes it, and step 4 runs.
Every value in the persisted state comes back with its type: a user pydantic model, a
registered plain class with a JSON Schema, a Decimal, a datetime with its IANA zone, a set,
and the approval itself.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel, Field

from .application import Flujo, PipelineContext, Step
from .exceptions import InvalidInputError
from .serialization import register_custom_serializer, register_type
from .state import SQLiteBackend

RUN_ID = "demo-order-42"
STORE_NAME = "runs.db"
DEFAULT_FOLDER = "flujo-demo"
CRASH_ENV = "FLUJO_DEMO_CRASH_IN_STEP"
MADRID = ZoneInfo("Europe/Madrid")


class Customer(BaseModel):
    """A customer, as the application defines it (no registration needed)."""

    name: str
    email: str
    tier: str


register_type(Customer, name="demo.customer")  # optional: a name that survives a move


class Money:
    """A plain class: flujo must be told how to store it, and checks the declared schema."""

    __slots__ = ("amount", "currency")

    def __init__(self, amount: Decimal, currency: str) -> None:
        self.amount, self.currency = amount, currency

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Money)
                and (self.amount, self.currency) == (other.amount, other.currency))

    def __hash__(self) -> int:
        return hash((self.amount, self.currency))

    def __repr__(self) -> str:
        return f"Money({self.amount!r}, {self.currency!r})"


MONEY_SCHEMA = {
    "type": "object",
    "properties": {"amount": {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"},
                   "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}},
    "required": ["amount", "currency"],
    "additionalProperties": False,
}
register_custom_serializer(
    Money, lambda m: {"amount": str(m.amount), "currency": m.currency},
    deserializer=lambda d: Money(Decimal(d["amount"]), d["currency"]),
    schema=MONEY_SCHEMA, name="demo.money", version=1)


class Approval(BaseModel):
    """What the human step waits for: validated before the run goes on."""

    approved: bool
    approver: str = Field(min_length=1)


register_type(Approval, name="demo.approval")


class OrderContext(PipelineContext):
    customer: Customer | None = None
    ordered_at: datetime | None = None


def _say(step: str) -> None:
    print(f"  [pid {os.getpid()}] running step {step}", flush=True)


def fetch(order_id: str, *, context: OrderContext) -> Customer:
    _say("fetch")
    context.customer = Customer(name="Ada Lovelace", email="ada@example.com", tier="gold")
    context.ordered_at = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=MADRID)  # DST fall-back
    return context.customer


def price(customer: Customer, *, context: OrderContext) -> Money:
    _say("price")
    context.scratchpad["discount_rate"] = Decimal("0.075")
    if os.environ.get(CRASH_ENV) == "price":
        os.kill(os.getpid(), signal.SIGKILL)  # the crash: nothing after this line runs
    total = Money(Decimal("1234.50") * (1 - context.scratchpad["discount_rate"]), "EUR")
    context.scratchpad["total"] = total
    return total


def ship(approval: Approval, *, context: OrderContext) -> dict[str, Any]:
    _say("ship")
    return {"total": context.scratchpad["total"], "approved_by": approval.approver,
            "tags": {"gift", "priority"},
            "shipped_at": datetime(2026, 10, 26, 9, 0, tzinfo=MADRID)}


def build_runner(store: Path) -> Flujo[OrderContext]:
    pipeline = (Step.from_callable(fetch) >> Step.from_callable(price)
                >> Step.human("approve", input_model=Approval,
                              prompt="Ship order-42 for the discounted total?")
                >> Step.from_callable(ship))
    return Flujo(pipeline, context_model=OrderContext, state_backend=SQLiteBackend(store),
                 pipeline_name="orders", pipeline_version="1")


def child_main(store: str) -> None:
    """Entry point of the child process (imported by name so class names agree)."""
    build_runner(Path(store)).run("order-42", run_id=RUN_ID)


def _checks(context: OrderContext, output: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    expected_total = Money(Decimal("1234.50") * (1 - Decimal("0.075")), "EUR")
    return [
        ("customer", context.customer, Customer(name="Ada Lovelace", email="ada@example.com",
                                                tier="gold")),
        ("ordered_at", context.ordered_at, datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=MADRID)),
        ("discount_rate", context.scratchpad.get("discount_rate"), Decimal("0.075")),
        ("total", output.get("total"), expected_total),
        ("approved_by", output.get("approved_by"), "Grace Hopper"),
        ("tags", output.get("tags"), {"gift", "priority"}),
        ("shipped_at", output.get("shipped_at"), datetime(2026, 10, 26, 9, 0, tzinfo=MADRID)),
    ]


def run_demo(folder: Path) -> int:
    made = not folder.exists()  # only a folder the demo made is the demo's to remove
    folder.mkdir(parents=True, exist_ok=True)
    store = folder / STORE_NAME
    asyncio.run(_forget_earlier_demo(store))  # a fresh demo each time
    print(f"flujo demo: a 4-step order pipeline whose state is saved after every step, in"
          f" {store}\n")
    print(f"1. a child process runs pipeline 'orders' as run {RUN_ID!r} and crashes in step 2:")
    child = subprocess.run(
        [sys.executable, "-c", "import sys; from flujo.demo import child_main; "
         "child_main(sys.argv[1])", str(store)],
        env={**os.environ, CRASH_ENV: "price"}, check=False)
    if child.returncode != -signal.SIGKILL:
        print(f"demo failed: the child ended with {child.returncode}, not SIGKILL", file=sys.stderr)
        return 1
    print("   child killed with SIGKILL (signal 9)\n")

    runner = build_runner(store)
    try:
        return _narrate(runner, store, made)
    finally:
        asyncio.run(runner.backend.close())  # the database's side files go with it


def _commands() -> tuple[str, str]:
    """How to call ``flujo`` and this Python as the demo itself was called: the Quickstart
    runs ``.venv/bin/flujo demo`` without activating the virtualenv."""
    invoked = sys.argv[0] if sys.argv else ""
    flujo = shlex.quote(invoked) if Path(invoked).name == "flujo" else "flujo"
    python = os.path.relpath(sys.executable)
    return flujo, shlex.quote(python if not python.startswith("..") else sys.executable)


async def _forget_earlier_demo(store: Path) -> None:
    async with SQLiteBackend(store) as backend:
        await backend.delete_state(RUN_ID)


def _narrate(runner: Flujo[OrderContext], store: Path, made: bool) -> int:
    envelope = asyncio.run(runner.backend.read_envelope(RUN_ID))
    if envelope is None:
        print("demo failed: nothing was saved before the crash", file=sys.stderr)
        return 1
    print(f"2. the store kept what was saved before the crash ({envelope.steps_done} step done,"
          f" save number {envelope.revision});\n   this process runs the same run id, and the"
          " run goes on from step 2:")
    paused = runner.run("order-42", run_id=RUN_ID)
    if paused.status != "paused" or paused.pause is None:
        print(f"demo failed: the run is {paused.status}, not paused", file=sys.stderr)
        return 1
    print(f"   the run is {paused.status} at step {paused.pause.step!r}: "
          f"{paused.pause.message!r}, waiting for a {paused.pause.input_type!r} with fields "
          f"{sorted(paused.pause.input_schema['properties'])}\n")

    print("3. a person answers (a different call; the run waited in the store):")
    try:
        runner.resume(RUN_ID, {"approved": True})
        print("demo failed: an answer without 'approver' was accepted", file=sys.stderr)
        return 1
    except InvalidInputError as exc:
        print(f"   refused: {exc.errors[0]['loc'][0]}: {exc.errors[0]['msg']} (the run stays"
              " paused)")
    result = runner.resume(RUN_ID, {"approved": True, "approver": "Grace Hopper"})
    print(f"   accepted; run finished: status={result.status}, steps "
          f"{[(s.name, s.attempts) for s in result.step_history]} (name, attempts)\n")

    final = asyncio.run(runner.backend.read_envelope(RUN_ID))
    assert final is not None
    print("4. what the store holds for the run: one JSON record. Its header (format, run id,")
    print("   revision: the number of saves, status, ...) is readable without your code; the")
    print('   "manifest" lists the version of every type inside, so an upgrade knows what to')
    print('   migrate. In the payload each value carries its type and version ("$t"), and')
    print('   "id"/"ref" mark an object stored once and used twice (payload abridged):')
    shown = final.model_dump(mode="json")
    fields = shown["payload"]["fields"]
    shown["payload"] = {"fields": {k: fields[k] for k in (
        "current_step_index", "status", "pipeline_context", "last_step_output")},
        "history": f"[{len(shown['payload']['history'])} step results]"}
    print(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())

    record = asyncio.run(runner.backend.load_record(RUN_ID))
    assert record is not None
    context = runner.restore_context(record.state)
    print("\n5. loaded back, value by value:")
    failures = 0
    answer = record.state.step_history[2].output
    checks = [*_checks(context, record.state.last_step_output),
              ("approval", answer, Approval(approved=True, approver="Grace Hopper"))]
    for name, value, expected in checks:
        same = type(value) is type(expected) and value == expected
        if isinstance(expected, datetime):
            same = same and getattr(value.tzinfo, "key", None) == "Europe/Madrid" \
                and value.fold == expected.fold
        failures += not same
        print(f"   {'ok ' if same else 'BAD'} {name:<14} {type(value).__name__:<9} {value!r}")
    print("\nevery value came back with its type" if not failures
          else f"\n{failures} value(s) lost their type")

    print("\n6. its checkpoints, one per save (a state this small is saved whole each time;"
          " past 4 KiB a save is a delta, holding only what it changed):")
    for checkpoint in runner.history(RUN_ID):
        print(f"   revision {checkpoint.revision}: {checkpoint.kind:<5}"
              f" {checkpoint.size:>6,} bytes, {checkpoint.steps_done} step(s) done,"
              f" {checkpoint.status}")
    before = runner.state_at(RUN_ID, "price")
    print(f"   the state right after step 'price': runner.state_at({RUN_ID!r}, 'price')"
          f" -> {before.current_step_index} steps done, output"
          f" {type(before.last_step_output).__name__}")

    uri = shlex.quote(f"sqlite:///{store}")  # sqlite:///relative or sqlite:////absolute
    print("\nnext: look at what it stored (--module flujo.demo imports the demo's types, as")
    print("--module yourapp would yours), and read the demo's code:")
    flujo, python = _commands()
    print(f"   {flujo} state ls --store {uri}")
    print(f"   {flujo} state show {RUN_ID} --store {uri} --module flujo.demo")
    print(f"   {flujo} state history {RUN_ID} --store {uri}")
    print(f'   {python} -c "import flujo.demo, inspect; print(inspect.getsource(flujo.demo))"')
    if made:
        print(f"   rm -r {shlex.quote(str(store.parent))}   # when done")
    else:  # a folder of the user's: only what the demo wrote into it
        files = " ".join(shlex.quote(str(store.parent / f"{store.name}{suffix}"))
                         for suffix in ("", "-wal", "-shm", ".claims"))
        print(f"   rm -rf {files}   # when done")
    return 1 if failures or not result.success else 0
