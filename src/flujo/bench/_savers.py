"""Saves and loads against LangGraph's checkpoint savers (``--savers``), on the same state.

Each contestant saves the same run state again and again (the run's next checkpoint) and
loads the latest one, in interleaved rounds; the figures are medians over the rounds.

* flujo: ``SQLiteBackend`` / ``PostgresBackend`` (``save_state`` / ``load_state``, async:
  their blocking work runs off the event loop).
* LangGraph: ``SqliteSaver`` / ``PostgresSaver`` (sync, called directly) and
  ``AsyncSqliteSaver`` / ``AsyncPostgresSaver`` (``aput`` / ``aget_tuple``), set up as
  LangGraph's documentation says (PostgreSQL: an autocommit connection, ``dict_row``,
  ``prepare_threshold=0``); the state is one channel holding the context.

Both sides keep history (every checkpoint stays readable) and commit durably (SQLite in WAL
mode with its default ``synchronous=FULL``; PostgreSQL with ``synchronous_commit`` as the
server has it). "types kept" says whether the loaded context equals the saved one with its
exact types (``flujo.bench.same``). LangGraph's savers are optional
(``pip install 'flujo[bench]'``); without them only flujo's rows are measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._workloads import build

__all__ = ["SaverRow", "bench_savers", "render_savers"]

#: The Python packages LangGraph's savers need (the ``bench`` extra).
LANGGRAPH = ("langgraph.checkpoint.sqlite", "langgraph.checkpoint.postgres", "aiosqlite")


@dataclass
class SaverRow:
    store: str
    state: str
    contestant: str
    saves_per_s: float
    loads_per_s: float
    types_kept: bool


@dataclass
class _Contestant:
    name: str
    save: Callable[[int], None]  # n saves
    load: Callable[[int], Any]  # n loads; returns the last context loaded
    close: Callable[[], None]


def _pg_dsn() -> str:
    return os.environ.get("FLUJO_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def langgraph_missing() -> str | None:
    """Why LangGraph's savers cannot be measured (None when they can)."""
    import importlib.util

    for name in LANGGRAPH:
        try:
            if importlib.util.find_spec(name) is None:
                return f"{name} is not installed (pip install 'flujo[bench]')"
        except ImportError as exc:
            return f"{name} cannot be imported: {exc}"
    return None


def _in_loop(loop: asyncio.AbstractEventLoop,
             one: Callable[[], Awaitable[Any]]) -> Callable[[int], Any]:
    """``n`` awaited calls of ``one`` in one run of the loop; the last result."""
    async def many(n: int) -> Any:
        result = None
        for _ in range(n):
            result = await one()
        return result

    return lambda n: loop.run_until_complete(many(n))


def _flujo(store: str, context: dict[str, Any], loop: asyncio.AbstractEventLoop,
           folder: Path, schema: str) -> _Contestant:
    from ..state import PostgresBackend, SQLiteBackend

    backend: Any = (SQLiteBackend(folder / "flujo.db") if store == "sqlite"
                    else PostgresBackend(_pg_dsn(), schema=schema))
    state = {"run_id": "bench", "pipeline_name": "bench", "pipeline_context": context}

    async def load() -> Any:
        loaded = await backend.load_state("bench")
        return loaded["pipeline_context"]

    return _Contestant(f"flujo {type(backend).__name__} (async)",
                       _in_loop(loop, lambda: backend.save_state("bench", state)),
                       _in_loop(loop, load),
                       lambda: loop.run_until_complete(backend.close()))


def _checkpoint(context: dict[str, Any], step: int) -> Any:
    from langgraph.checkpoint.base import empty_checkpoint

    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"context": context}
    checkpoint["channel_versions"] = {"context": step}
    return checkpoint


class _Thread:
    """A LangGraph thread's config, moved on by every put."""

    def __init__(self) -> None:
        self.config: Any = {"configurable": {"thread_id": "bench", "checkpoint_ns": ""}}
        self.step = 0

    def next(self) -> tuple[Any, Any, Any]:
        self.step += 1
        return self.config, {"source": "loop", "step": self.step}, {"context": self.step}


def _langgraph_sync(saver: Any, name: str, context: dict[str, Any],
                    close: Callable[[], None]) -> _Contestant:
    thread = _Thread()

    def save(n: int) -> None:
        for _ in range(n):
            config, metadata, versions = thread.next()
            thread.config = saver.put(config, _checkpoint(context, thread.step), metadata,
                                      versions)

    def load(n: int) -> Any:
        found: Any = None
        for _ in range(n):
            found = saver.get_tuple({"configurable": {"thread_id": "bench", "checkpoint_ns": ""}})
        return found.checkpoint["channel_values"]["context"]

    return _Contestant(name, save, load, close)


def _langgraph_async(saver: Any, name: str, context: dict[str, Any],
                     loop: asyncio.AbstractEventLoop,
                     close: Callable[[], None]) -> _Contestant:
    thread = _Thread()

    async def save() -> None:
        config, metadata, versions = thread.next()
        thread.config = await saver.aput(config, _checkpoint(context, thread.step), metadata,
                                         versions)

    async def load() -> Any:
        found = await saver.aget_tuple({"configurable": {"thread_id": "bench",
                                                         "checkpoint_ns": ""}})
        return found.checkpoint["channel_values"]["context"]

    return _Contestant(name, _in_loop(loop, save), _in_loop(loop, load), close)


def _langgraph(store: str, context: dict[str, Any], loop: asyncio.AbstractEventLoop,
               folder: Path, schema: str) -> list[_Contestant]:
    if store == "sqlite":
        import aiosqlite
        from langgraph.checkpoint.sqlite import SqliteSaver
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        conn = sqlite3.connect(folder / "langgraph.db", check_same_thread=False)
        saver = SqliteSaver(conn)
        saver.setup()
        async def opened_sqlite() -> tuple[Any, Any]:  # the saver takes the running loop
            conn = await aiosqlite.connect(folder / "langgraph-async.db")
            saver = AsyncSqliteSaver(conn)
            await saver.setup()
            return conn, saver

        aconn, asaver = loop.run_until_complete(opened_sqlite())
        return [_langgraph_sync(saver, "LangGraph SqliteSaver (sync)", context, conn.close),
                _langgraph_async(asaver, "LangGraph AsyncSqliteSaver", context, loop,
                                 lambda: loop.run_until_complete(aconn.close()))]
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row

    options: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0,
                               "row_factory": dict_row, "options": f"-c search_path={schema}"}
    pconn = psycopg.connect(_pg_dsn(), **options)
    psaver = PostgresSaver(pconn)
    psaver.setup()
    async def opened_postgres() -> tuple[Any, Any]:  # the saver takes the running loop
        conn = await psycopg.AsyncConnection.connect(_pg_dsn(), **options)
        saver = AsyncPostgresSaver(conn)
        await saver.setup()
        return conn, saver

    apconn, apsaver = loop.run_until_complete(opened_postgres())
    return [_langgraph_sync(psaver, "LangGraph PostgresSaver (sync)", context, pconn.close),
            _langgraph_async(apsaver, "LangGraph AsyncPostgresSaver", context, loop,
                             lambda: loop.run_until_complete(apconn.close()))]


@contextlib.contextmanager
def _schemas(store: str) -> Iterator[tuple[str, str]]:
    """Two fresh PostgreSQL schemas (flujo's, LangGraph's), dropped at the end."""
    names = (f"flujo_bench_{uuid.uuid4().hex[:10]}", f"lg_bench_{uuid.uuid4().hex[:10]}")
    if store != "postgres":
        yield names
        return
    import psycopg

    with psycopg.connect(_pg_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{names[1]}"')
    try:
        yield names
    finally:
        with psycopg.connect(_pg_dsn(), autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def bench_savers(stores: list[str], *, quick: bool) -> tuple[list[SaverRow], str | None]:
    """The rows, and why LangGraph's savers were left out (None when they were measured)."""
    from . import same

    missing = langgraph_missing()
    batch, rounds, target_s = (20, 3, 0.02) if quick else (200, 7, 0.2)
    rows: list[SaverRow] = []
    # LangGraph warns on every load of a class it has not been told about (the bench's own
    # models); that is its default, and the warnings would drown the report.
    logging.getLogger("langgraph").setLevel(logging.ERROR)
    for store in stores:
        for workload in ("small", "medium"):
            context = dict(build(workload, None if workload == "small" else
                                 (50 if quick else 1_000)).scratchpad)
            loop = asyncio.new_event_loop()
            with tempfile.TemporaryDirectory() as folder, _schemas(store) as (mine, theirs):
                contestants = [_flujo(store, context, loop, Path(folder), mine)]
                try:
                    if missing is None:
                        contestants += _langgraph(store, context, loop, Path(folder), theirs)
                    rows += _measure(store, workload, context, contestants, batch, rounds,
                                     target_s, same)
                finally:
                    for contestant in contestants:
                        contestant.close()
                    loop.close()
    return rows, missing


def _measure(store: str, workload: str, context: dict[str, Any],
             contestants: list[_Contestant], batch: int, rounds: int, target_s: float,
             same: Callable[[Any, Any], bool]) -> list[SaverRow]:
    """Median saves and loads per second; each round runs ``batch`` of each (fewer when
    one save and load of the slowest contestant would make a round longer than
    ``target_s``)."""
    saves: dict[str, list[float]] = {c.name: [] for c in contestants}
    loads: dict[str, list[float]] = {c.name: [] for c in contestants}
    kept = {}
    slowest = 0.0
    for contestant in contestants:  # warm up: the run exists, plans and statements are ready
        contestant.save(3)
        started = time.perf_counter()
        contestant.save(1)
        kept[contestant.name] = same(contestant.load(1), context)
        slowest = max(slowest, time.perf_counter() - started)
    batch = max(3, min(batch, round(target_s / slowest)))
    for _ in range(rounds):
        for contestant in contestants:
            started = time.perf_counter()
            contestant.save(batch)
            saves[contestant.name].append((time.perf_counter() - started) / batch)
            started = time.perf_counter()
            contestant.load(batch)
            loads[contestant.name].append((time.perf_counter() - started) / batch)
    return [SaverRow(store, workload, c.name, 1 / statistics.median(saves[c.name]),
                     1 / statistics.median(loads[c.name]), kept[c.name]) for c in contestants]


def render_savers(rows: list[SaverRow], missing: str | None) -> str:
    lines = ["### saves and loads against LangGraph's checkpoint savers", "",
             "| store | state | contestant | saves/s | loads/s | types kept |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r.store} | {r.state} | {r.contestant} | {r.saves_per_s:,.0f} |"
              f" {r.loads_per_s:,.0f} | {'yes' if r.types_kept else 'no'} |" for r in rows]
    if missing is not None:
        lines += ["", f"LangGraph's savers were not measured: {missing}."]
    return "\n".join(lines) + "\n"
