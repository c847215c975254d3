"""The file ``flujo state export --out FILE`` writes: private, and complete or absent.

Records are written to ``.FILE.partial`` in FILE's directory, created there exclusively
(``O_CREAT | O_EXCL | O_NOFOLLOW``, mode ``0600`` like the stores' own files), so that a link
or file planted under that name is never followed, truncated or written: the export is
refused instead, and whatever was there is left as it was. Once complete, the file is
synced and renamed over FILE (replacing FILE itself, even if it is a link), then the
directory is synced. On any failure the partial file is removed, and FILE is untouched.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ._output import _UsageError

__all__ = ["private_output_file"]

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_MODE = 0o600


def _is(directory: int, name: str, created: os.stat_result) -> bool:
    """True when ``name`` in ``directory`` is still the file created as ``created``."""
    try:
        found = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except OSError:
        return False
    return (found.st_dev, found.st_ino) == (created.st_dev, created.st_ino)


@contextlib.contextmanager
def private_output_file(path: str) -> Iterator[IO[bytes]]:
    """A binary file that appears at ``path`` (mode 0600) only once it is complete."""
    target = Path(path)
    if target.name in ("", ".", ".."):
        raise _UsageError(f"cannot write {path!r}: not a file name")
    partial = f".{target.name}.partial"
    shown = target.parent / partial
    try:
        directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _UsageError(f"cannot write {target}: {exc}") from exc
    try:
        try:
            fd = os.open(partial, _CREATE, _MODE, dir_fd=directory)
        except FileExistsError as exc:
            raise _UsageError(
                f"cannot write {target}: {shown} already exists (an export to the same file"
                " is running, or one was killed); it was left as it is: remove it if no"
                " export is running") from exc
        except OSError as exc:
            raise _UsageError(f"cannot write {target}: {shown}: {exc}") from exc
        created = os.fstat(fd)
        try:
            with open(fd, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            if not _is(directory, partial, created):
                raise _UsageError(f"cannot write {target}: {shown} was replaced while writing")
            os.replace(partial, target.name, src_dir_fd=directory, dst_dir_fd=directory)
            os.fsync(directory)
        except BaseException as exc:
            if _is(directory, partial, created):  # ours: never remove what someone put there
                with contextlib.suppress(OSError):
                    os.unlink(partial, dir_fd=directory)
            if isinstance(exc, OSError):
                raise _UsageError(f"cannot write {target}: {exc}") from exc
            raise
    finally:
        os.close(directory)
