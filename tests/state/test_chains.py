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
from flujo.testing import assert_identical

K1, K2 = bytes(range(32)), bytes(range(100, 132))
# These tests are about chains, with states of a few hundred bytes.
pytestmark = pytest.mark.usefixtures("states_in_deltas")


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
                assert_identical(record.state.pipeline_context, state.pipeline_context)
        kinds = [c.kind for c in await first.history("shared")]
        assert "delta" in kinds and "state" in kinds
        for checkpoint, state in zip(await second.history("shared"), saved, strict=True):
            at = await second.state_at("shared", checkpoint.revision)
            assert at is not None
            assert_identical(at.state.pipeline_context, state.pipeline_context)
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
        assert_identical(record.state.pipeline_context, _states("secret", 8)[-1].pipeline_context)
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


# -- found by an adversarial review -----------------------------------------------------------


async def test_a_none_history_entry_after_a_load_is_stored_as_none() -> None:
    # was: after load_record the tip's unknown sources were None, so a None entry matched
    # and the loaded entry's encoding was reused
    from flujo import StepResult
    from flujo.state import InMemoryBackend

    backend = InMemoryBackend()
    state = WorkflowState(run_id="n", step_history=[StepResult(name="a", output="old")])
    await backend.save_state("n", state)
    record = await backend.load_record("n")
    assert record is not None
    record.state.step_history[0] = None
    await backend.save_state("n", record.state)
    again = await backend.load_record("n")
    assert again is not None and again.state.step_history == [None]


async def test_an_older_whole_state_put_in_a_chains_place_is_refused(tmp_path: Path) -> None:
    # was: with encryption, rev 1 copied over rev 4 (the base of 5 and 6) with its header
    # renumbered loaded a state no save had stored
    backend = FileBackend(tmp_path, encryption=Encryption.single(K1, "k1"))
    for state in _states("moved", 10):
        await backend.save_state("moved", state)
    kinds = {c.revision: c.kind for c in await backend.history("moved")}
    head = max(kinds)
    base = max(r for r, kind in kinds.items() if kind == "state" and r < head)
    assert kinds[head] == "delta" and base > 1
    history = tmp_path / ".history" / "moved"
    older = json.loads((history / "1.json").read_bytes())
    (history / f"{base}.json").unlink()
    (history / f"{base}.json").write_bytes(
        json.dumps({**older, "revision": base, "base": base}).encode())
    with pytest.raises(CorruptStateError, match="moved or replaced"):
        await backend.load_record("moved")


@pytest.mark.postgres
async def test_compaction_keeps_the_queryable_payload_a_whole_state(
        postgres_target: Any) -> None:
    # was: compact() wrote the whole envelope into the payload jsonb column
    import psycopg

    from flujo.state import PostgresBackend

    backend = PostgresBackend(postgres_target.dsn, schema=postgres_target.schema,
                              table=postgres_target.new_table(), queryable_payload=True)
    try:
        for state in _states("q", 4):
            await backend.save_state("q", state.model_copy(update={"status": "completed"}))
        assert await backend.compact("q") == 3
        async with await psycopg.AsyncConnection.connect(backend.dsn) as conn:
            cur = await conn.execute(
                "SELECT payload->'fields'->'pipeline_context'->>'n' FROM"
                f' "{backend.schema}"."{backend.table}"')
            assert await cur.fetchall() == [("3",)]
    finally:
        await backend.close()


async def test_state_at_races_a_save_and_a_compaction(tmp_path: Path) -> None:
    # was: state_at(head) returned None when the run was saved meanwhile, and a compaction
    # between its reads was reported as a damaged store
    class Racing(SQLiteBackend):
        race: Any = None

        async def load_record(self, run_id: str) -> Any:
            if self.race is not None:
                race, self.race = self.race, None
                await race()
            return await super().load_record(run_id)

    backend = Racing(tmp_path / "race.db")
    states = _states("r", 5)
    for state in states:
        await backend.save_state("r", state)

    async def save_again() -> None:
        await backend.save_state("r", states[-1].model_copy(update={"status": "completed"}))

    backend.race = save_again
    record = await backend.state_at("r", 5)
    assert record is not None and record.revision == 5
    assert_identical(record.state.pipeline_context, states[-1].pipeline_context)
    await backend.compact("r")
    assert await backend.state_at("r", 3) is None  # compacted away: not stored, not damaged
    await backend.close()


async def test_a_revision_beyond_64_bits_in_a_header_is_a_typed_error(tmp_path: Path) -> None:
    # was: OverflowError from SQLite binding the history's range
    import sqlite3

    backend = SQLiteBackend(tmp_path / "huge.db")
    for state in _states("h", 3):
        await backend.save_state("h", state)
    with sqlite3.connect(tmp_path / "huge.db") as conn:
        (raw,) = conn.execute("SELECT envelope FROM flujo_state").fetchone()
        data = json.loads(raw)
        conn.execute("UPDATE flujo_state SET envelope = ?",
                     (json.dumps({**data, "revision": 2**64, "base": 2**64,
                                  "kind": "state"}),))
    with pytest.raises(CorruptStateError, match="out of range"):
        await backend.history("h")
    await backend.close()


async def test_a_store_made_to_encrypt_compacts_its_plaintext_history(tmp_path: Path) -> None:
    # was: history, compact and prune raised EncryptionError for kept plaintext records
    plain = FileBackend(tmp_path)
    for state in _states("p", 6):
        await plain.save_state("p", state.model_copy(update={"status": "completed"}))
    converting = FileBackend(tmp_path, encryption=Encryption(
        {"k1": K1}, active_key_id="k1", accept_plaintext=True))
    assert (await migrate_all(converting)).ok
    report = await converting.prune(keep_last=0, history_only=True)
    assert report.compacted == ["p"] and not report.skipped
    strict = FileBackend(tmp_path, encryption=Encryption.single(K1, "k1"))
    assert [c.revision for c in await strict.history("p")] == [7]
    assert not list((tmp_path / ".history").glob("p/*"))


# -- found by a second adversarial review -----------------------------------------------------


async def test_a_store_of_an_earlier_layout_lists_its_current_record(tmp_path: Path) -> None:
    # was: history()/state_at raised "no such table: flujo_state_history" on a table of
    # layout 1 not written to since
    import sqlite3

    writer = SQLiteBackend(tmp_path / "old.db")
    for state in _states("o", 2):  # whole states, as a table of layout 1 holds
        await writer._save_state("o", state, None, None, whole=True)
    await writer.close()
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("DROP TABLE flujo_state_history")
        conn.execute("UPDATE flujo_schema_versions SET version = 1")
    reader = SQLiteBackend(tmp_path / "old.db")
    try:
        assert [c.revision for c in await reader.history("o")] == [2]
        assert await reader.state_at("o", 1) is None
        assert (await reader.state_at("o", 2)) is not None
    finally:
        await reader.close()


async def test_prune_reports_only_what_it_removed(tmp_path: Path) -> None:
    # was: a compaction that failed (no key for the delta head) was counted as done
    from datetime import timedelta

    secret = FileBackend(tmp_path, encryption=Encryption.single(K1, "k1"))
    states = _states("s", 8)
    for state in states:  # running, then completed: the last record is a delta
        await secret.save_state("s", state.model_copy(
            update={"status": "completed" if state is states[-1] else "running"}))
    assert (await secret.history("s"))[-1].kind == "delta"
    keyless = FileBackend(tmp_path)
    report = await keyless.prune(older_than=timedelta(0), history_only=True)
    assert report.compacted == [] and report.records_removed == 0
    assert "EncryptionError" in report.skipped["s"]
    assert len(await secret.history("s")) == 8
    assert (await keyless.prune(older_than=timedelta.max)).deleted == []  # was OverflowError


async def test_a_deleted_run_created_again_is_saved_as_deltas_again() -> None:
    from flujo.state import InMemoryBackend

    backend = InMemoryBackend()
    for state in _states("d", 6):
        await backend.save_state("d", state)
    await backend.delete_state("d")
    for state in _states("d", 4):
        await backend.save_state("d", state)
    assert "delta" in {c.kind for c in await backend.history("d")}


def test_fork_ids_and_earlier_errors() -> None:
    from flujo.state import ForkOrigin, fork_run_id, forked_state, validate_run_id

    long_id = "x" * 190
    assert validate_run_id(fork_run_id(long_id, "abcd1234")).endswith("-fork-abcd1234")
    assert len(fork_run_id(long_id, "abcd1234").encode()) <= 200
    earlier = WorkflowState.model_validate({"run_id": "e", "status": "failed",
                                            "error_message": "upstream step exploded"})
    assert earlier.error == "upstream step exploded"
    fork = forked_state(earlier, "f", ForkOrigin(run_id="e", revision=1))
    assert fork.error is None and fork.status == "running"


async def test_a_save_whose_fields_are_unchanged_writes_no_field_edits(tmp_path: Path) -> None:
    """The fields document's bytes equal to the last record's: the delta has no field
    edits, without parsing that record to compare; a change in place (the same list object,
    one item more) is still found."""
    from flujo.state._chain import delta_payload

    backend = SQLiteBackend(tmp_path / "state.db")
    context: dict[str, Any] = {"rows": [[1, "a"]], "n": 1, "text": "x" * 4000}
    states = [WorkflowState(run_id="u", pipeline_name="chains", current_step_index=i,
                            pipeline_context=context, step_history=[{"step": j}
                                                                    for j in range(i)])
              for i in range(3)]
    await backend.save_state("u", states[0])
    await backend.save_state("u", states[1])  # only the history grew
    chain = await backend._read_chain("u")
    assert chain is not None and [e.kind for e, _ in chain] == ["state", "delta"]
    assert chain[-1][0].payload["delta"]["fields"] != []  # current_step_index changed
    codec = backend.codec
    tip = backend._tip("u")
    assert tip is not None
    same = codec.encode_state(states[1], tip)
    short = delta_payload(tip, same.fields, same.history, 3, same.fields_json)
    full = delta_payload(tip, same.fields, same.history, 3)
    assert short == full and short.data["delta"]["fields"] == []
    context["rows"].append([2, "b"])  # in place: the tip's text still has one row
    changed = codec.encode_state(states[1], tip)
    edits = delta_payload(tip, changed.fields, changed.history, 3, changed.fields_json)
    assert edits == delta_payload(tip, changed.fields, changed.history, 3)
    assert edits.data["delta"]["fields"] != []
    await backend.save_state("u", states[1])
    loaded = await backend.load_record("u")
    assert loaded is not None and loaded.state.pipeline_context["rows"] == [[1, "a"], [2, "b"]]
