"""One JSON file per run in a directory (POSIX).

* ``<dir>/<run_id>.json`` holds the envelope (the same name earlier flujo used, so its bare
  state files still load).
* Writes are atomic and durable: a temporary dot-file in the same directory is written and
  fsynced, moved over the record with ``os.replace`` and the directory is fsynced. A crash at
  any point leaves either the old or the new record, never a mix; once ``save_state`` has
  returned the record survives ``kill -9`` (and, with ``fsync=True``, power loss).
* Saves of one run are serialized across threads and processes by a ``flock`` on
  ``<dir>/.locks/<run_id>.write``; claims use ``<dir>/.locks/<run_id>.claim``.
* A run's earlier records (its checkpoint history) are kept as
  ``<dir>/.history/<run_id>/<revision>.json``: before a save replaces the record, the record
  gets that second name (a hard link, no copy), and the directory is fsynced, so a crash
  leaves every record of the chain in place.
* Nothing is done through a symbolic link inside the directory, and only regular files are
  read, up to the store's record size limit (``_dirs``): a planted link, FIFO or huge file
  is refused with a typed error, never followed, waited on or loaded.
* A record that cannot be parsed raises CorruptStateError naming the file. Loads never modify
  files; saves refuse to replace a damaged record (``delete_state`` removes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flujo.exceptions import BackendUnavailableError

from .._envelope import Envelope
from .._envelope_codec import SealedRecord
from .._runid import validate_run_id
from ..models import RunSummary
from . import _dirs, _flock
from .base import CurrentRecord, EnvelopeStateBackend, RunClaim, StoredRecord, WriteRecord
from .memory import page

__all__ = ["FileBackend"]

_SUFFIX = ".json"
_LOCKS = ".locks"
_EPOCH = ".epoch"  # in _LOCKS: a run's claim epoch
_COUNTER = "claims.counter"  # in _LOCKS: the store's last claim epoch (no run's name)
_HISTORY = ".history"
# The earliest and latest times datetime holds: a file time beyond them (a clock set far
# ahead, a touched file) is clamped, as it only stands in for a missing header timestamp.
_EARLIEST, _LATEST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)


def _revisions(names: list[str]) -> list[int]:
    """The revisions of the kept records among a history directory's ``names`` (other
    names, temporary files among them, are not records)."""
    found = []
    for name in names:
        digits = name[: -len(_SUFFIX)] if name.endswith(_SUFFIX) else ""
        if digits.isascii() and digits.isdigit() and len(digits) <= 19 and digits[0] != "0":
            found.append(int(digits))
    return found


def _file_time(mtime: float) -> datetime:
    try:
        return datetime.fromtimestamp(mtime, UTC)
    except (OverflowError, OSError, ValueError):
        return _LATEST if mtime > 0 else _EARLIEST


# Process ids are positive and, on every POSIX system, fit in 32 bits (os.kill raises
# OverflowError beyond a C int).
_MAX_PID = 2**31 - 1


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


def _writer_pid(name: str) -> int | None:
    """The process id a temporary file ``.<record>.<pid>.<random>.tmp`` names, or None."""
    parts = name.split(".")
    if len(parts) < 4 or not parts[-3].isdigit() or len(parts[-3]) > 10:
        return None
    pid = int(parts[-3])
    return pid if 0 < pid <= _MAX_PID else None


class FileBackend(_flock.FlockClaims, EnvelopeStateBackend):
    """Stores each run as ``<path>/<run_id>.json``, its earlier records under ``.history``.

    ``fsync=False`` skips the fsync calls: records still survive a process crash (the data
    is in the OS page cache) but not a power loss. The directory and its ``.locks`` folder
    are created readable by their owner only (0700), files likewise (0600). No operation
    follows a symbolic link inside the store, and a record that is not a regular file or is
    larger than the store reads is refused before it is read (see ``_dirs``).
    """

    keeps_history = True

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True, **codec_options: Any):
        super().__init__(**codec_options)
        self.path = Path(path)
        self.fsync = fsync
        # Constructing touches nothing: the first write creates the directory (0700) and its
        # lock folder, and removes what killed writers left (``_for_writing``); reading a
        # store nothing was written to finds no runs.
        self._prepared = False
        self._claims = _flock.ClaimDirectory(self.path, _LOCKS)

    @contextmanager
    def _for_writing(self) -> Iterator[_dirs.Directory]:
        """The root directory, created if need be; the first time, also tidied."""
        with _dirs.opened(self.path, create=True) as root:
            if not self._prepared:  # (two threads may both tidy: harmless)
                with root.subdirectory(_LOCKS, create=True):
                    pass
                self._remove_stale_temp_files(root, min_age_s=60.0)
                self._remove_stale_trash(root)
                self._prepared = True
            yield root

    def remove_stale_temp_files(self, *, min_age_s: float = 60.0) -> list[Path]:
        """Delete temporary files left by writers that were killed mid-write; return them.

        A temporary file names its writer's process id. It is removed only when that process
        no longer exists on this host and the file is older than ``min_age_s`` (so a writer on
        another host sharing the directory is not disturbed by a coincidental pid). Readers
        never look at these files; this only reclaims space. Done by a backend's first write.
        Names that do not parse, and anything but regular files, are left alone.
        """
        with _dirs.opened_existing(self.path) as root:
            return [] if root is None else self._remove_stale_temp_files(root,
                                                                        min_age_s=min_age_s)

    def _remove_stale_temp_files(self, root: _dirs.Directory, *, min_age_s: float) -> list[Path]:
        removed: list[Path] = []
        now = time.time()
        for name in root.names():
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            pid = _writer_pid(name)
            if pid is None or _process_exists(pid):
                continue
            try:
                info = root.lstat(name)
                if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < min_age_s:
                    continue
                root.unlink(name)
            except OSError:  # gone already, or not ours to remove: leave it
                continue
            removed.append(self.path / name)
        return removed

    def file_for(self, run_id: str) -> Path:
        """The record file of ``run_id``."""
        return self.path / f"{validate_run_id(run_id)}{_SUFFIX}"

    def describe(self, run_id: str) -> str:
        return f"run {run_id!r} (file {self.path / (run_id + _SUFFIX)})"

    # -- reading -------------------------------------------------------------------------

    def _read_sync(self, run_id: str) -> StoredRecord | None:
        with _dirs.opened_existing(self.path) as root:
            return None if root is None else self._read_in(root, run_id)

    def _read_in(self, root: _dirs.Directory, run_id: str) -> StoredRecord | None:
        found = root.read_regular(f"{run_id}{_SUFFIX}", limit=self.codec.max_record_bytes)
        if found is None:
            return None
        raw, info = found
        return StoredRecord(raw, fallback_time=_file_time(info.st_mtime))

    async def _read(self, run_id: str) -> StoredRecord | None:
        return await asyncio.to_thread(self._read_sync, run_id)

    # -- writing -------------------------------------------------------------------------

    def _current(self, root: _dirs.Directory, run_id: str) -> CurrentRecord | None:
        stored = self._read_in(root, run_id)
        if stored is None:
            return None
        envelope = self._parse(run_id, stored)  # a damaged record raises: never overwritten
        return CurrentRecord(envelope.revision, envelope.created_at, envelope.updated_at)

    def _replace(self, root: _dirs.Directory, target: str, data: bytes) -> None:
        tmp = f".{target}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
        created = False
        try:
            fd = root.create_exclusive(tmp)
            created = True
            with open(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                if self.fsync:
                    os.fsync(handle.fileno())
            root.replace(tmp, target)
        except OSError as exc:
            if created:
                with contextlib.suppress(OSError):  # keep the original error, not the cleanup's
                    root.unlink(tmp)
            raise BackendUnavailableError(f"cannot write {root.path / target}: {exc}") from exc
        except BaseException:
            if created:
                with contextlib.suppress(OSError):
                    root.unlink(tmp)
            raise
        if self.fsync:
            root.fsync()

    def _write_sync(self, run_id: str, make: WriteRecord,
                    epoch: int | None = None) -> SealedRecord:
        with self._for_writing() as root, \
                root.subdirectory(_LOCKS, create=True) as locks, \
                _flock.locked(locks, f"{run_id}.write"):
            if epoch is not None and self._read_epoch(locks, f"{run_id}{_EPOCH}") != epoch:
                raise _flock.fenced_out(self.describe(run_id), epoch)
            current = self._current(root, run_id)
            sealed = make(current)
            if current is not None:
                self._keep(root, run_id, current.revision)
            self._replace(root, f"{run_id}{_SUFFIX}", sealed.raw)
        return sealed

    def _keep(self, root: _dirs.Directory, run_id: str, revision: int) -> None:
        """Give the current record its history name, durably, before it is replaced."""
        record = f"{run_id}{_SUFFIX}"
        try:
            with root.subdirectory(_HISTORY, create=True) as history, \
                    history.subdirectory(run_id, create=True) as kept:
                kept.link_from(root, record, f"{revision}{_SUFFIX}",
                               f".{revision}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
                if self.fsync:
                    kept.fsync()
                    history.fsync()
        except OSError as exc:
            raise BackendUnavailableError(
                f"cannot keep {root.path / record} as history: {exc}") from exc

    def _read_history_sync(self, run_id: str, first: int,
                           last: int) -> list[tuple[int, StoredRecord]]:
        found: list[tuple[int, StoredRecord]] = []
        with _dirs.opened_existing(self.path) as root:
            if root is None or root.kind(_HISTORY) == "missing":
                return found
            with root.subdirectory(_HISTORY, create=False) as history:
                if history.kind(run_id) == "missing":
                    return found
                with history.subdirectory(run_id, create=False) as kept:
                    for revision in sorted(_revisions(kept.names())):
                        if not first <= revision <= last:
                            continue
                        read = kept.read_regular(f"{revision}{_SUFFIX}",
                                                 limit=self.codec.max_record_bytes)
                        if read is not None:
                            found.append((revision, StoredRecord(read[0])))
        return found

    async def _read_history(self, run_id: str, first: int,
                            last: int) -> list[tuple[int, StoredRecord]]:
        return await asyncio.to_thread(self._read_history_sync, run_id, first, last)

    async def _read_chain(self, run_id: str) -> list[tuple[Envelope, int]] | None:
        # The head and its chain in one trip to a worker thread, not two.
        return await asyncio.to_thread(self._chain_with_sync, run_id, self._read_sync,
                                       self._read_history_sync)

    def _drop_history(self, root: _dirs.Directory, run_id: str) -> None:
        """Remove the run's kept records (under the run's write lock): all or none. The
        folder is first renamed out of the way in one step (a crash then leaves a
        ``.<run>.<pid>.<random>.trash`` folder, removed when a backend next opens the store,
        never a history with holes), then emptied."""
        if root.kind(_HISTORY) == "missing":
            return
        trash = f".{run_id}.{os.getpid()}.{uuid.uuid4().hex[:12]}.trash"
        try:
            with root.subdirectory(_HISTORY, create=False) as history:
                if history.kind(run_id) == "missing":
                    return
                history.rename(run_id, trash)
                if self.fsync:
                    history.fsync()
                self._empty(history, trash)
        except OSError as exc:
            raise BackendUnavailableError(
                f"cannot remove the history of {self.describe(run_id)}: {exc}") from exc

    @staticmethod
    def _empty(history: _dirs.Directory, name: str) -> None:
        with history.subdirectory(name, create=False) as kept:
            for entry in kept.names():
                kept.unlink(entry)
        history.rmdir(name)

    def _remove_stale_trash(self, root: _dirs.Directory) -> None:
        """Empty the history folders a killed compaction or delete left (see _drop_history)."""
        if root.kind(_HISTORY) == "missing":
            return
        with root.subdirectory(_HISTORY, create=False) as history:
            for name in history.names():
                if not (name.startswith(".") and name.endswith(".trash")):
                    continue
                pid = _writer_pid(name[:-len(".trash")] + ".tmp")
                if pid is None or _process_exists(pid):
                    continue
                with contextlib.suppress(OSError, BackendUnavailableError):
                    self._empty(history, name)

    def _compact_sync(self, run_id: str, make: WriteRecord) -> SealedRecord:
        with self._for_writing() as root, \
                root.subdirectory(_LOCKS, create=True) as locks, \
                _flock.locked(locks, f"{run_id}.write"):
            sealed = make(self._current(root, run_id))
            self._replace(root, f"{run_id}{_SUFFIX}", sealed.raw)
            self._drop_history(root, run_id)
        return sealed

    async def _compact(self, run_id: str, make: WriteRecord) -> SealedRecord:
        return await asyncio.to_thread(self._compact_sync, run_id, make)

    # -- claim epochs (fencing) ------------------------------------------------------------
    # ``.locks/claims.counter`` counts the claims of the store (so an epoch is never given
    # twice, even to a run deleted and created again); ``.locks/<run_id>.epoch`` holds the
    # epoch of the run's claim while it is held, written under the run's write lock and
    # read under it by every save made under a claim.

    def _read_epoch(self, locks: _dirs.Directory, name: str) -> int | None:
        read = locks.read_regular(name, limit=64)
        if read is None:
            return None
        try:
            return int(read[0])
        except ValueError:
            return None  # damaged: no claim can match it; the next claim rewrites it

    def _drop_epoch(self, run_id: str, epoch: int) -> None:
        """Remove the run's epoch file as its claim ends (a later save under an older claim
        finds none and is refused), unless a newer claim wrote it."""
        name = f"{run_id}{_EPOCH}"
        with self._for_writing() as root, \
                root.subdirectory(_LOCKS, create=True) as locks, \
                _flock.locked(locks, f"{run_id}.write"):
            if self._read_epoch(locks, name) == epoch:
                with contextlib.suppress(FileNotFoundError):
                    locks.unlink(name)

    def _next_epoch(self, run_id: str) -> int:
        with self._for_writing() as root, \
                root.subdirectory(_LOCKS, create=True) as locks:
            with _flock.locked(locks, f"{_COUNTER}.lock"):
                epoch = (self._read_epoch(locks, _COUNTER) or 0) + 1
                self._replace(locks, _COUNTER, str(epoch).encode())
            with _flock.locked(locks, f"{run_id}.write"):
                self._replace(locks, f"{run_id}{_EPOCH}", str(epoch).encode())
        return epoch

    def _delete_sync(self, run_id: str) -> None:
        name = f"{run_id}{_SUFFIX}"
        with _dirs.opened_existing(self.path) as existing:  # (its errors are flujo's)
            if existing is None:
                return  # a store nothing was written to holds no run
        with self._for_writing() as root, \
                root.subdirectory(_LOCKS, create=True) as locks, \
                _flock.locked(locks, f"{run_id}.write"):
            try:
                root.unlink(name)  # a link named like a record is removed, not followed
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise BackendUnavailableError(f"cannot delete {root.path / name}: {exc}") from exc
            else:
                if self.fsync:
                    root.fsync()
            self._drop_history(root, run_id)

    async def _delete(self, run_id: str) -> None:
        await asyncio.to_thread(self._delete_sync, run_id)
        await asyncio.to_thread(self._claims.clear_cancel, run_id)

    # -- listing -------------------------------------------------------------------------

    def _ids_sync(self) -> list[str]:
        with _dirs.opened_existing(self.path) as root:
            return [] if root is None else self._ids_in(root)

    @staticmethod
    def _ids_in(root: _dirs.Directory) -> list[str]:
        ids: list[str] = []
        for name in root.names():
            if not name.endswith(_SUFFIX) or name.startswith("."):
                continue
            run_id = name[: -len(_SUFFIX)]
            try:
                validate_run_id(run_id)
            except ValueError:
                continue  # not a file this backend wrote
            ids.append(run_id)
        return ids

    async def _list_ids(self) -> list[str]:
        return await asyncio.to_thread(self._ids_sync)

    def _list_sync(
        self, status: str | None, pipeline_name: str | None, limit: int | None, offset: int
    ) -> list[RunSummary]:
        rows: list[RunSummary] = []
        with _dirs.opened_existing(self.path) as root:
            if root is None:
                return rows
            for run_id in self._ids_in(root):
                stored = self._read_in(root, run_id)
                if stored is None:
                    continue  # deleted while listing
                env = self._parse(run_id, stored)
                if status is not None and env.status != status:
                    continue
                if pipeline_name is not None and env.pipeline_name != pipeline_name:
                    continue
                rows.append(
                    RunSummary(
                        run_id=run_id,
                        pipeline_name=env.pipeline_name,
                        status=env.status,
                        revision=env.revision,
                        created_at=env.created_at,
                        updated_at=env.updated_at,
                    )
                )
        return page(rows, limit, offset)

    async def _list(
        self, status: str | None, pipeline_name: str | None, limit: int | None, offset: int
    ) -> list[RunSummary]:
        return await asyncio.to_thread(self._list_sync, status, pipeline_name, limit, offset)

    # -- claims --------------------------------------------------------------------------

    @asynccontextmanager
    async def claim(self, run_id: str) -> AsyncIterator[RunClaim]:
        """Claim via ``flock`` on ``<dir>/.locks/<run_id>.claim``, with an epoch that saves
        under the claim check (fencing; see StateBackend.claim and ``_next_epoch``)."""
        async with self._claims.claim(run_id) as held:
            epoch = await asyncio.to_thread(self._next_epoch, run_id)
            try:
                yield RunClaim(run_id, acquired_at=held.acquired_at, epoch=epoch)
            finally:
                await asyncio.to_thread(self._drop_epoch, run_id, epoch)
