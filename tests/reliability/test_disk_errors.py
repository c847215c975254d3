"""Full disks and read-only stores: a clear error, the previous state intact, then recovery.

Four ways of making the filesystem refuse, from the most real to the most systematic:

* a 2 MiB tmpfs filled to the last byte, and a read-only bind mount of a store, each in a
  private mount namespace (``unshare -m``; skipped where it is not allowed);
* ``RLIMIT_FSIZE`` in a child process (the kernel fails writes with ``EFBIG``);
* a read-only directory (``chmod``) for an unprivileged child (as root, ``chmod`` would not
  stop writes, so a root test run drops to ``nobody`` in the child);
* ``FileBackend``'s write path with each system call failing in turn (``ENOSPC``,
  ``EDQUOT``, ``EROFS``, ``EIO``, ``EACCES``), in process.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import flujo
from flujo.exceptions import BackendUnavailableError
from flujo.state import FileBackend, SQLiteBackend, WorkflowState
from flujo.state.backends import _flock
from flujo.state.backends import file as file_module
from flujo.state.backends import sqlite as sqlite_module

CHILD = Path(__file__).with_name("_disk_child.py")
SRC = str(Path(flujo.__file__).resolve().parent.parent)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run(command: list[str], **kwargs: Any) -> dict[str, str]:
    proc = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120,
                          env=_env(), **kwargs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _ok(outcomes: dict[str, str], key: str, value: str) -> None:
    assert outcomes[key] == f"ok: {value}", (key, outcomes)


def _refused(outcomes: dict[str, str], key: str, *reasons: str) -> None:
    text = outcomes[key]
    assert text.startswith("BackendUnavailableError: "), (key, outcomes)
    assert any(reason in text for reason in reasons), (key, text)


# -- real filesystems, in a private mount namespace -------------------------------------------

def _namespace_prefix(tmp_path: Path) -> list[str]:
    """How to run a command in a new mount namespace where tmpfs can be mounted, or skip."""
    unshare = shutil.which("unshare")
    if unshare is None or sys.platform != "linux":
        pytest.skip("needs Linux unshare(1)")
    probe = tmp_path / "probe"
    probe.mkdir()
    for prefix in ([unshare, "-m"], [unshare, "-Urm"]):
        check = subprocess.run([*prefix, "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe}"],
                               check=False, capture_output=True, timeout=30)
        if check.returncode == 0:
            return prefix
    pytest.skip("cannot mount a tmpfs in a private mount namespace here")


@pytest.mark.slow
def test_a_full_filesystem(tmp_path: Path) -> None:
    prefix = _namespace_prefix(tmp_path)
    mount = tmp_path / "small"
    mount.mkdir()
    outcomes = _run([*prefix, "sh", "-c",
                     f'mount -t tmpfs -o size=2m tmpfs "{mount}" && exec "{sys.executable}" '
                     f'"{CHILD}" full "{mount}"'])
    _ok(outcomes, "fill", "No space left on device")
    for key in ("file: save when full", "file: small save when full",
                "file: new backend, save when full"):
        _refused(outcomes, key, "No space left on device")
    for key in ("sqlite: save when full", "sqlite: new backend, save when full"):
        _refused(outcomes, key, "database or disk is full", "no space left")
    # reading never needs space: the state the last successful save wrote is there
    _ok(outcomes, "file: load when full", "1")
    _ok(outcomes, "file: new backend, load when full", "1")
    sqlite_state = outcomes["sqlite: load when full"]  # "2" if the small save still fitted
    assert sqlite_state in ("ok: 1", "ok: 2"), outcomes
    assert outcomes["sqlite: new backend, load when full"] == sqlite_state, outcomes
    # a database whose -wal/-shm files were removed on close may not reopen on a full disk:
    # then the error must say why
    closed = outcomes["sqlite (closed before): load when full"]
    if closed != "ok: 1":
        _refused(outcomes, "sqlite (closed before): load when full", "no space left")
    # once space is back: the previous state, then new saves
    _ok(outcomes, "file: load after repair", "1")
    assert outcomes["sqlite: load after repair"] == sqlite_state, outcomes
    _ok(outcomes, "sqlite (closed before): load after repair", "1")
    for kind in ("file", "sqlite"):
        _ok(outcomes, f"{kind}: load final", "11")
    _ok(outcomes, "file: temporary files left", "0")
    _ok(outcomes, "sqlite: integrity", "ok")


@pytest.mark.slow
def test_a_read_only_filesystem(tmp_path: Path) -> None:
    prefix = _namespace_prefix(tmp_path)
    mount, view = tmp_path / "store", tmp_path / "view"
    mount.mkdir()
    view.mkdir()
    outcomes = _run([*prefix, "sh", "-c",
                     f'mount -t tmpfs -o size=4m tmpfs "{mount}" && exec "{sys.executable}" '
                     f'"{CHILD}" readonly "{mount}" "{view}"'])
    _ok(outcomes, "file: load read-only", "1")
    _refused(outcomes, "file: save read-only", "Read-only file system")
    _refused(outcomes, "file: claim read-only", "Read-only file system")
    # SQLite cannot open a WAL database where it cannot create the -shm file: it says so
    if outcomes["sqlite: load read-only"] != "ok: 1":
        _refused(outcomes, "sqlite: load read-only", "read-only")
    _refused(outcomes, "sqlite: save read-only", "read-only")
    _refused(outcomes, "sqlite: claim read-only", "Read-only file system")
    for kind in ("file", "sqlite"):
        _ok(outcomes, f"{kind}: load after repair", "1")
        _ok(outcomes, f"{kind}: load final", "11")
    _ok(outcomes, "sqlite: integrity", "ok")


# -- RLIMIT_FSIZE: the kernel refuses to grow a file past a size ----------------------------

def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


@pytest.mark.slow
def test_a_file_size_limit(tmp_path: Path) -> None:
    outcomes = _run([sys.executable, str(CHILD), "fsize", str(tmp_path)],
                    preexec_fn=_limit_file_size)
    _refused(outcomes, "file: save over the size limit", "File too large")
    _refused(outcomes, "sqlite: save over the size limit", "RLIMIT_FSIZE")
    for kind in ("file", "sqlite"):
        _ok(outcomes, f"{kind}: load after", "1")
        _ok(outcomes, f"{kind}: small save", "2")
        _ok(outcomes, f"{kind}: load final", "3")
    _ok(outcomes, "file: temporary files left", "0")
    _ok(outcomes, "sqlite: integrity", "ok")


# -- chmod: a read-only directory for an unprivileged process --------------------------------

def _forked_as_nobody(root: Path) -> dict[str, str]:
    """Run the chmod scenario in a forked child that dropped root (the interpreter of the
    test run may not be executable by nobody, so no new process is started)."""
    import _disk_child

    warm = root.parent / "warm-up"  # import, as root, everything the child will need
    async def warm_up() -> None:
        for backend in (await _disk_child.first_states(warm)).values():
            await backend.close()
        await _disk_child.chmod(warm, {})

    asyncio.run(warm_up())
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            out: dict[str, str] = {}
            asyncio.run(_disk_child.chmod(root, out))
            os.write(write_end, json.dumps(out).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert status == 0, f"the child failed: status {status}"
    result: dict[str, str] = json.loads(b"".join(chunks))
    return result


@pytest.mark.slow
def test_a_read_only_directory() -> None:
    # not under tmp_path: pytest's base directory is private to its owner, and the child may
    # run as nobody
    base = Path(tempfile.mkdtemp(prefix="flujo-ro-"))
    try:
        _read_only_directory(base)
    finally:
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(base)


def _read_only_directory(base: Path) -> None:
    root = base / "store"
    root.mkdir()
    _run([sys.executable, str(CHILD), "prepare", str(root)])
    for path in [root, *root.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    base.chmod(0o755)
    if os.geteuid() == 0:  # root ignores permissions: fork a child that becomes nobody
        for parent in base.parents:
            if parent.stat().st_mode & 0o001 == 0:
                pytest.skip(f"{parent} is not searchable by nobody")
        outcomes = _forked_as_nobody(root)
    else:
        outcomes = _run([sys.executable, str(CHILD), "chmod", str(root)])
    _ok(outcomes, "file: load read-only", "1")
    _refused(outcomes, "file: save read-only", "Permission denied")
    _refused(outcomes, "file: claim read-only", "Permission denied")
    if outcomes["sqlite: load read-only"] != "ok: 1":
        _refused(outcomes, "sqlite: load read-only", "not writable", "readonly", "read-only")
    _refused(outcomes, "sqlite: save read-only", "not writable", "readonly", "read-only")


# -- every system call of FileBackend's write path failing in turn ----------------------------

ERRNOS = [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES]
POINTS = ["lock file", "temporary file", "write", "fsync", "rename", "directory fsync"]


def _fail(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@pytest.fixture
def inject(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, int], None]]:
    def arm(point: str, code: int) -> None:
        real_open, real_fsync, real_replace = os.open, os.fsync, os.replace
        fsyncs = [0]

        def fake_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            name = os.fspath(path)
            if (point == "lock file" and str(name).endswith(".write")) or (
                    point == "temporary file" and str(name).endswith(".tmp")):
                raise _fail(code)
            return real_open(path, flags, *args, **kwargs)

        def fake_fsync(fd: int) -> None:
            fsyncs[0] += 1
            if (point == "fsync" and fsyncs[0] == 1) or (
                    point == "directory fsync" and fsyncs[0] == 2):
                raise _fail(code)
            real_fsync(fd)

        def fake_replace(src: Any, dst: Any, **kwargs: Any) -> None:
            if point == "rename":
                raise _fail(code)
            real_replace(src, dst, **kwargs)

        class FailingFile:
            def __init__(self, fd: int, mode: str) -> None:
                self._file = open(fd, mode)  # noqa: SIM115 - closed by __exit__

            def write(self, data: bytes) -> int:
                raise _fail(code)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._file, name)

            def __enter__(self) -> FailingFile:
                return self

            def __exit__(self, *exc: object) -> None:
                self._file.close()

        monkeypatch.setattr(_flock.os, "open", fake_open)
        monkeypatch.setattr(file_module.os, "fsync", fake_fsync)
        monkeypatch.setattr(file_module.os, "replace", fake_replace)
        if point == "write":
            monkeypatch.setattr(file_module, "open", FailingFile, raising=False)

    yield arm


@pytest.mark.parametrize("code", ERRNOS, ids=[errno.errorcode[c] for c in ERRNOS])
@pytest.mark.parametrize("point", POINTS)
async def test_file_backend_when_a_system_call_fails(
        point: str, code: int, tmp_path: Path, inject: Callable[[str, int], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    backend = FileBackend(tmp_path / "files")
    await backend.save_state("r", WorkflowState(run_id="r", pipeline_context={"n": 1}))
    before = backend.file_for("r").read_bytes()
    inject(point, code)
    with pytest.raises(BackendUnavailableError) as caught:
        await backend.save_state("r", WorkflowState(run_id="r", pipeline_context={"n": 2}))
    assert os.strerror(code) in str(caught.value)
    monkeypatch.undo()
    record = await backend.load_record("r")
    assert record is not None
    if point == "directory fsync":
        # the new record was already in place; only its durability against power loss is
        # unknown: the save reports failure, the record is the old one or the new one
        assert record.state.pipeline_context["n"] in (1, 2)
    else:
        assert backend.file_for("r").read_bytes() == before
        assert record.state.pipeline_context == {"n": 1}
    assert not [p for p in (tmp_path / "files").iterdir() if p.name.endswith(".tmp")]
    await backend.save_state("r", WorkflowState(run_id="r", pipeline_context={"n": 3}))
    again = await backend.load_record("r")
    assert again is not None and again.state.pipeline_context == {"n": 3}


# -- the SQLite errors say why (regression) ----------------------------------------------------

class _Stats:
    def __init__(self, flag: int, free: int) -> None:
        self.f_flag, self.f_bfree, self.f_bavail = flag, free, free


@pytest.mark.parametrize(("flag", "free", "says"), [
    (os.ST_RDONLY, 100, "is read-only"), (0, 0, "no space left"), (0, 100, "")])
async def test_sqlite_errors_name_a_full_or_read_only_filesystem(
        flag: int, free: int, says: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # was: only SQLite's own words ("disk I/O error", "unable to open database file")
    path = tmp_path / "a-directory"
    path.mkdir()  # SQLite cannot open it: SQLITE_CANTOPEN, like a missing -shm file
    monkeypatch.setattr(sqlite_module.os, "statvfs", lambda _: _Stats(flag, free))
    with pytest.raises(BackendUnavailableError) as caught:  # a save opens it (reads: no file)
        await SQLiteBackend(path).save_state("r", WorkflowState(run_id="r"))
    message = str(caught.value)
    assert "unable to open database file" in message
    if says:
        assert says in message
    else:
        assert message.endswith("unable to open database file")


async def test_sqlite_errors_unrelated_to_the_filesystem_get_no_diagnosis(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "not-a-database"
    path.write_bytes(b"garbage" * 1000)
    monkeypatch.setattr(sqlite_module.os, "statvfs", lambda _: _Stats(os.ST_RDONLY, 0))
    with pytest.raises(BackendUnavailableError) as caught:
        await SQLiteBackend(path).load_record("r")
    assert str(caught.value).endswith("file is not a database")
