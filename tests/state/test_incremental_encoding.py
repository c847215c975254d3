"""Saves of a running run reuse what the last save encoded: the rows of records unchanged
since (``EncodingMemo``) and the last record's fields document (``ChainTip.parsed``, made
from the one before by the delta's edits). Neither may change what is stored: every
checkpoint of a run whose records change in place, save after save, must load back to the
state as it was when saved, on a backend that writes deltas and on one that keeps copies."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from flujo.serialization import TypeRegistry
from flujo.state import (
    EnvelopeStateBackend,
    FileBackend,
    InMemoryBackend,
    SQLiteBackend,
    WorkflowState,
)
from flujo.state._jsonio import loads
from flujo.testing import assert_identical

_START = datetime(2026, 1, 1, tzinfo=UTC)


class Note(BaseModel):
    step: int
    text: str
    at: datetime
    score: float | None = None


def _registry() -> TypeRegistry:
    registry = TypeRegistry()
    registry.register_type(Note, name="tests.incremental.Note")
    return registry


def _note(i: int) -> Note:
    return Note(step=i, text=f"note {i}", at=_START + timedelta(minutes=i), score=i / 7)


def _change(op: str, i: int, context: dict[str, Any]) -> None:
    notes: list[Note] = context["notes"]
    at = i % len(notes) if notes else 0
    if op == "append" or not notes:
        notes.append(_note(i))
    elif op == "edit":
        notes[at].text = f"edited {i}"
    elif op == "unset":
        notes[at].__pydantic_fields_set__.discard("score")
    elif op == "drop":
        del notes[at]
    elif op == "swap":
        notes[0], notes[-1] = notes[-1], notes[0]
    elif op == "scratch":
        context["scratch"].setdefault("seen", []).append(i)  # plain JSON, changed in place


async def _run(backend: EnvelopeStateBackend, ops: list[str]) -> None:
    # Enough notes that a save is a delta, not a whole state again, most of the time.
    context: dict[str, Any] = {"notes": [_note(-i) for i in range(40)], "scratch": {}}
    saved: list[tuple[int, dict[str, Any]]] = []
    state = WorkflowState(run_id="live", pipeline_name="incremental", status="running",
                          pipeline_context=context)
    for number, op in enumerate(ops):
        _change(op, number, context)
        state.current_step_index = number
        revision = await backend.save_state("live", state)
        saved.append((revision, copy.deepcopy(context)))
        tip = backend._tip("live")
        if tip is not None and tip.parsed is not None:  # the derived document is the text's
            assert orjson.dumps(tip.parsed) == orjson.dumps(loads(tip.fields_json))
    for revision, context_then in saved:
        at = await backend.state_at("live", revision)
        assert at is not None
        assert_identical(at.state.pipeline_context, context_then)


_OPS = ["append", "append", "append", "edit", "unset", "drop", "swap", "scratch"]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_every_checkpoint_of_records_changed_in_place(kind: str, tmp_path: Path) -> None:
    backend: EnvelopeStateBackend = (InMemoryBackend(registry=_registry()) if kind == "memory"
                                     else SQLiteBackend(tmp_path / "s.db", registry=_registry()))
    try:
        # each kind of change between two changes in place of plain JSON the encoder's
        # output shares with the live context (the next tip's document must not share them)
        await _run(backend, [op for i in range(24)
                             for op in (_OPS[i % len(_OPS)], "scratch", "append")])
        kinds = [checkpoint.kind for checkpoint in await backend.history("live")]
        assert kinds.count("delta") > len(kinds) // 2  # the derived documents were used
    finally:
        await backend.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.sampled_from(_OPS), min_size=1, max_size=30))
async def test_any_sequence_of_changes_loads_back(ops: list[str]) -> None:
    backend = InMemoryBackend(registry=_registry())
    await _run(backend, ops)


async def _save_while_changed(backend: InMemoryBackend, state: WorkflowState,
                              log: list[Any]) -> int:
    """Save ``state`` while another task appends to ``log`` (in its context) as the save
    waits for the store (here: two turns of the event loop); the backend writes as before
    after it."""
    write = backend._write

    async def slow(run_id: str, make: Any) -> Any:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return await write(run_id, make)

    async def meddle() -> None:
        await asyncio.sleep(0)
        log.append("later")

    backend._write = slow  # type: ignore[method-assign]
    try:
        revision, _ = await asyncio.gather(backend.save_state("r", state), meddle())
    finally:
        del backend._write
    return revision


async def test_a_change_while_a_save_waits_for_the_store_is_not_in_that_save() -> None:
    """The delta is computed from the state as it was when ``save_state`` was called, not
    when the store is reached: another task may change the live context in between (the
    SQLite backend writes in a worker thread), and the encoder's output shares plain lists
    with it."""
    backend = InMemoryBackend()
    state = WorkflowState(run_id="r", pipeline_name="p", status="running",
                          pipeline_context={"log": ["a"] * 2000})
    log = state.pipeline_context["log"]
    await backend.save_state("r", state)
    log.append("b")
    asked = copy.deepcopy(state.pipeline_context)
    revision = await _save_while_changed(backend, state, log)
    tip = backend._tip("r")
    assert tip is not None and tip.parsed is not None
    assert orjson.dumps(tip.parsed) == orjson.dumps(loads(tip.fields_json))
    log.pop()  # back to what that save stored: the next save is a delta of it
    again = await backend.save_state("r", state)
    for number in (revision, again):
        at = await backend.state_at("r", number)
        assert at is not None
        assert_identical(at.state.pipeline_context, asked)
    assert [c.kind for c in await backend.history("r")] == ["state", "delta", "delta"]


async def test_a_save_after_another_writers_keeps_the_state_it_was_asked_for() -> None:
    """When the stored head is another writer's record, the save encodes its history anew,
    but not the context again: a change made while the save waits for the store is not in
    it either."""
    backend, other = InMemoryBackend(), InMemoryBackend()
    state = WorkflowState(run_id="r", pipeline_name="p", status="running",
                          pipeline_context={"log": ["a"]}, step_history=[{"step": 1}])
    await backend.save_state("r", state)  # its tip remembers a history entry
    other._entries, other._history = backend._entries, backend._history  # one store
    await other.save_state("r", state)  # another writer: the tip is no longer the head
    log = state.pipeline_context["log"]
    log.append("b")
    asked = copy.deepcopy(state.pipeline_context)
    revision = await _save_while_changed(backend, state, log)
    at = await backend.state_at("r", revision)
    assert at is not None and at.state.pipeline_context == asked
    assert at.state.step_history == state.step_history


async def test_a_run_deleted_and_created_again_by_another_writer_is_saved_as_deltas(
        tmp_path: Path) -> None:
    """A backend that remembered a later revision of the run before another writer deleted
    and created it again takes the new record once it reads it: deltas, not whole states
    until the revision passes the old one."""
    first, second = (FileBackend(tmp_path / "runs"), FileBackend(tmp_path / "runs"))
    state = WorkflowState(run_id="r", pipeline_name="p", status="running",
                          pipeline_context={"log": list(range(2000))})
    for _ in range(6):
        await first.save_state("r", state)
    await second.delete_state("r")
    await second.save_state("r", state)
    await first.load_record("r")
    for number in range(3):
        state.pipeline_context["log"].append(number)
        await first.save_state("r", state)
    assert [c.kind for c in await first.history("r")] == ["state", "delta", "delta", "delta"]
    at = await first.state_at("r", 4)
    assert at is not None and at.state.pipeline_context == state.pipeline_context
