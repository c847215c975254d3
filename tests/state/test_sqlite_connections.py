"""The SQLite backend's connection bookkeeping (``_sqlite_connections.Connections``)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from flujo.state.backends._sqlite_connections import Connections


def _connector(path: Path, opened: list[sqlite3.Connection]):  # type: ignore[no-untyped-def]
    def connect(slot: str) -> sqlite3.Connection:
        conn = sqlite3.connect(path / f"{slot}.db", check_same_thread=False)
        opened.append(conn)
        return conn

    return connect


def _is_closed(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def test_a_thread_reuses_its_connection_per_slot_and_nested_uses_count(tmp_path: Path) -> None:
    conns, opened = Connections(), []
    connect = _connector(tmp_path, opened)
    one = conns.take("conn", connect)
    assert conns.take("conn", connect) is one  # nested in the same thread
    other = conns.take("inline", connect)
    assert other is not one and opened == [one, other]
    conns.give_back(one)
    conns.close_all()  # ``one`` still has a user, ``other`` too
    assert not _is_closed(one) and not _is_closed(other)
    conns.give_back(other)
    assert _is_closed(other) and not _is_closed(one)
    conns.give_back(one)
    assert _is_closed(one) and conns.open_count() == 0
    again = conns.take("conn", connect)  # a new one after close_all
    assert again is not one
    conns.give_back(again)
    conns.close_all()
    assert _is_closed(again)


def test_a_connection_opened_while_close_all_runs_is_closed_after_its_call(
        tmp_path: Path) -> None:
    conns, opened = Connections(), []
    connect = _connector(tmp_path, opened)

    def connect_during_close(slot: str) -> sqlite3.Connection:
        conn = connect(slot)
        conns.close_all()  # another thread closes the backend meanwhile
        return conn

    conn = conns.take("conn", connect_during_close)
    conn.execute("SELECT 1")  # usable for this call
    conns.give_back(conn)
    assert _is_closed(conn) and conns.open_count() == 0


def test_discard_closes_at_once_and_the_thread_gets_a_new_one(tmp_path: Path) -> None:
    conns, opened = Connections(), []
    connect = _connector(tmp_path, opened)
    conn = conns.take("conn", connect)
    conns.discard(conn)
    conns.give_back(conn)  # the call's end after a discard: nothing more to do
    assert _is_closed(conn) and conns.open_count() == 0
    fresh = conns.take("conn", connect)
    assert fresh is not conn
    conns.give_back(fresh)


def test_idle_connections_of_ended_threads_are_closed_when_one_is_opened(
        tmp_path: Path) -> None:
    conns, opened = Connections(), []
    connect = _connector(tmp_path, opened)
    held = threading.Event()
    release = threading.Event()

    def use(hold: bool) -> None:
        conn = conns.take("conn", connect)
        if hold:
            held.set()
            release.wait()
        conns.give_back(conn)

    ended = threading.Thread(target=use, args=(False,))
    ended.start()
    ended.join()
    busy = threading.Thread(target=use, args=(True,))
    busy.start()
    held.wait()
    mine = conns.take("conn", connect)  # opening it sweeps the ended thread's
    assert _is_closed(opened[0]) and not _is_closed(opened[1])
    assert conns.open_count() == 2
    release.set()
    busy.join()
    conns.give_back(mine)
    conns.close_all()
    assert all(_is_closed(conn) for conn in opened)


@pytest.mark.parametrize("slot", ["conn", "inline"])
def test_a_fork_inherited_connection_is_not_reused(tmp_path: Path, slot: str) -> None:
    conns, opened = Connections(), []
    conn = conns.take(slot, _connector(tmp_path, opened))
    conns.give_back(conn)
    setattr(conns.local, f"{slot}_pid", -1)  # as seen from a forked child
    fresh = conns.take(slot, _connector(tmp_path, opened))
    assert fresh is not conn and not _is_closed(conn)  # the parent's is left alone
    conns.give_back(fresh)
    conns.close_all()
