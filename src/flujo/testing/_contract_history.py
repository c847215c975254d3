"""The checkpoint-history part of the backend contract (mixed into ``BackendContract``).

A backend that keeps history (``keeps_history``) must write saves as deltas that rebuild
exactly the state saved (once the state's whole record is over ``WHOLE_RECORD_BYTES``;
the tests of chains set it to 0, so that every save may be a delta), keep every checkpoint
until it is pruned, refuse a damaged or reordered chain, and prune or compact only finished
runs. A backend that keeps no history passes by listing its current record only.
"""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path
from typing import Any

import pytest

from flujo.exceptions import BackendConfigError, CorruptStateError, StateConflictError
from flujo.state import Encryption, EnvelopeStateBackend, StateBackend, WorkflowState

from ._compare import assert_identical
from ._samples import sample_values

__all__ = ["HistoryContract"]


def _growing(run_id: str, count: int) -> list[WorkflowState]:
    """States a run saves one after the other: each step appends to a list, replaces and
    removes context keys, and flips a value between ``1``, ``True`` and ``1.0`` (equal in
    Python, three different JSON values)."""
    values = sample_values()
    states = []
    items: list[Any] = []
    flips: list[Any] = [1, True, 1.0, 0.0, -0.0, False, 0]
    for step in range(count):
        items = [*items, {"n": step, "at": dt.date(2024, 1, 1 + step % 28),
                          "price": decimal.Decimal(step) / 7}]
        context: dict[str, Any] = {"items": items, "flip": flips[step % len(flips)],
                                   "values": values, f"k{step % 3}": step}
        if step % 4 == 3:
            context.pop("values")
        states.append(WorkflowState(
            run_id=run_id, pipeline_name="contract", current_step_index=step,
            pipeline_context=context, last_step_output=[step, values["tuple"]],
            step_history=[{"step": i, "ok": i % 2 == 0} for i in range(step)],
            status="completed" if step == count - 1 else "running"))
    return states


def _same_state(loaded: WorkflowState, saved: WorkflowState) -> None:
    assert_identical(loaded.pipeline_context, saved.pipeline_context)
    assert_identical(loaded.last_step_output, saved.last_step_output)
    assert_identical(loaded.step_history, saved.step_history)
    assert (loaded.current_step_index, loaded.status) == (saved.current_step_index,
                                                           saved.status)


class HistoryContract:
    """Checkpoint history: see the module docstring. Uses ``make_backend`` and the raw hooks
    of ``BackendContract``."""

    async def make_backend(self, tmp_path: Path, **options: Any) -> StateBackend:
        raise NotImplementedError

    async def put_kept_raw(self, backend: StateBackend, run_id: str, revision: int,
                           raw: bytes | None) -> None:
        """Store ``raw`` as the kept record of ``run_id`` at ``revision`` (None: remove it),
        bypassing every check (override to enable the damaged-history tests)."""
        pytest.skip(f"{type(self).__name__} gives no raw access to kept records")

    async def _envelope_backend(self, tmp_path: Path, **options: Any) -> EnvelopeStateBackend:
        backend = await self.make_backend(tmp_path, **options)
        if not isinstance(backend, EnvelopeStateBackend):
            await backend.close()
            pytest.skip("checkpoint history needs an EnvelopeStateBackend")
        return backend

    @pytest.mark.parametrize("options", [{}, {"compression": "zstd"}, {
        "encryption": Encryption.single(bytes(range(32)))}], ids=["plain", "zstd", "aesgcm"])
    async def test_every_checkpoint_rebuilds_exactly_what_was_saved(
            self, tmp_path: Path, options: dict[str, Any]) -> None:
        backend = await self._envelope_backend(tmp_path, **options)
        backend.WHOLE_RECORD_BYTES = 0  # zstd makes these records smaller than a page
        try:
            states = _growing("h", 12)
            for state in states:
                await backend.save_state("h", state)
            checkpoints = await backend.history("h")
            assert all(c.size > 0 for c in checkpoints)
            if not backend.keeps_history:  # the current record only
                assert [(c.revision, c.status, c.steps_done) for c in checkpoints] == [
                    (12, "completed", 11)]
            else:
                assert [c.revision for c in checkpoints] == list(range(1, 13))
                assert [c.status for c in checkpoints] == ["running"] * 11 + ["completed"]
                assert [c.steps_done for c in checkpoints] == list(range(12))
                assert "delta" in {c.kind for c in checkpoints}, "no save was a delta"
                for checkpoint, saved in zip(checkpoints, states, strict=True):
                    record = await backend.state_at("h", checkpoint.revision)
                    assert record is not None and record.revision == checkpoint.revision
                    _same_state(record.state, saved)
            latest = await backend.load_record("h")
            assert latest is not None
            _same_state(latest.state, states[-1])
            flip = latest.state.pipeline_context["flip"]
            assert type(flip) is type(states[-1].pipeline_context["flip"])
            whole = await backend.read_envelope("h")  # one whole state, whatever is stored
            assert whole is not None and whole.kind == "state" and whole.revision == 12
            assert await backend.state_at("h", 13) is None
            assert await backend.history("nope") == []
            with pytest.raises(BackendConfigError):
                await backend.state_at("h", 0)
        finally:
            await backend.close()

    async def test_a_state_whose_record_fits_a_page_is_saved_whole(self, tmp_path: Path
                                                                   ) -> None:
        """Each save of a small state is a whole record (a load reads one record); past
        ``WHOLE_RECORD_BYTES`` the saves are deltas again."""
        backend = await self._envelope_backend(tmp_path)
        try:
            small = [WorkflowState(run_id="s", pipeline_name="contract", current_step_index=i,
                                   pipeline_context={"n": i}) for i in range(4)]
            for state in small:
                await backend.save_state("s", state)
            checkpoints = await backend.history("s")
            if backend.keeps_history:
                assert [c.kind for c in checkpoints] == ["state"] * 4
            backend.WHOLE_RECORD_BYTES = 0
            for state in small:
                await backend.save_state("s", state)
            checkpoints = await backend.history("s")
            if backend.keeps_history and backend._writes_deltas():
                assert "delta" in {c.kind for c in checkpoints[4:]}
            record = await backend.load_record("s")
            assert record is not None and record.revision == 8
            _same_state(record.state, small[-1])
        finally:
            await backend.close()

    async def test_a_replaced_head_is_never_the_base_of_a_delta(self, tmp_path: Path) -> None:
        """The backend remembers the last record it wrote; once the stored run changed
        behind it (another writer, a delete and a new run of that id), the next save must
        not be a delta of what it remembers."""
        backend = await self._envelope_backend(tmp_path)
        try:
            first, second, third = _growing("r", 3)
            for state in (first, second):
                await backend.save_state("r", state.model_copy(update={"status": "running"}))
            envelope = await backend.read_envelope("r")
            assert envelope is not None
            await backend.write_envelope(envelope)  # another writer: same state, revision 3
            await backend.save_state("r", third)
            record = await backend.load_record("r")
            assert record is not None
            _same_state(record.state, third)
            await backend.delete_state("r")
            assert await backend.history("r") == []
            fresh = _growing("r", 2)
            for state in fresh:
                await backend.save_state("r", state)
            record = await backend.load_record("r")
            assert record is not None and record.revision == 2
            _same_state(record.state, fresh[-1])
            with pytest.raises(BackendConfigError, match="delta"):
                await backend.write_envelope(
                    envelope.model_copy(update={"kind": "delta", "base": 1, "revision": 2}))
        finally:
            await backend.close()

    async def test_compact_and_prune_touch_finished_runs_only(self, tmp_path: Path) -> None:
        backend = await self._envelope_backend(tmp_path)
        try:
            for run_id, status in (("done-1", "completed"), ("done-2", "failed"),
                                   ("live", "running"), ("waits", "paused")):
                for state in _growing(run_id, 4):
                    final = state.status == "completed"
                    await backend.save_state(run_id, state.model_copy(
                        update={"status": status if final else "running"}))
            with pytest.raises(StateConflictError, match="running"):
                await backend.compact("live")
            with pytest.raises(BackendConfigError, match="older_than or keep_last"):
                await backend.prune()
            with pytest.raises(BackendConfigError, match="paused"):
                await backend.prune(keep_last=0, status="paused")
            kept = 1 if backend.keeps_history else 0
            preview = await backend.prune(keep_last=0, dry_run=True)
            assert sorted(preview.deleted) == ["done-1", "done-2"]
            assert preview.records_removed == (8 if kept else 2) and preview.bytes_removed > 0
            # a dry run removes nothing
            assert len(await backend.history("done-1")) == (4 if kept else 1)
            report = await backend.prune(keep_last=0, status=["completed"], history_only=True)
            assert report.compacted == (["done-1"] if kept else [])
            if kept:
                assert [c.revision for c in await backend.history("done-1")] == [4]
            record = await backend.load_record("done-1")
            assert record is not None
            _same_state(record.state, _growing("done-1", 4)[-1])
            later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
            report = await backend.prune(older_than=later)
            assert sorted(report.deleted) == ["done-1", "done-2"]
            assert sorted(await backend.list_run_ids()) == ["live", "waits"]
            assert len(await backend.history("live")) == (4 if kept else 1)  # never touched
            assert (await backend.prune(older_than=dt.timedelta(days=1))).deleted == []
        finally:
            await backend.close()

    async def test_a_damaged_or_reordered_history_is_refused(self, tmp_path: Path) -> None:
        backend = await self._envelope_backend(tmp_path)
        try:
            if not backend.keeps_history:
                pytest.skip("the backend keeps no history")
            states = _growing("d", 6)
            for state in states:
                await backend.save_state("d", state.model_copy(update={"status": "running"}))
            checkpoints = await backend.history("d")
            head = checkpoints[-1]
            assert head.kind == "delta", [c.kind for c in checkpoints]
            chain = await backend._read_history("d", 1, head.revision - 1)
            records = dict(chain)
            last_kept = max(records)
            # A record stored under another revision (moved) is refused.
            earlier = records[last_kept - 1].raw
            await self.put_kept_raw(backend, "d", last_kept, earlier if isinstance(
                earlier, bytes) else earlier.encode())
            with pytest.raises(CorruptStateError):
                await backend.load_record("d")
            # A record of the chain missing: refused, never a partial state.
            await self.put_kept_raw(backend, "d", last_kept, None)
            with pytest.raises(CorruptStateError):
                await backend.load_record("d")
            assert await backend.history("d")  # the rest is still listed, nothing deleted
        finally:
            await backend.close()
