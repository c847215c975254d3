"""The SQLite backend's connections: one per thread and use (a *slot*), reused, since
opening one costs more than a save.

Closing a connection while another thread runs a statement on it crashes the interpreter,
so ``close_all`` closes only the idle ones at once; a connection in use is closed by the
last call using it. A connection whose thread has ended (the worker threads of an event
loop that ``asyncio.run`` shut down, say) is closed when this process next opens one, so a
backend used from ever new threads does not keep a file descriptor per thread.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable

__all__ = ["Connections"]


class _Entry:
    """An open connection: how many calls are using it (reads nest), and the thread and
    process it was opened by."""

    __slots__ = ("owner", "pid", "users")

    def __init__(self, owner: threading.Thread) -> None:
        self.users = 1
        self.owner = owner
        self.pid = os.getpid()


class Connections:
    """The connections of one backend. ``local`` is this thread's: its connection in each
    slot (with the pid that opened it: a forked child opens its own) and the deadline of
    the statement it runs (read by the backend's progress handler)."""

    def __init__(self) -> None:
        self.local = threading.local()
        self._lock = threading.Lock()
        self._open: dict[sqlite3.Connection, _Entry] = {}
        # Connections close_all() found in use: how many calls still use each.
        self._closing: dict[sqlite3.Connection, int] = {}
        self._closes = 0  # close_all() calls so far

    def take(self, slot: str,
             connect: Callable[[str], sqlite3.Connection]) -> sqlite3.Connection:
        """This thread's connection in ``slot``, counted in use until ``give_back``: a new one
        (``connect(slot)``) when the thread has none, or one inherited by fork, or one
        ``close_all`` took."""
        local = self.local
        conn: sqlite3.Connection | None = getattr(local, slot, None)
        if conn is not None and getattr(local, f"{slot}_pid", None) == os.getpid():
            with self._lock:
                entry = self._open.get(conn)
                if entry is not None:
                    entry.users += 1
                    return conn
        with self._lock:
            closes = self._closes
            ended = self._pop_idle_of_ended_threads()
        for old in ended:
            old.close()
        conn = connect(slot)
        setattr(local, slot, conn)
        setattr(local, f"{slot}_pid", os.getpid())
        with self._lock:
            if self._closes == closes:
                self._open[conn] = _Entry(threading.current_thread())
            else:  # close_all() ran while it opened: it is closed after this call
                self._closing[conn] = 1
        return conn

    def give_back(self, conn: sqlite3.Connection) -> None:
        """The end of a call's use of ``conn`` (taken by ``take``)."""
        with self._lock:
            entry = self._open.get(conn)
            if entry is not None:
                entry.users -= 1
                return
            users = self._closing.pop(conn, None)
            if users is None:  # discarded
                return
            if users > 1:
                self._closing[conn] = users - 1
                return
        conn.close()  # the last call using a connection close_all() found in use

    def discard(self, conn: sqlite3.Connection) -> None:
        """Close ``conn`` now (it failed; it is not reused): only the thread using it may."""
        local = self.local
        for name, value in list(vars(local).items()):
            if value is conn:
                setattr(local, name, None)
        with self._lock:
            self._open.pop(conn, None)
            self._closing.pop(conn, None)
        conn.close()

    def close_all(self) -> None:
        """Close every connection: the idle ones now, those in use when their last call
        ends. The next call of each thread opens a new one."""
        with self._lock:
            self._closes += 1
            idle = [conn for conn, entry in self._open.items() if not entry.users]
            self._closing.update(
                (conn, entry.users) for conn, entry in self._open.items() if entry.users)
            self._open = {}
        for conn in idle:
            conn.close()

    def open_count(self) -> int:
        """How many connections are open (in use or not)."""
        with self._lock:
            return len(self._open) + len(self._closing)

    def _pop_idle_of_ended_threads(self) -> list[sqlite3.Connection]:
        """(Under the lock.) Remove and return the idle connections this process opened
        on threads that have ended. Those a parent process opened are left alone: a forked
        child does not close what its parent uses."""
        pid = os.getpid()
        ended = [conn for conn, entry in self._open.items()
                 if not entry.users and entry.pid == pid and not entry.owner.is_alive()]
        for conn in ended:
            del self._open[conn]
        return ended
