"""The store's own directories, used without ever following a link out of them (POSIX).

Every file operation of the file-based stores (records, temporary files, lock files) names
a file *relative to a directory file descriptor* and never follows a symbolic link
(``O_NOFOLLOW``, ``dir_fd=``, ``follow_symlinks=False``): a link planted in a store
(``.locks -> /victim``, ``<run>.json -> /dev/zero``, ``<run>.write -> /anywhere/x``) is
refused, never used, and a directory swapped for a link between two calls is not entered.

The store's root is the path its owner named (links on the way to it are the owner's
choice); its own folders (``.locks``, ``<database>.claims``) must be real directories of
the root's owner: one someone else owns could have been prepared by them. Directories
flujo creates are 0700, files 0600.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flujo.exceptions import (
    BackendUnavailableError,
    CorruptStateError,
    StateError,
)

from .._envelope_codec import record_too_large

__all__ = ["DIRECTORY_MODE", "FILE_MODE", "Directory", "kind_of", "opened"]

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def kind_of(mode: int) -> str:
    """What a file of this ``st_mode`` is, for error messages."""
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _directory_owner(fd: int, path: Path) -> int:
    info = os.fstat(fd)
    if not stat.S_ISDIR(info.st_mode):  # O_DIRECTORY is 0 on a platform without it
        raise BackendUnavailableError(f"{path} is {kind_of(info.st_mode)}, not a directory")
    return info.st_uid


class Directory:
    """An open directory of the store: its file descriptor, the path it was opened as (for
    messages only; every operation goes through the descriptor) and its owner."""

    __slots__ = ("fd", "owner", "path")

    def __init__(self, fd: int, path: Path, owner: int) -> None:
        self.fd = fd
        self.path = path
        self.owner = owner

    @contextmanager
    def subdirectory(self, name: str, *, create: bool) -> Iterator[Directory]:
        """The store's own folder ``name`` inside this one (created 0700 when ``create``);
        a link or anything but a directory of this user is refused."""
        path = self.path / name
        if create:
            try:
                os.mkdir(name, DIRECTORY_MODE, dir_fd=self.fd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise BackendUnavailableError(f"cannot create {path}: {exc}") from exc
        fd = self._open_directory(name, path)
        try:
            owner = _directory_owner(fd, path)
            if owner != self.owner:
                raise BackendUnavailableError(
                    f"{path} belongs to user id {owner}, not to the owner of the store"
                    f" {self.path} ({self.owner}); someone else may have prepared it, so flujo"
                    " does not use it (remove it to let flujo recreate the folder)")
            yield Directory(fd, path, owner)
        finally:
            os.close(fd)

    def _open_directory(self, name: str, path: Path) -> int:
        try:
            return os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                kind = self.kind(name)
                raise BackendUnavailableError(
                    f"{path} is {kind}, not a directory; flujo does not follow links out of"
                    " a store (remove it to let flujo recreate the folder)") from exc
            raise BackendUnavailableError(f"cannot open {path}: {exc}") from exc

    def kind(self, name: str) -> str:
        """What ``name`` is in this directory ("missing" when nothing)."""
        try:
            info = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except OSError:
            return "missing"
        return "a regular file" if stat.S_ISREG(info.st_mode) else kind_of(info.st_mode)

    def names(self) -> list[str]:
        try:
            return os.listdir(self.fd)
        except OSError as exc:
            raise BackendUnavailableError(f"cannot list {self.path}: {exc}") from exc

    def lstat(self, name: str) -> os.stat_result:
        return os.stat(name, dir_fd=self.fd, follow_symlinks=False)

    def open_regular(self, name: str, flags: int, *, what: str,
                     refuse: type[StateError]) -> tuple[int, os.stat_result] | None:
        """The descriptor and status of the regular file ``name`` opened with ``flags`` (it is
        created 0600 with ``O_CREAT``), or None when there is none. A link is never followed
        and anything but a regular file never used: both are refused with ``refuse``, ``what``
        naming the file. Opened non-blocking, so a FIFO never blocks."""
        path = self.path / name
        try:
            fd = os.open(name, flags | _NOFOLLOW | _NONBLOCK | _CLOEXEC, FILE_MODE,
                         dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise refuse(f"{what} {path} is a symbolic link; flujo never follows links in"
                             " a store (remove it)") from exc
            raise BackendUnavailableError(f"cannot open {what} {path}: {exc}") from exc
        try:
            info = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            raise BackendUnavailableError(f"cannot open {what} {path}: {exc}") from exc
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise refuse(f"{what} {path} is {kind_of(info.st_mode)}, not a regular file; flujo"
                         " uses only regular files of a store (remove it)")
        return fd, info

    def read_regular(self, name: str, *, limit: int) -> tuple[bytes, os.stat_result] | None:
        """The bytes of the regular file ``name`` and its status, or None when there is none.

        Refused with CorruptStateError, before anything is read: a link, a FIFO, a device or
        anything but a regular file (``open_regular``), and a file over ``limit`` bytes (also
        when it grows while being read).
        """
        path = self.path / name
        opened_file = self.open_regular(name, os.O_RDONLY, what="record",
                                        refuse=CorruptStateError)
        if opened_file is None:
            return None
        fd, info = opened_file
        try:
            if info.st_size > limit:
                raise record_too_large(str(path), info.st_size, limit)
            chunks: list[bytes] = []
            size = 0
            while True:
                chunk = os.read(fd, min(limit + 1 - size, 1 << 20))
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise record_too_large(str(path), size, limit)
                chunks.append(chunk)
        except OSError as exc:
            raise BackendUnavailableError(f"cannot read {path}: {exc}") from exc
        finally:
            os.close(fd)
        return b"".join(chunks), info

    def create_exclusive(self, name: str) -> int:
        """A new file ``name`` (0600) opened for writing; fails if anything has that name."""
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC,
                       FILE_MODE, dir_fd=self.fd)

    def replace(self, source: str, target: str) -> None:
        """Rename ``source`` over ``target`` (a link named ``target`` is replaced, not
        followed)."""
        os.replace(source, target, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def unlink(self, name: str) -> None:
        os.unlink(name, dir_fd=self.fd)

    def rmdir(self, name: str) -> None:
        os.rmdir(name, dir_fd=self.fd)

    def rename(self, source: str, target: str) -> None:
        """Rename ``source`` to the unused name ``target`` in this directory."""
        os.rename(source, target, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def link_from(self, source: Directory, name: str, target: str, temporary: str) -> None:
        """Give the file ``name`` of ``source`` a second name, ``target`` here (replacing
        whatever has that name), through the unused name ``temporary``: a hard link, so no
        byte is copied, made whole or not at all. A link is linked, never followed."""
        os.link(name, temporary, src_dir_fd=source.fd, dst_dir_fd=self.fd,
                follow_symlinks=False)
        try:
            os.replace(temporary, target, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=self.fd)
            raise

    def fsync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise BackendUnavailableError(f"cannot fsync the directory {self.path}: {exc}") from exc


@contextmanager
def opened_existing(path: Path) -> Iterator[Directory | None]:
    """The store's root directory ``path``, or None where nothing exists there yet (a store
    nothing was written to: it holds no runs)."""
    fd = _open_root(path)
    if fd is None:
        yield None
        return
    with _as_directory(fd, path) as root:
        yield root


@contextmanager
def opened(path: Path, *, create: bool) -> Iterator[Directory]:
    """The store's root directory ``path`` (created 0700, with its parents, when
    ``create``)."""
    if create:
        try:
            path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailableError(
                f"cannot create the state directory {path}: {exc}") from exc
    fd = _open_root(path)
    if fd is None:
        raise BackendUnavailableError(f"no store here: {path} does not exist")
    with _as_directory(fd, path) as root:
        yield root


def _open_root(path: Path) -> int | None:
    """A descriptor of the directory ``path``, or None where nothing is there."""
    try:
        return os.open(path, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BackendUnavailableError(f"cannot open the state directory {path}: {exc}") from exc


@contextmanager
def _as_directory(fd: int, path: Path) -> Iterator[Directory]:
    """``fd`` as the store's checked root (closed after)."""
    try:
        yield Directory(fd, path, _directory_owner(fd, path))
    finally:
        os.close(fd)
