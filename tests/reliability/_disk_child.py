"""Child process of the disk tests: ``python _disk_child.py SCENARIO ROOT [VIEW]``.

The parent sets the stage: a small tmpfs at ROOT in a private mount namespace (``full``,
``readonly``), a file-size limit (``fsize``), or an unprivileged user (``chmod``). This
script saves a first state in a file store and a SQLite store under ROOT, breaks the
filesystem, tries to save (with the backends already open and with new ones), loads, repairs
the filesystem and checks that the first state is intact and that saving works again. It
prints one JSON object ``{step: outcome}``; an outcome is ``"ok: <value>"`` or
``"<ErrorType>: <message>"``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from flujo.state import FileBackend, SQLiteBackend, StateBackend, WorkflowState

KINDS = ("file", "sqlite")


def open_store(kind: str, root: Path) -> StateBackend:
    return FileBackend(root / "files") if kind == "file" else SQLiteBackend(root / "state.db")


def state(n: int, size: int = 0) -> WorkflowState:
    return WorkflowState(run_id="r", pipeline_name="disk",
                         pipeline_context={"n": n, "pad": "x" * size})


async def outcome(action: Callable[[], Awaitable[Any]]) -> str:
    try:
        return f"ok: {await action()}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


async def save(backend: StateBackend, n: int, size: int = 0) -> str:
    return await outcome(lambda: backend.save_state("r", state(n, size)))


async def load(backend: StateBackend) -> str:
    async def read() -> Any:
        record = await backend.load_record("r")
        return None if record is None else record.state.pipeline_context["n"]
    return await outcome(read)


async def claim(backend: StateBackend) -> str:
    async def hold() -> str:
        async with backend.claim("r"):
            return "claimed"
    return await outcome(hold)


def leftovers(root: Path) -> int:
    directory = root / "files"
    return sum(1 for p in directory.iterdir() if p.name.endswith(".tmp")) if directory.exists() \
        else 0


def integrity(root: Path) -> str:
    with sqlite3.connect(root / "state.db") as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


async def first_states(root: Path) -> dict[str, StateBackend]:
    stores = {kind: open_store(kind, root) for kind in KINDS}
    for backend in stores.values():
        await backend.save_state("r", state(1))
    return stores


async def check_recovered(root: Path, out: dict[str, str], n: int = 1) -> None:
    for kind in KINDS:
        fresh = open_store(kind, root)
        out[f"{kind}: load after repair"] = await load(fresh)
        out[f"{kind}: save after repair"] = await save(fresh, n + 10)
        out[f"{kind}: load final"] = await load(fresh)
        await fresh.close()
    out["file: temporary files left"] = f"ok: {leftovers(root)}"
    out["sqlite: integrity"] = f"ok: {integrity(root)}"


async def full(root: Path, out: dict[str, str]) -> None:
    stores = await first_states(root)
    sqlite_closed = open_store("sqlite", root / "closed")
    await sqlite_closed.save_state("r", state(1))
    await sqlite_closed.close()  # its -wal/-shm files are gone: reopening must create them
    filler = root / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for chunk in (65536, 4096, 512, 1):  # down to the last byte
            try:
                while True:
                    handle.write(b"\0" * chunk)
            except OSError as exc:
                out["fill"] = f"ok: {exc.strerror}"
    for kind, backend in stores.items():
        out[f"{kind}: save when full"] = await save(backend, 2, 300_000)
        out[f"{kind}: small save when full"] = await save(backend, 2, 0)
        out[f"{kind}: load when full"] = await load(backend)
        await backend.close()
        fresh = open_store(kind, root)
        out[f"{kind}: new backend, save when full"] = await save(fresh, 2, 300_000)
        out[f"{kind}: new backend, load when full"] = await load(fresh)
        await fresh.close()
    reopened = SQLiteBackend(root / "closed" / "state.db")
    out["sqlite (closed before): load when full"] = await load(reopened)
    await reopened.close()
    filler.unlink()
    await check_recovered(root, out)
    again = SQLiteBackend(root / "closed" / "state.db")
    out["sqlite (closed before): load after repair"] = await load(again)
    await again.close()


async def readonly(root: Path, view: Path, out: dict[str, str]) -> None:
    stores = await first_states(root)
    for backend in stores.values():
        await backend.close()
    subprocess.run(["mount", "--bind", str(root), str(view)], check=True)
    subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
    for kind in KINDS:
        try:
            backend = open_store(kind, view)
        except Exception as exc:
            out[f"{kind}: open read-only"] = f"{type(exc).__name__}: {exc}"
            continue
        out[f"{kind}: load read-only"] = await load(backend)
        out[f"{kind}: save read-only"] = await save(backend, 2)
        out[f"{kind}: claim read-only"] = await claim(backend)
        await backend.close()
    await check_recovered(root, out)


async def fsize(root: Path, out: dict[str, str]) -> None:
    stores = await first_states(root)
    for kind, backend in stores.items():
        out[f"{kind}: save over the size limit"] = await save(backend, 2, 2_000_000)
        out[f"{kind}: load after"] = await load(backend)
        out[f"{kind}: small save"] = await save(backend, 3)
        out[f"{kind}: load final"] = await load(backend)
        await backend.close()
    out["file: temporary files left"] = f"ok: {leftovers(root)}"
    out["sqlite: integrity"] = f"ok: {integrity(root)}"


async def chmod(root: Path, out: dict[str, str]) -> None:
    # the parent created the stores and made ROOT and everything in it read-only
    for kind in KINDS:
        backend = open_store(kind, root)
        out[f"{kind}: load read-only"] = await load(backend)
        out[f"{kind}: save read-only"] = await save(backend, 2)
        out[f"{kind}: claim read-only"] = await claim(backend)
        await backend.close()


async def main() -> None:
    scenario, root = sys.argv[1], Path(sys.argv[2])
    out: dict[str, str] = {}
    if scenario == "prepare":
        for backend in (await first_states(root)).values():
            await backend.close()
    elif scenario == "full":
        await full(root, out)
    elif scenario == "readonly":
        await readonly(root, Path(sys.argv[3]), out)
    elif scenario == "fsize":
        await fsize(root, out)
    elif scenario == "chmod":
        await chmod(root, out)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    print(json.dumps(out))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
