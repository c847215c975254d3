"""``fcntl.flock`` lock files: per-run write locks and per-run claims (POSIX).

flock locks belong to an open file description, so two opens of the same lock file conflict
even inside one process, and the kernel drops the lock the moment its holder dies (``kill -9``
included). Lock files are removed by their holder on release; a waiter that then wins the
lock on the removed file notices (the path no longer names the inode it locked) and retries,
so no two holders can ever coexist and no lock files pile up.
"""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from types import ModuleType

from flujo.exceptions import BackendUnavailableError, RunInProgressError

from .._runid import validate_run_id
from .base import RunClaim

__all__ = ["ClaimDirectory", "acquire", "locked", "release"]


def _fcntl() -> ModuleType:
    try:
        import fcntl
    except ImportError as exc:  # pragma: no cover - non-POSIX
        raise BackendUnavailableError(
            "file locks need fcntl (POSIX); use SQLite or PostgreSQL on this platform"
        ) from exc
    return fcntl


def acquire(path: Path, *, blocking: bool) -> int | None:
    """Lock ``path`` (created if needed); return the fd, or None if busy and not blocking."""
    fcntl = _fcntl()
    flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            try:  # the lock directory was removed (e.g. by a cleanup job): recreate it
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BackendUnavailableError(f"cannot create {path.parent}: {exc}") from exc
            continue
        except OSError as exc:
            raise BackendUnavailableError(f"cannot open lock file {path}: {exc}") from exc
        try:
            fcntl.flock(fd, flags)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise BackendUnavailableError(f"cannot lock {path}: {exc}") from exc
        except BaseException:
            os.close(fd)
            raise
        try:
            on_disk = os.stat(path)
        except FileNotFoundError:
            os.close(fd)
            continue
        held = os.fstat(fd)
        if (on_disk.st_ino, on_disk.st_dev) == (held.st_ino, held.st_dev):
            return fd
        os.close(fd)


def release(fd: int, path: Path) -> None:
    """Remove the lock file (while still holding it) and drop the lock."""
    try:
        with suppress(FileNotFoundError):
            os.unlink(path)
    finally:
        os.close(fd)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the blocking lock on ``path`` for the block (runs in a worker thread)."""
    fd = acquire(path, blocking=True)
    assert fd is not None
    try:
        yield
    finally:
        release(fd, path)


class ClaimDirectory:
    """Per-run claims as ``<directory>/<run_id>.claim`` lock files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @asynccontextmanager
    async def claim(self, run_id: str) -> AsyncIterator[RunClaim]:
        validate_run_id(run_id)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailableError(
                f"cannot create the claim directory {self.directory}: {exc}"
            ) from exc
        path = self.directory / f"{run_id}.claim"
        fd = acquire(path, blocking=False)
        if fd is None:
            raise RunInProgressError(
                f"run {run_id!r} is claimed by another worker (lock file {path})"
            )
        try:
            yield RunClaim(run_id)
        finally:
            release(fd, path)
