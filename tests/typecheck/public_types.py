"""What type checkers see of flujo's public API: checked by ``mypy --strict`` (and pyright,
where installed) in ``test_public_types.py``, never imported by the suite.

Each ``assert_type`` states an inferred type; each ``# type: ignore[code]`` marks a line
that must be an error (mypy's ``--warn-unused-ignores`` fails the check where it is not).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, assert_type

from pydantic import BaseModel

from flujo import (
    Flujo,
    Pipeline,
    PipelineContext,
    PipelineResult,
    RunHandle,
    Step,
    register_custom_serializer,
    safe_deserialize,
)


class Ctx(PipelineContext):
    note: str = ""


class Order(BaseModel):
    id: str


class Approval(BaseModel):
    approved: bool


class Money:
    def __init__(self, amount: Decimal) -> None:
        self.amount = amount


def fetch(order_id: str, *, context: Ctx) -> Order:
    return Order(id=order_id)


async def price(order: Order, *, context: Ctx) -> Decimal:
    return Decimal(1)


def count(n: int) -> int:
    return n


def ship(answer: Approval) -> str:
    return "shipped" if answer.approved else "held"


# Steps know what they take and give; async steps give what they await.
fetching = Step.from_callable(fetch)
assert_type(fetching, Step[str, Order])
pricing = Step.from_callable(price, retries=2)
assert_type(pricing, Step[Order, Decimal])
approving = Step.human("approve", input_model=Approval)
assert_type(approving, Step[Any, Approval])

# A chain is typed by its ends, and only links what fits.
priced = fetching >> pricing
assert_type(priced, Pipeline[str, Decimal])
shipped = priced >> approving >> Step.from_callable(ship)
assert_type(shipped, Pipeline[str, str])
counting = Step.from_callable(count)
assert_type(counting, Step[int, int])
fetching >> counting  # type: ignore[operator]
priced >> counting  # type: ignore[operator]

runner = Flujo(shipped, context_model=Ctx)
assert_type(runner, Flujo[Ctx, str])
result = runner.run("order-42", run_id="order-42")
assert_type(result, PipelineResult[Ctx, str])
assert_type(result.output, str | None)  # None unless the run completed
assert_type(result.final_pipeline_context, Ctx | None)
resumed = runner.resume("order-42", {"approved": True})
assert_type(resumed, PipelineResult[Ctx, str])


async def in_a_task() -> None:
    handle = runner.run_async("order-43", run_id="order-43")
    assert_type(handle, RunHandle[Ctx, str])
    assert_type(await handle, PipelineResult[Ctx, str])


untyped: Flujo[Ctx] = Flujo(Step.from_callable(count), context_model=Ctx)  # as before
assert_type(untyped.run(1).output, Any | None)

# The typed form of safe_deserialize checks and gives the class asked for.
order = safe_deserialize({"$t": "x"}, Order)
assert_type(order, Order)
anything = safe_deserialize({"$t": "x"})
assert_type(anything, Any)

# A serializer takes the registered class; a deserializer gives it.
register_custom_serializer(Money, lambda m: str(m.amount),
                           deserializer=lambda text: Money(Decimal(text)))
register_custom_serializer(Money, lambda m: m.missing)  # type: ignore[attr-defined]
