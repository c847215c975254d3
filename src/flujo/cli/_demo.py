"""``flujo demo``: typed state survives a killed process.

A child process saves the state of run ``demo-order-42`` after its first step into the
embedded SQLite store (``flujo-demo.db`` in the chosen folder), then is killed with SIGKILL
in the middle of the next step. The parent, a different process, loads the state by run id
and checks that every value came back with its exact type: a user pydantic model, a
registered plain class with a JSON Schema, a Decimal, a datetime with its IANA zone, a set.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel

from ..serialization import register_custom_serializer

RUN_ID = "demo-order-42"
STORE_NAME = "flujo-demo.db"


class Customer(BaseModel):
    """A customer, as the application defines it (no registration needed)."""

    name: str
    email: str
    tier: str


class Money:
    """A plain class: flujo needs to be told how to store it, and checks the schema."""

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


def expected_context() -> dict[str, Any]:
    return {
        "customer": Customer(name="Ada Lovelace", email="ada@example.com", tier="gold"),
        "total": Money(Decimal("1234.50"), "EUR"),
        "discount_rate": Decimal("0.075"),
        "ordered_at": datetime(2026, 3, 29, 2, 30, tzinfo=ZoneInfo("Europe/Madrid")),
        "tags": {"priority", "gift"},
    }


def _child(store: Path) -> None:
    """Runs in the child: save after step 1, then get killed during step 2."""
    from ..state import SQLiteBackend

    async def work() -> None:
        backend = SQLiteBackend(store)
        await backend.save_state(RUN_ID, {
            "run_id": RUN_ID, "pipeline_name": "orders", "pipeline_version": "1",
            "current_step_index": 1, "status": "running",
            "pipeline_context": expected_context(), "last_step_output": expected_context()["total"],
            "step_history": [{"name": "fetch", "success": True}],
        })
        print("child: step 1 done, state saved; step 2 starts ...", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # a crash in the middle of step 2

    asyncio.run(work())


def run_demo(folder: Path) -> int:
    from ..state import SQLiteBackend

    folder.mkdir(parents=True, exist_ok=True)
    store = folder / STORE_NAME
    # The child imports this module by name (not as __main__) so both processes agree on the
    # classes' names.
    child = subprocess.run(
        [sys.executable, "-c", "import sys; from flujo.cli._demo import _child; "
         "_child(__import__('pathlib').Path(sys.argv[1]))", str(store)], check=False)
    print(f"parent: child process ended with signal {-child.returncode}"
          if child.returncode < 0 else f"parent: child exited with {child.returncode}")
    if child.returncode != -signal.SIGKILL:
        print("demo failed: the child was expected to be killed", file=sys.stderr)
        return 1

    backend = SQLiteBackend(store)
    raw = asyncio.run(backend.load_raw(RUN_ID))
    state = asyncio.run(backend.load_state(RUN_ID))
    if state is None or raw is None:
        print(f"demo failed: no state saved for {RUN_ID}", file=sys.stderr)
        return 1
    print(f"\npersisted envelope for run {RUN_ID!r} in {store}:")
    print(orjson.dumps(raw, option=orjson.OPT_INDENT_2, default=str).decode()[:2000])
    print("\nloaded back in a new process:")
    context = state["pipeline_context"]
    failures = 0
    for key, expected in expected_context().items():
        value = context[key]
        same = type(value) is type(expected) and value == expected
        failures += not same
        print(f"  {'ok ' if same else 'BAD'} {key:<14} {type(value).__name__:<9} {value!r}")
    zone = getattr(context["ordered_at"].tzinfo, "key", None)
    print(f"  {'ok ' if zone == 'Europe/Madrid' else 'BAD'} zone kept      {zone}")
    failures += zone != "Europe/Madrid"
    print(f"\nresume point: step index {state['current_step_index']}; "
          f"{'every value came back with its type' if not failures else f'{failures} lost'}")
    return 1 if failures else 0

