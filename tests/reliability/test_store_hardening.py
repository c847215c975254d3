"""Regression tests for issue 14: a hostile store directory cannot make flujo write outside
it, follow a planted link, block on a FIFO or load an unbounded file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flujo.exceptions import BackendUnavailableError, CorruptStateError
from flujo.state import FileBackend, SQLiteBackend

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file semantics")

STATE = {"pipeline_context": {"n": 1}, "current_step_index": 0, "status": "running"}


def finishes(call: Callable[[], Any], seconds: float = 10.0) -> Any:
    """``call()``'s result or exception, failing the test if it has not returned in time
    (a FIFO read would block forever)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{call} did not return within {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def run(coro: Any) -> Any:
    return finishes(lambda: asyncio.run(coro))


def written_store(store: Path, **options: Any) -> FileBackend:
    """A file backend whose store a first write has created (constructing creates nothing):
    the directory and its .locks folder exist."""
    backend = FileBackend(store, **options)
    run(backend.save_state("seed", STATE))
    run(backend.delete_state("seed"))
    return backend


# -- links out of the store: never followed, never created or deleted through -------------


def test_a_planted_write_lock_link_creates_nothing_outside(tmp_path: Path) -> None:
    store, outside = tmp_path / "store", tmp_path / "outside"
    outside.mkdir()
    backend = written_store(store)
    (store / ".locks" / "r1.write").symlink_to(outside / "x")
    with pytest.raises(BackendUnavailableError, match="symbolic link"):
        run(backend.save_state("r1", STATE))
    assert not (outside / "x").exists()
    assert not (store / "r1.json").exists()


def test_a_locks_folder_that_is_a_link_is_refused_and_the_victim_kept(tmp_path: Path) -> None:
    store, victim = tmp_path / "store", tmp_path / "victim"
    victim.mkdir()
    (victim / "r1.write").write_text("keep me")
    store.mkdir()
    (store / ".locks").symlink_to(victim)
    backend = FileBackend(store)  # constructing touches nothing; the first write refuses
    with pytest.raises(BackendUnavailableError, match=r"\.locks is a symbolic link"):
        run(backend.save_state("r1", STATE))
    assert (victim / "r1.write").read_text() == "keep me"


def test_a_locks_folder_swapped_for_a_link_after_opening_is_refused(tmp_path: Path) -> None:
    store, victim = tmp_path / "store", tmp_path / "victim"
    victim.mkdir()
    (victim / "r1.write").write_text("keep me")
    (victim / "r1.claim").write_text("keep me")
    backend = written_store(store)
    os.rmdir(store / ".locks")
    (store / ".locks").symlink_to(victim)
    for attempt in (lambda: run(backend.save_state("r1", STATE)),
                    lambda: run(backend.delete_state("r1")),
                    lambda: run(_claim(backend, "r1"))):
        with pytest.raises(BackendUnavailableError, match="symbolic link"):
            attempt()
    assert sorted(p.name for p in victim.iterdir()) == ["r1.claim", "r1.write"]
    assert (victim / "r1.write").read_text() == "keep me"


async def _claim(backend: Any, run_id: str) -> None:
    async with backend.claim(run_id):
        pass


def test_sqlite_claims_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "r1.claim").write_text("keep me")
    backend = SQLiteBackend(tmp_path / "state.db")
    (tmp_path / "state.db.claims").symlink_to(victim)
    with pytest.raises(BackendUnavailableError, match="symbolic link"):
        run(_claim(backend, "r1"))
    assert (victim / "r1.claim").read_text() == "keep me"


def test_a_claim_lock_file_that_is_a_link_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    backend = written_store(tmp_path / "store")
    (tmp_path / "store" / ".locks" / "r1.claim").symlink_to(outside)
    with pytest.raises(BackendUnavailableError, match="symbolic link"):
        run(_claim(backend, "r1"))
    assert not outside.exists()


def test_a_record_that_is_a_link_is_refused_not_followed(tmp_path: Path) -> None:
    store = tmp_path / "store"
    backend = FileBackend(store)
    run(backend.save_state("real", STATE))
    (store / "r1.json").symlink_to("/dev/zero")
    (store / "r2.json").symlink_to(store / "real.json")  # a link inside the store too
    for run_id in ("r1", "r2"):
        with pytest.raises(CorruptStateError, match="symbolic link"):
            run(backend.load_record(run_id))
    with pytest.raises(CorruptStateError, match="symbolic link"):
        run(backend.list_runs())


def test_saving_over_a_record_link_refuses_and_keeps_its_target(tmp_path: Path) -> None:
    store, target = tmp_path / "store", tmp_path / "target.json"
    target.write_text("outside")
    backend = written_store(store)
    (store / "r1.json").symlink_to(target)
    with pytest.raises(CorruptStateError, match="symbolic link"):
        run(backend.save_state("r1", STATE))
    assert target.read_text() == "outside"


def test_deleting_a_record_link_removes_the_link_only(tmp_path: Path) -> None:
    store, target = tmp_path / "store", tmp_path / "target.json"
    target.write_text("outside")
    backend = written_store(store)
    (store / "r1.json").symlink_to(target)
    run(backend.delete_state("r1"))
    assert not os.path.lexists(store / "r1.json")
    assert target.read_text() == "outside"


# -- things that are not records: refused before reading ---------------------------------


def test_a_fifo_record_is_refused_without_blocking(tmp_path: Path) -> None:
    store = tmp_path / "store"
    backend = written_store(store)
    os.mkfifo(store / "r1.json")
    with pytest.raises(CorruptStateError, match="FIFO"):
        run(backend.load_record("r1"))
    with pytest.raises(CorruptStateError, match="FIFO"):
        run(backend.list_runs())
    with pytest.raises(CorruptStateError, match="FIFO"):
        run(backend.save_state("r1", STATE))
    assert stat.S_ISFIFO(os.lstat(store / "r1.json").st_mode)  # left as it was


def test_a_huge_sparse_record_is_refused_before_reading(tmp_path: Path) -> None:
    store = tmp_path / "store"
    backend = written_store(store, max_payload_bytes=1024 * 1024)
    with open(store / "r1.json", "wb") as handle:
        handle.truncate(8 * 1024**3)  # 8 GiB, no blocks on disk
    with pytest.raises(CorruptStateError, match="over this store's limit") as caught:
        run(backend.load_record("r1"))
    assert "r1.json" in str(caught.value)


def test_the_record_size_limit_follows_max_payload_bytes(tmp_path: Path) -> None:
    small = FileBackend(tmp_path / "store", max_payload_bytes=10_000)
    run(small.save_state("r1", {**STATE, "pipeline_context": {"text": "x" * 9_000}}))
    assert run(small.load_record("r1")) is not None  # what a store writes, it reads
    (tmp_path / "store" / "r2.json").write_bytes(b" " * (small.codec.max_record_bytes + 1))
    with pytest.raises(CorruptStateError, match="over this store's limit"):
        run(small.load_record("r2"))


# -- odd names and modes ----------------------------------------------------------------


@pytest.mark.parametrize("name", [
    ".r1.json.99999999999999999999.x.tmp",  # a pid beyond a C int (was OverflowError)
    ".r1.json.0.x.tmp", ".r1.json.-5.x.tmp", ".tmp", "..tmp", ".a.b.c.tmp",
])
def test_odd_temporary_file_names_do_not_stop_the_backend(tmp_path: Path, name: str) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / name).write_bytes(b"x")
    old = os.stat(store / name).st_mtime - 3600
    os.utime(store / name, (old, old))
    backend = FileBackend(store)
    assert backend.remove_stale_temp_files() == []
    assert (store / name).exists()


def test_stale_temporary_links_and_folders_are_left_alone(tmp_path: Path) -> None:
    store, target = tmp_path / "store", tmp_path / "target"
    target.write_text("outside")
    store.mkdir()
    dead = 2**22 + 12345  # above Linux's pid_max: no such process
    (store / f".r1.json.{dead}.abc.tmp").symlink_to(target)
    (store / f".r2.json.{dead}.abc.tmp").mkdir()
    os.utime(store / f".r2.json.{dead}.abc.tmp", (0, 0))
    written_store(store)  # the first write tidies what killed writers left: not these
    assert os.path.lexists(store / f".r1.json.{dead}.abc.tmp")
    assert (store / f".r2.json.{dead}.abc.tmp").is_dir()
    assert target.read_text() == "outside"


def test_store_folders_are_created_for_their_owner_only(tmp_path: Path) -> None:
    store = tmp_path / "store"
    written_store(store)
    SQLiteBackend(tmp_path / "db" / "state.db")
    run(_claim(SQLiteBackend(tmp_path / "db" / "state.db"), "r1"))
    for folder in (store, store / ".locks", tmp_path / "db" / "state.db.claims"):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root to give a folder to another user")
def test_a_store_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    written_store(store)
    backend = FileBackend(store, fsync=False)
    os.chown(store / ".locks", 65534, 65534)
    with pytest.raises(BackendUnavailableError, match="belongs to user id 65534, not to the"):
        run(backend.save_state("r1", STATE))
    with pytest.raises(BackendUnavailableError, match="belongs to user id 65534, not to the"):
        run(FileBackend(store).save_state("r1", STATE))
    os.chown(store, 65534, 65534)  # now the store's: its .locks is used again
    run(backend.save_state("r1", STATE))



# -- SQLite: reads never write, a hostile schema is refused, statements are bounded ---------


def _other_application_db(path: Path) -> bytes:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
        conn.execute("INSERT INTO orders (item) VALUES ('book')")
    conn.close()
    return path.read_bytes()


def test_reading_another_applications_database_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    before = _other_application_db(path)
    backend = SQLiteBackend(path)
    assert run(backend.load_state("r1")) is None
    assert run(backend.list_runs()) == []
    assert run(backend.list_run_ids()) == []
    run(backend.close())
    assert path.read_bytes() == before  # no flujo table, no switch to WAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]


def test_reading_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "nothing" / "state.db")
    assert run(backend.load_state("r1")) is None
    assert run(backend.list_runs()) == []
    assert list(tmp_path.iterdir()) == []


def test_a_fresh_reader_loads_while_another_process_holds_the_write_lock(
        tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    run(SQLiteBackend(path).save_state("r1", STATE))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, held
    try:
        reader = SQLiteBackend(path, busy_timeout=30)
        record = finishes(lambda: asyncio.run(reader.load_record("r1")), seconds=5)
        assert record is not None and record.state.pipeline_context == {"n": 1}
    finally:
        holder.execute("ROLLBACK")
        holder.close()


HOSTILE_SCHEMAS = {
    "recursive trigger": "CREATE TRIGGER spin BEFORE UPDATE ON flujo_state BEGIN"
                         " UPDATE flujo_state SET revision = revision + 1; END",
    "insert trigger": "CREATE TRIGGER copy AFTER INSERT ON flujo_state BEGIN"
                      " DELETE FROM flujo_state; END",
    "view in place of the table": "DROP TABLE flujo_state; CREATE VIEW flujo_state AS"
                                  " WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1"
                                  " FROM c) SELECT x AS run_id, x AS envelope FROM c",
    "versions view": "DROP TABLE flujo_schema_versions; CREATE VIEW flujo_schema_versions"
                     " AS SELECT 'flujo_state' AS component, 1 AS version",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_SCHEMAS))
def test_a_database_with_objects_flujo_did_not_create_is_refused(
        tmp_path: Path, name: str) -> None:
    path = tmp_path / "state.db"
    run(SQLiteBackend(path).save_state("r1", STATE))
    with sqlite3.connect(path) as conn:
        conn.executescript(HOSTILE_SCHEMAS[name])
    conn.close()
    before = _dump(path)
    for attempt in (lambda b: b.load_state("r1"), lambda b: b.list_runs(),
                    lambda b: b.save_state("r1", STATE)):
        backend = SQLiteBackend(path)
        with pytest.raises(BackendUnavailableError, match="flujo's names"):
            run(attempt(backend))
        run(backend.close())
    assert _dump(path) == before


def _dump(path: Path) -> list[str]:
    """The database's content and schema (its file may be checkpointed, not changed)."""
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
        return list(conn.iterdump())


def test_a_statement_running_past_statement_timeout_is_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    backend = SQLiteBackend(path, statement_timeout=0.3)
    run(backend.save_state("r1", STATE))

    def connect_then_update() -> None:
        with backend._connection():  # this thread's connection: the schema is checked now
            pass
        with sqlite3.connect(path) as other:  # a trigger that never ends, added afterwards
            other.execute("CREATE TRIGGER spin BEFORE UPDATE ON flujo_state BEGIN SELECT"
                          " count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT"
                          " x + 1 FROM c) SELECT x FROM c); END")
        other.close()
        with backend._connection() as conn:
            conn.execute("UPDATE flujo_state SET revision = 2")

    with pytest.raises(BackendUnavailableError, match=r"statement_timeout=0\.3"):
        finishes(connect_then_update)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER spin")
    conn.close()
    record = run(SQLiteBackend(path).load_record("r1"))
    assert record is not None and record.revision == 1
