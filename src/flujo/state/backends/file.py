"""One JSON file per run in a directory (POSIX).

* ``<dir>/<run_id>.json`` holds the envelope (the same name earlier flujo used, so its bare
  state files still load).
* Writes are atomic and durable: a temporary dot-file in the same directory is written and
  fsynced, moved over the record with ``os.replace`` and the directory is fsynced. A crash at
  any point leaves either the old or the new record, never a mix; once ``save_state`` has
  returned the record survives ``kill -9`` (and, with ``fsync=True``, power loss).
* Saves of one run are serialized across threads and processes by a ``flock`` on
  ``<dir>/.locks/<run_id>.write``; claims use ``<dir>/.locks/<run_id>.claim``.
* A record that cannot be parsed raises CorruptStateError naming the file. Loads never modify
  files; saves refuse to replace a damaged record (``delete_state`` removes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flujo.exceptions import BackendUnavailableError

from .._codec import SealedRecord
from .._runid import validate_run_id
from ..models import RunSummary
from . import _flock
from .base import CurrentRecord, EnvelopeStateBackend, RunClaim, StoredRecord, WriteRecord
from .memory import page

__all__ = ["FileBackend"]

_SUFFIX = ".json"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise BackendUnavailableError(f"cannot fsync the directory {directory}: {exc}") from exc


class FileBackend(EnvelopeStateBackend):
    """Stores each run as ``<path>/<run_id>.json``.

    ``fsync=False`` skips the fsync calls: records still survive a process crash (the data
    is in the OS page cache) but not a power loss. Files are created readable by their owner
    only (mode 0600).
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True, **codec_options: Any):
        super().__init__(**codec_options)
        self.path = Path(path)
        self.fsync = fsync
        self._lock_dir = self.path / ".locks"
        try:
            self._lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailableError(
                f"cannot create the state directory {self.path}: {exc}"
            ) from exc
        self._claims = _flock.ClaimDirectory(self._lock_dir)
        self.remove_stale_temp_files()

    def remove_stale_temp_files(self, *, min_age_s: float = 60.0) -> list[Path]:
        """Delete temporary files left by writers that were killed mid-write; return them.

        A temporary file names its writer's process id. It is removed only when that process
        no longer exists on this host and the file is older than ``min_age_s`` (so a writer on
        another host sharing the directory is not disturbed by a coincidental pid). Readers
        never look at these files; this only reclaims space. Called when a backend is opened.
        """
        removed: list[Path] = []
        now = time.time()
        try:
            candidates = list(self.path.glob(".*.tmp"))
        except OSError:
            return removed
        for tmp in candidates:
            parts = tmp.name.split(".")
            pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
            if pid is None or _process_exists(pid):
                continue
            try:
                if now - tmp.stat().st_mtime < min_age_s:
                    continue
                tmp.unlink()
            except OSError:  # gone already, or not ours to remove: leave it
                continue
            removed.append(tmp)
        return removed

    def file_for(self, run_id: str) -> Path:
        """The record file of ``run_id``."""
        return self.path / f"{validate_run_id(run_id)}{_SUFFIX}"

    def describe(self, run_id: str) -> str:
        return f"run {run_id!r} (file {self.path / (run_id + _SUFFIX)})"

    # -- reading -------------------------------------------------------------------------

    def _read_sync(self, run_id: str) -> StoredRecord | None:
        path = self.path / f"{run_id}{_SUFFIX}"
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
                mtime = os.fstat(handle.fileno()).st_mtime
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BackendUnavailableError(f"cannot read {path}: {exc}") from exc
        return StoredRecord(raw, fallback_time=datetime.fromtimestamp(mtime, UTC))

    async def _read(self, run_id: str) -> StoredRecord | None:
        return await asyncio.to_thread(self._read_sync, run_id)

    # -- writing -------------------------------------------------------------------------

    def _current(self, run_id: str) -> CurrentRecord | None:
        stored = self._read_sync(run_id)
        if stored is None:
            return None
        envelope = self._parse(run_id, stored)  # a damaged record raises: never overwritten
        return CurrentRecord(envelope.revision, envelope.created_at)

    def _replace(self, target: Path, data: bytes) -> None:
        tmp = self.path / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with open(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                if self.fsync:
                    os.fsync(handle.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):  # keep the original error, not the cleanup's
                tmp.unlink(missing_ok=True)
            raise BackendUnavailableError(f"cannot write {target}: {exc}") from exc
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
        if self.fsync:
            _fsync_dir(self.path)

    def _write_sync(self, run_id: str, make: WriteRecord) -> SealedRecord:
        with _flock.locked(self._lock_dir / f"{run_id}.write"):
            sealed = make(self._current(run_id))
            self._replace(self.path / f"{run_id}{_SUFFIX}", sealed.raw)
        return sealed

    async def _write(self, run_id: str, make: WriteRecord) -> SealedRecord:
        return await asyncio.to_thread(self._write_sync, run_id, make)

    def _delete_sync(self, run_id: str) -> None:
        path = self.path / f"{run_id}{_SUFFIX}"
        with _flock.locked(self._lock_dir / f"{run_id}.write"):
            try:
                path.unlink()
            except FileNotFoundError:
                return
            except OSError as exc:
                raise BackendUnavailableError(f"cannot delete {path}: {exc}") from exc
            if self.fsync:
                _fsync_dir(self.path)

    async def _delete(self, run_id: str) -> None:
        await asyncio.to_thread(self._delete_sync, run_id)

    # -- listing -------------------------------------------------------------------------

    def _ids_sync(self) -> list[str]:
        ids: list[str] = []
        try:
            names = os.listdir(self.path)
        except OSError as exc:
            raise BackendUnavailableError(f"cannot list {self.path}: {exc}") from exc
        for name in names:
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
        for run_id in self._ids_sync():
            stored = self._read_sync(run_id)
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

    def claim(self, run_id: str) -> AbstractAsyncContextManager[RunClaim]:
        """Claim via ``flock`` on ``<dir>/.locks/<run_id>.claim``; see StateBackend.claim."""
        return self._claims.claim(run_id)
