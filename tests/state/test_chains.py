"""Checkpoint chains across backend instances sharing a store: two writers, key rotation,
migrate_all, and a doctored header."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flujo.exceptions import CorruptStateError, EncryptionError
from flujo.state import (
    Encryption,
    EnvelopeStateBackend,
    FileBackend,
    SQLiteBackend,
    WorkflowState,
    migrate_all,
)
from flujo.state.testing import assert_same

K1, K2 = bytes(range(32)), bytes(range(100, 132))


def _states(run_id: str, count: int, *, start: int = 0) -> list[WorkflowState]:
    rows: list[Any] = []
    states = []
    for step in range(start, start + count):
        rows = [*rows, [step, f"row {step}", step / 3]]
        states.append(WorkflowState(run_id=run_id, pipeline_name="chains",
                                    current_step_index=step,
                                    pipeline_context={"rows": list(rows), "n": step},
                                    step_history=[{"step": i} for i in range(step)]))
    return states


def _open(kind: str, path: Path, **options: Any) -> EnvelopeStateBackend:
    if kind == "file":
        return FileBackend(path / "runs", **options)
    return SQLiteBackend(path / "state.db", **options)


@pytest.mark.parametrize("kind", ["file", "sqlite"])
async def test_two_writers_never_write_a_delta_of_the_others_record(kind: str,
                                                                    tmp_path: Path) -> None:
    first, second = _open(kind, tmp_path), _open(kind, tmp_path)
    try:
        saved = _states("shared", 12)
        for number, state in enumerate(saved):
            writer = first if number % 3 else second  # each remembers a stale record
            await writer.save_state("shared", state)
            for reader in (first, second):
                record = await reader.load_record("shared")
                assert record is not None
                assert_same(record.state.pipeline_context, state.pipeline_context)
        kinds = [c.kind for c in await first.history("shared")]
        assert "delta" in kinds and "state" in kinds
        for checkpoint, state in zip(await second.history("shared"), saved, strict=True):
            at = await second.state_at("shared", checkpoint.revision)
            assert at is not None
            assert_same(at.state.pipeline_context, state.pipeline_context)
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("kind", ["file", "sqlite"])
async def test_key_rotation_rewrites_a_chain_as_one_whole_state(kind: str,
                                                                tmp_path: Path) -> None:
    old = _open(kind, tmp_path, encryption=Encryption.single(K1, "k1"))
    for state in _states("secret", 8):
        await old.save_state("secret", state)
    assert (await old.history("secret"))[-1].kind == "delta"
    await old.close()
    both = Encryption({"k1": K1, "k2": K2}, active_key_id="k2")
    rotating = _open(kind, tmp_path, encryption=both)
    report = await migrate_all(rotating)
    assert report.ok and [c.run_id for c in report.changed] == ["secret"]
    assert "key k1 -> k2" in report.changed[0].reasons
    assert (await migrate_all(rotating)).up_to_date == ["secret"]  # nothing left to rewrite
    await rotating.close()
    new_only = _open(kind, tmp_path, encryption=Encryption.single(K2, "k2"))
    try:
        record = await new_only.load_record("secret")  # the old key is gone: still loads
        assert record is not None and record.envelope.kind == "state"
        assert_same(record.state.pipeline_context, _states("secret", 8)[-1].pipeline_context)
        with pytest.raises(EncryptionError):  # earlier checkpoints keep their old key
            await new_only.state_at("secret", 3)
    finally:
        await new_only.close()


async def test_migrate_leaves_a_current_chain_alone(tmp_path: Path) -> None:
    backend = _open("sqlite", tmp_path)
    try:
        for state in _states("current", 6):
            await backend.save_state("current", state)
        before = await backend.history("current")
        assert before[-1].kind == "delta"
        report = await migrate_all(backend)
        assert report.up_to_date == ["current"] and not report.changed
        assert await backend.history("current") == before
    finally:
        await backend.close()


async def test_a_doctored_delta_header_is_refused(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path, encryption=Encryption.single(K1, "k1"))
    for state in _states("doctored", 6):
        await backend.save_state("doctored", state)
    path = backend.file_for("doctored")
    data = json.loads(path.read_bytes())
    assert data["kind"] == "delta"
    for field, value in (("steps_done", 99), ("step", "other"), ("base", 1)):
        path.unlink()
        path.write_bytes(json.dumps({**data, field: value}).encode())
        with pytest.raises(CorruptStateError):
            await backend.load_record("doctored")
    path.unlink()
    path.write_bytes(json.dumps(data).encode())
    record = await backend.load_record("doctored")
    assert record is not None and record.state.current_step_index == 5
