"""``fcntl.flock`` lock files: per-run write locks and per-run claims (POSIX).

flock locks belong to an open file description, so two opens of the same lock file conflict
even inside one process, and the kernel drops the lock the moment its holder dies (``kill -9``
included). Lock files are removed by their holder on release; a waiter that then wins the
lock on the removed file notices (the path no longer names the inode it locked) and retries,
so no two holders can ever coexist and no lock files pile up.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from flujo.exceptions import BackendUnavailableError, ClaimLostError, RunInProgressError

from .._envelope_codec import SealedRecord
from .._runid import validate_run_id
from ._claims import HOST, ClaimHolder, holder_name, run_ids_asked
from ._dirs import Directory, opened, opened_existing
from .base import RunClaim, WriteRecord

__all__ = ["ClaimDirectory", "FlockClaims", "acquire", "fenced_out", "locked", "release"]


def _fcntl() -> ModuleType:
    try:
        import fcntl
    except ImportError as exc:  # pragma: no cover - non-POSIX
        raise BackendUnavailableError(
            "file locks need fcntl (POSIX); use SQLite or PostgreSQL on this platform"
        ) from exc
    return fcntl


def acquire(directory: Directory, name: str, *, blocking: bool) -> int | None:
    """Lock the file ``name`` of ``directory`` (created 0600 if needed); return the fd, or
    None if busy and not blocking. A link or anything but a regular file there is refused
    (never followed, never created through)."""
    fcntl = _fcntl()
    flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
    path = directory.path / name
    while True:
        opened_file = directory.open_regular(name, os.O_RDWR | os.O_CREAT, what="lock file",
                                             refuse=BackendUnavailableError)
        if opened_file is None:  # the directory itself is gone
            raise BackendUnavailableError(f"cannot open lock file {path}: no such directory")
        fd, held = opened_file
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
            on_disk = directory.lstat(name)
        except FileNotFoundError:
            os.close(fd)
            continue
        if (on_disk.st_ino, on_disk.st_dev) == (held.st_ino, held.st_dev):
            return fd
        os.close(fd)


def release(directory: Directory, fd: int, name: str) -> None:
    """Remove the lock file (while still holding it) and drop the lock."""
    try:
        with suppress(FileNotFoundError):
            directory.unlink(name)
    finally:
        os.close(fd)


@contextmanager
def locked(directory: Directory, name: str) -> Iterator[None]:
    """Hold the blocking lock on ``name`` in ``directory`` for the block (runs in a worker
    thread)."""
    fd = acquire(directory, name, blocking=True)
    assert fd is not None
    try:
        yield
    finally:
        release(directory, fd, name)


class ClaimDirectory:
    """Per-run claims as ``<root>/<folder>/<run_id>.claim`` lock files; ``folder`` is the
    store's own (a real directory, created 0700), ``root`` the directory its owner named.

    Cancel requests live beside them as empty ``<run_id>.cancel`` files: created once
    (``O_EXCL``: asking twice is asking once), seen by every process, removed when done.
    """

    def __init__(self, root: Path, folder: str) -> None:
        self.root = root
        self.folder = folder

    @asynccontextmanager
    async def claim(self, run_id: str) -> AsyncIterator[RunClaim]:
        validate_run_id(run_id)
        name = f"{run_id}.claim"
        with opened(self.root, create=True) as root, \
                root.subdirectory(self.folder, create=True) as directory:
            fd = acquire(directory, name, blocking=False)
            if fd is None:
                raise RunInProgressError(
                    f"run {run_id!r} is claimed by another worker (lock file"
                    f" {directory.path / name})"
                )
            claim = RunClaim(run_id)
            with suppress(OSError):  # who holds it, for operators only (claim_holders)
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{holder_name()}\n{claim.acquired_at.isoformat()}\n".encode(), 0)
            try:
                yield claim
            finally:
                release(directory, fd, name)

    def holders(self, run_ids: Sequence[str]) -> dict[str, ClaimHolder]:
        """Who holds the claims of ``run_ids`` (see ``StateBackend.claim_holders``), read
        from the lock files the holders wrote, without locking anything. A lock file is
        held while the kernel lists an flock on it (``/proc/locks``); where the kernel does
        not list them, while its holder's process lives (same host) or always (another)."""
        folder = self.root / self.folder
        locked = _flocked_files()
        found: dict[str, ClaimHolder] = {}
        for run_id in run_ids_asked(run_ids):
            read = _read_lock_file(folder / f"{run_id}.claim")
            if read is None:
                continue
            file_id, text = read
            holder = _parse_holder(text)
            if holder is None:
                continue
            if locked is not None:
                if file_id in locked:
                    found[run_id] = holder
            elif _may_live(holder.holder):
                found[run_id] = holder
        return found

    def _marker(self, run_id: str) -> str:
        return f"{validate_run_id(run_id)}.cancel"

    def request_cancel(self, run_id: str) -> None:
        name = self._marker(run_id)
        with opened(self.root, create=True) as root, \
                root.subdirectory(self.folder, create=True) as directory:
            try:
                os.close(directory.create_exclusive(name))
            except FileExistsError:
                if directory.kind(name) != "a regular file":
                    raise BackendUnavailableError(
                        f"cannot request the cancellation of run {run_id!r}:"
                        f" {directory.path / name} is {directory.kind(name)}, not a regular"
                        " file (remove it)") from None
                return
            except OSError as exc:
                raise BackendUnavailableError(
                    f"cannot request the cancellation of run {run_id!r}: cannot create"
                    f" {directory.path / name}: {exc}") from exc
            with suppress(OSError):  # the request exists either way; make it durable
                directory.fsync()

    def cancel_requested(self, run_id: str) -> bool:
        """Whether the request file exists: one ``lstat``, cheap enough for the event loop
        (the runner asks before every step). Anything but a regular file there is no
        request; a store that cannot be looked into is BackendUnavailableError."""
        path = self.root / self.folder / self._marker(run_id)
        try:
            return stat.S_ISREG(os.lstat(path).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise BackendUnavailableError(
                f"cannot look for the cancellation request of run {run_id!r} ({path}):"
                f" {exc}") from exc

    def clear_cancel(self, run_id: str) -> None:
        name = self._marker(run_id)
        with opened_existing(self.root) as root:
            if root is None or root.kind(self.folder) == "missing":
                return  # nothing was ever asked here
            with root.subdirectory(self.folder, create=False) as directory:
                try:
                    directory.unlink(name)
                except FileNotFoundError:
                    return
                except OSError as exc:
                    raise BackendUnavailableError(
                        f"cannot clear the cancellation request of run {run_id!r}:"
                        f" {directory.path / name}: {exc}") from exc


def fenced_out(what: str, epoch: int) -> ClaimLostError:
    """The refusal of a save under a claim whose epoch is no longer the run's (a flock claim
    is lost only if its lock file was removed while held)."""
    return ClaimLostError(
        f"{what}: the save was refused: this worker's claim (epoch {epoch}) is no longer the"
        " run's claim (another worker claimed the run since: was its lock file removed?);"
        " nothing was written")


class FlockClaims:
    """What the file and SQLite backends share, whose claims are a ``ClaimDirectory``
    (``self._claims``): cancel requests, claim holders, and saves fenced by the claim's
    epoch (``_write_sync(run_id, make, epoch)`` checks it under the write's own lock)."""

    _claims: ClaimDirectory
    # the backend's write, in a worker thread: ``epoch``, when given, checked under its lock
    _write_sync: Callable[[str, WriteRecord, int | None], SealedRecord]

    async def _write(self, run_id: str, make: WriteRecord, *,
                     claim: RunClaim | None = None) -> SealedRecord:
        epoch = None if claim is None else claim.epoch
        return await asyncio.to_thread(self._write_sync, run_id, make, epoch)

    async def _write_claimed(self, run_id: str, make: WriteRecord,
                             claim: RunClaim) -> SealedRecord:
        return await self._write(run_id, make, claim=claim)  # as PostgreSQL's: one entry

    async def claim_holders(self, run_ids: Sequence[str]) -> dict[str, ClaimHolder]:
        return await asyncio.to_thread(self._claims.holders, run_ids)

    async def _request_cancel(self, run_id: str) -> None:
        await asyncio.to_thread(self._claims.request_cancel, run_id)

    async def _cancel_requested(self, run_id: str) -> bool:
        return self._claims.cancel_requested(run_id)  # one lstat: not worth a thread

    async def _clear_cancel(self, run_id: str) -> None:
        await asyncio.to_thread(self._claims.clear_cancel, run_id)


def _read_lock_file(path: Path) -> tuple[str, str] | None:
    """The file's id as the kernel lists locks (``MAJ:MIN:INODE``, hex device numbers) and
    the text of the lock file at ``path`` (never a link), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        file_id = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
        return file_id, os.read(fd, 1024).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _parse_holder(text: str) -> ClaimHolder | None:
    lines = text.splitlines()
    if len(lines) < 2:
        return None  # written by a flujo before 0.15, or being written
    try:
        since = datetime.fromisoformat(lines[1])
    except ValueError:
        return None
    if since.tzinfo is None:
        return None  # flujo writes UTC with its offset: not one of its lock files
    return ClaimHolder(lines[0], since.astimezone(UTC))


def _flocked_files() -> set[str] | None:
    """The files the kernel lists flock locks on (Linux's ``/proc/locks``), as
    ``MAJ:MIN:INODE``, or None where it does not list them. A file is matched by device and
    inode both: an inode number alone may be another file system's."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            listing = locks.read()
    except OSError:
        return None
    files: set[str] = set()
    for line in listing.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF"; "->" lines wait, hold none
        if len(fields) >= 6 and fields[1] == "FLOCK":
            files.add(fields[5])
    return files


def _may_live(holder: str) -> bool:
    """Whether the process ``holder`` names may still run (it does when it is on another
    host: that cannot be told from here)."""
    host, _, rest = holder.partition(":")
    if host != HOST:
        return True
    try:
        os.kill(int(rest.partition(":")[0]), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
