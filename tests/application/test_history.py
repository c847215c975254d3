"""Checkpoint history from the runner, on every backend: time travel, fork, lineage."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, Field, field_validator

from flujo import Flujo, PipelineContext, Step, StepResult
from flujo.application._pipeline import Pipeline
from flujo.exceptions import (
    CheckpointNotFoundError,
    InvalidStateError,
    PipelineError,
    RunNotFoundError,
    StateConflictError,
)
from flujo.serialization import register_type
from flujo.state import ForkOrigin, StateBackend


class Line(BaseModel):
    sku: str
    price: Decimal


register_type(Line, name="tests.history.Line")


class Cart(PipelineContext):
    lines: list[Line] = Field(default_factory=list)
    budget: Decimal = Decimal("100")

    @field_validator("budget")
    @classmethod
    def _positive(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError("the budget must be positive")
        return value


CALLS: list[str] = []


def _add(index: int) -> Step:
    def add(total: Decimal, *, context: Cart) -> Decimal:
        CALLS.append(f"s{index}")
        line = Line(sku=f"sku-{index}", price=Decimal(index) + Decimal("0.50"))
        context.lines.append(line)
        return total + line.price

    return Step.from_callable(add, name=f"s{index}")


def runner(backend: StateBackend, steps: int = 5, *, version: str = "1") -> Flujo[Cart]:
    return Flujo(Pipeline([_add(i) for i in range(steps)]), context_model=Cart,
                 state_backend=backend, pipeline_name="cart", pipeline_version=version)


def new_id() -> str:
    return f"h-{uuid.uuid4().hex[:8]}"


async def test_history_and_the_state_after_every_step(backend: StateBackend) -> None:
    flow = runner(backend)
    rid = new_id()
    result = await flow.run_async(Decimal(0), run_id=rid)
    assert result.success
    checkpoints = await flow.history_async(rid)
    assert [c.steps_done for c in checkpoints] == [0, 1, 2, 3, 4, 5]
    assert [c.step for c in checkpoints] == [None, "s0", "s1", "s2", "s3", "s4"]
    assert [c.status for c in checkpoints][-1] == "completed"
    for index in range(5):
        by_name = await flow.state_at_async(rid, f"s{index}")
        by_index = await flow.state_at_async(rid, index)
        assert by_name.current_step_index == by_index.current_step_index == index + 1
        context = flow.restore_context(by_name)
        assert [line.sku for line in context.lines] == [f"sku-{i}" for i in range(index + 1)]
        assert type(context.lines[0].price) is Decimal
        assert by_name.last_step_output == sum(Decimal(i) + Decimal("0.50")
                                               for i in range(index + 1))
        assert [type(r) for r in by_name.step_history] == [StepResult] * (index + 1)
    first = await flow.state_at_async(rid, revision=1)
    assert first.current_step_index == 0 and first.pipeline_context["lines"] == []
    latest = await flow.state_at_async(rid)
    assert latest.status == "completed"


async def test_fork_with_an_edit_runs_the_remaining_steps(backend: StateBackend) -> None:
    flow = runner(backend)
    rid = new_id()
    await flow.run_async(Decimal(0), run_id=rid)
    CALLS.clear()

    def cheaper(context: Cart) -> None:
        context.lines[-1] = Line(sku="sku-1", price=Decimal("0.01"))

    forked = await flow.fork_async(rid, at_step="s1", new_run_id=f"{rid}-b", edit=cheaper)
    assert forked == f"{rid}-b"
    state = await flow.state_at_async(forked)
    assert state.forked_from == ForkOrigin(run_id=rid, revision=3, step="s1", steps_done=2)
    assert state.status == "running" and state.current_step_index == 2
    assert state.pipeline_context["run_id"] == forked
    result = await flow.run_async(run_id=forked)
    assert CALLS == ["s2", "s3", "s4"]  # the remaining steps only
    finished = await flow.state_at_async(forked)
    assert finished.forked_from == state.forked_from  # every save keeps the lineage
    assert result.success and result.final_pipeline_context.run_id == forked
    assert [line.price for line in result.final_pipeline_context.lines][:2] == [
        Decimal("0.50"), Decimal("0.01")]
    # The source run is untouched; its fork records where it came from.
    source = await flow.state_at_async(rid)
    assert source.forked_from is None and len(source.pipeline_context["lines"]) == 5
    history = await flow.history_async(forked)
    assert history[0].steps_done == 2 and history[-1].status == "completed"


async def test_fork_refusals(backend: StateBackend) -> None:
    flow = runner(backend)
    rid = new_id()
    await flow.run_async(Decimal(0), run_id=rid)
    with pytest.raises(StateConflictError):
        await flow.fork_async(rid, new_run_id=rid)  # the id is taken

    def bad_budget(context: Cart) -> None:
        context.budget = Decimal("-1")

    with pytest.raises(InvalidStateError, match="budget must be positive"):
        await flow.fork_async(rid, at_step=0, edit=bad_budget)

    def wrong_type(context: Cart) -> Any:
        return {"lines": []}

    with pytest.raises(InvalidStateError, match="Cart"):
        await flow.fork_async(rid, at_step=0, edit=wrong_type)
    with pytest.raises(RunNotFoundError):
        await flow.fork_async("no-such-run")
    with pytest.raises(PipelineError, match="no step 'nope'"):
        await flow.fork_async(rid, at_step="nope")
    with pytest.raises(PipelineError, match="not both"):
        await flow.fork_async(rid, at_step=0, revision=1)
    mine = [r["run_id"] for r in await backend.list_runs() if r["run_id"].startswith(rid)]
    assert mine == [rid]  # nothing was saved


async def test_a_step_that_never_finished_has_no_checkpoint(backend: StateBackend) -> None:
    def boom(total: Decimal, *, context: Cart) -> Decimal:
        raise RuntimeError("boom")

    steps = [_add(0), Step.from_callable(boom, name="boom"), _add(2)]
    flow = Flujo(Pipeline(steps), context_model=Cart, state_backend=backend,
                 pipeline_name="cart")
    rid = new_id()
    result = await flow.run_async(Decimal(0), run_id=rid)
    assert not result.success
    checkpoints = await flow.history_async(rid)
    assert checkpoints[-1].status == "failed" and checkpoints[-1].step == "boom"
    with pytest.raises(CheckpointNotFoundError, match="never finished"):
        await flow.state_at_async(rid, "boom")
    with pytest.raises(CheckpointNotFoundError, match="revision 99"):
        await flow.state_at_async(rid, revision=99)
    with pytest.raises(RunNotFoundError):
        await flow.history_async(new_id())


async def test_time_travel_after_pruning_says_what_is_gone(backend: StateBackend) -> None:
    flow = runner(backend, steps=3)
    rid = new_id()
    await flow.run_async(Decimal(0), run_id=rid)
    assert await backend.compact(rid) == 3  # type: ignore[attr-defined]
    with pytest.raises(CheckpointNotFoundError):
        await flow.state_at_async(rid, "s0")
    assert (await flow.state_at_async(rid, "s2")).status == "completed"


def test_blocking_calls() -> None:
    from flujo.state import InMemoryBackend

    flow = runner(InMemoryBackend(), steps=2)
    flow.run(Decimal(0), run_id="sync")
    assert [c.steps_done for c in flow.history("sync")] == [0, 1, 2]
    assert flow.state_at("sync", "s0").current_step_index == 1
    assert flow.run(run_id=flow.fork("sync", at_step=0, new_run_id="sync-2")).success


async def test_a_backend_without_history_is_refused_clearly() -> None:
    from flujo.state import StateBackend as Base

    class Earlier(Base):
        async def save_state(self, run_id: str, state: Any, *,
                             expected_revision: Any = None) -> None:
            return None

        async def load_state(self, run_id: str) -> dict[str, Any] | None:
            return None

        async def delete_state(self, run_id: str) -> None:
            return None

    with pytest.raises(PipelineError, match="keeps no checkpoints"):
        await runner(Earlier()).history_async("x")


async def test_steps_are_named_as_the_runs_own_pipeline_version_named_them(
        backend: StateBackend) -> None:
    # was: a newer pipeline's names picked the checkpoint, so "s1" of v2 (its third step)
    # chose the state after the run's third step
    rid = new_id()
    await runner(backend, steps=3).run_async(Decimal(0), run_id=rid)
    newer = Flujo(Pipeline([_add(0), _add(9), _add(1), _add(2)]), context_model=Cart,
                  state_backend=backend, pipeline_name="cart", pipeline_version="2",
                  version_migrations={"1": lambda state: state})
    state = await newer.state_at_async(rid, "s1")
    assert state.current_step_index == 2 and len(state.pipeline_context["lines"]) == 2
