"""Fencing on the backends whose claims are flock locks (SQLite, file): every claim draws
an epoch from the store, and a save under a claim is refused once the run was claimed
again, which a lock file removed while held would otherwise allow. (PostgreSQL's leases:
tests/state/test_postgres_leases.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flujo.exceptions import ClaimLostError
from flujo.state import EnvelopeStateBackend, FileBackend, SQLiteBackend, WorkflowState

KINDS = ["sqlite", "file"]


def _open(kind: str, folder: Path) -> EnvelopeStateBackend:
    return SQLiteBackend(folder / "s.db") if kind == "sqlite" else FileBackend(folder / "runs")


def _lock_file(kind: str, folder: Path, run_id: str) -> Path:
    return (folder / "s.db.claims" if kind == "sqlite" else folder / "runs" / ".locks") \
        / f"{run_id}.claim"


def _state(run_id: str, step: int) -> WorkflowState:
    return WorkflowState(run_id=run_id, pipeline_name="p", pipeline_version="1",
                         current_step_index=step, pipeline_context={"step": step},
                         last_step_output=None, step_history=[], status="running")


@pytest.mark.parametrize("kind", KINDS)
def test_a_save_under_a_claim_taken_over_is_refused_and_writes_nothing(
        kind: str, tmp_path: Path) -> None:
    async def main() -> None:
        first = _open(kind, tmp_path)
        second = _open(kind, tmp_path)
        async with first, second, first.claim("r") as mine:
            assert mine.epoch is not None
            await first.save_state("r", _state("r", 1), claim=mine)
            _lock_file(kind, tmp_path, "r").unlink()  # the lock file removed while held
            async with second.claim("r") as theirs:
                assert theirs.epoch is not None and theirs.epoch > mine.epoch
                await second.save_state("r", _state("r", 2), claim=theirs)
                with pytest.raises(ClaimLostError, match="epoch"):
                    await first.save_state("r", _state("r", 3), claim=mine)
            loaded = await second.load_state("r")
            assert loaded is not None and loaded["current_step_index"] == 2

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_epochs_grow_with_every_claim_and_are_never_reused(kind: str, tmp_path: Path) -> None:
    async def main() -> list[int]:
        backend = _open(kind, tmp_path)
        seen: list[int] = []
        async with backend:
            for run_id in ("a", "b", "a"):
                async with backend.claim(run_id) as claim:
                    assert claim.epoch is not None
                    seen.append(claim.epoch)
                    await backend.save_state(run_id, _state(run_id, 1), claim=claim)
            await backend.delete_state("a")
            async with backend.claim("a") as claim:
                assert claim.epoch is not None
                seen.append(claim.epoch)
        return seen

    assert asyncio.run(main()) == [1, 2, 3, 4]
