"""Regression tests for bugs the reliability campaign found in the state layer and runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from flujo.exceptions import CorruptStateError
from flujo.state import FileBackend, InMemoryBackend, SQLiteBackend
from flujo.state._jsonio import JSONError, dumps, loads

DEPTH = 100_000
# A 19-digit number sends the reader to the stdlib parser (exact big integers).
DEEP_WITH_LONG_NUMBER = b"[" * DEPTH + b"1234567890123456789" + b"]" * DEPTH


def _envelope(payload: bytes) -> bytes:
    return (b'{"format":"flujo.state","envelope_version":1,"run_id":"r","revision":1,'
            b'"state_version":1,"manifest":{},"pipeline_name":"","status":"running",'
            b'"created_at":"2024-01-01T00:00:00.000000+00:00",'
            b'"updated_at":"2024-01-01T00:00:00.000000+00:00","codec":"json","key_id":null,'
            b'"payload":' + payload + b"}")


def test_deeply_nested_json_with_a_long_number_is_a_json_error() -> None:
    # was: RecursionError escaped from the stdlib parser
    with pytest.raises(JSONError):
        loads(DEEP_WITH_LONG_NUMBER)


def test_deeply_nested_data_with_a_big_int_is_a_json_error() -> None:
    # was: RecursionError escaped from json.dumps (the fallback used for big integers)
    deep: list[object] = []
    for _ in range(DEPTH // 10):
        deep = [deep]
    with pytest.raises(JSONError):
        dumps([2**70, deep])  # orjson stops at the big int first


async def test_a_stored_record_nested_too_deeply_is_corrupt_not_a_crash(tmp_path: Path) -> None:
    raw = _envelope(DEEP_WITH_LONG_NUMBER)
    memory = InMemoryBackend()
    memory.put_raw("r", raw)  # was: RecursionError here already
    with pytest.raises(CorruptStateError, match="not valid JSON"):
        await memory.load_record("r")
    files = FileBackend(tmp_path / "files")
    (tmp_path / "files").mkdir(mode=0o700)  # a store a first write made (construction does not)
    (tmp_path / "files" / "r.json").write_bytes(raw)
    with pytest.raises(CorruptStateError, match="not valid JSON"):
        await files.load_record("r")
    database = SQLiteBackend(tmp_path / "state.db")
    await database.save_state("prepare", {"status": "running"})  # create the table
    import sqlite3

    with sqlite3.connect(tmp_path / "state.db") as conn:
        conn.execute(
            "INSERT INTO flujo_state VALUES ('r', 1, 'running', '', 1, "
            "'2024-01-01T00:00:00.000000+00:00', '2024-01-01T00:00:00.000000+00:00', ?)",
            (raw.decode(),))
    with pytest.raises(CorruptStateError, match="not valid JSON"):
        await database.load_record("r")


async def test_saving_over_a_revision_at_the_64_bit_limit_is_a_typed_error(
        tmp_path: Path) -> None:
    # was: OverflowError ("Python int too large to convert to SQLite INTEGER") from save_state
    import sqlite3

    from flujo.state import WorkflowState
    from flujo.state.backends.base import MAX_REVISION

    database = SQLiteBackend(tmp_path / "state.db")
    await database.save_state("r", WorkflowState(run_id="r", pipeline_context={"n": 1}))
    with sqlite3.connect(tmp_path / "state.db") as conn:
        conn.execute("UPDATE flujo_state SET revision = ?", (MAX_REVISION,))
    with pytest.raises(CorruptStateError, match="out of range"):
        await database.save_state("r", WorkflowState(run_id="r", pipeline_context={"n": 2}))
    record = await database.load_record("r")
    assert record is not None and record.state.pipeline_context == {"n": 1}
    files = FileBackend(tmp_path / "files")
    await files.save_state("r", WorkflowState(run_id="r"))
    path = files.file_for("r")
    path.write_bytes(path.read_bytes().replace(b'"revision":1', b'"revision":%d' % 2**70)
                     .replace(b'"base":1', b'"base":%d' % 2**70))
    with pytest.raises(CorruptStateError, match="out of range"):
        await files.save_state("r", WorkflowState(run_id="r"))


async def test_a_database_that_cannot_be_opened_leaks_no_file_descriptor(
        tmp_path: Path) -> None:
    # was: the connection was left open when its first statement failed, one file
    # descriptor per attempt until the garbage collector found it (a read-only or full
    # filesystem, a file that is not a database...)
    import gc
    import os

    from flujo.exceptions import BackendUnavailableError

    path = tmp_path / "not-a-database"
    path.write_bytes(b"garbage" * 1000)
    backend = SQLiteBackend(path)
    gc.disable()
    try:
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(50):
            with pytest.raises(BackendUnavailableError, match="not a database"):
                await backend.load_record("r")
        assert len(os.listdir("/proc/self/fd")) - before < 5
    finally:
        gc.enable()
