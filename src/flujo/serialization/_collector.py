"""Pausing CPython's cyclic garbage collector around one large encode or decode.

Why: a large document decodes to (and encodes from) tens of thousands of new containers. Each
700 of them start a young collection, and the objects that survive two of those count
toward a full collection of the whole heap, which then runs again and again while the
result grows: the events workload (300,000 records) decoded 2.7 times slower per record
than at 1,000 (docs/performance.md, "Pausing the collector"). None of those objects can be
cyclic garbage yet: they are being built.

What: the collector is turned off for the call, then turned back on. CPython counts the
containers made meanwhile all the same, so the collection the call put off runs at the next
allocation after it, once, of the generation CPython chooses: a decode's result is traversed
once, by one young collection, as it would have been at least once without the pause.
Containers a call frees again (an encode's intermediate data) lower the count as they go,
and cost no collection at all.

Rules that keep it safe:

- Only the call that turned the collector off turns it back on (``pause`` returns whether
  it did): a call inside a call, or a second thread's call meanwhile, leaves it alone; the
  collector is on again as soon as the first call ends. An application that turned the
  collector off itself keeps it off.
- A pause never spans an ``await``: every caller pauses inside one synchronous call.
- ``set_collector_pause(False)`` turns the behaviour off for the process.

What it cannot tell: a thread that turns the collector off while another thread's large
decode has it paused finds it on again when that decode ends.
"""

from __future__ import annotations

import gc
import threading
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Final

from ..exceptions import InvalidArgumentError

__all__ = ["PAUSE_BYTES", "PAUSE_OBJECTS", "collector_paused", "pause", "resume",
           "set_collector_pause"]

# A document of at least this many bytes is decoded with the collector paused: below it the
# pause would cost more than the few young collections it saves.
PAUSE_BYTES: Final = 64 * 1024
# An encode pauses the collector once it has noted this many containers (Encoder.note).
PAUSE_OBJECTS: Final = 512

_lock: Final = threading.Lock()
_enabled = True


def set_collector_pause(enabled: bool) -> bool:
    """Whether flujo pauses the garbage collector while it encodes or decodes a large value
    (on by default; see docs/performance.md). Returns the previous setting."""
    global _enabled
    if type(enabled) is not bool:
        raise InvalidArgumentError(f"enabled must be True or False, got {enabled!r}")
    with _lock:
        previous, _enabled = _enabled, enabled
    return previous


def pause() -> bool:
    """Turn the collector off if it is on and pausing is enabled; True when this call did
    (its caller must then ``resume``)."""
    with _lock:
        if not _enabled or not gc.isenabled():
            return False
        gc.disable()
        return True


def resume() -> None:
    """Turn the collector back on (after ``pause`` returned True). The collection the pause
    put off, if one is due, is CPython's to run, at the next allocation of a container: one
    collection, of the generation CPython chooses, instead of many."""
    with _lock:
        gc.enable()


class _Pause:
    """``with``: the collector paused (if this one turned it off) for the block."""

    __slots__ = ("_owner",)

    def __init__(self) -> None:
        self._owner = False

    def __enter__(self) -> None:
        self._owner = pause()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._owner:
            self._owner = False
            resume()


_NO_PAUSE: Final = nullcontext()


def collector_paused(size: int | None = None) -> AbstractContextManager[None]:
    """A context manager that pauses the garbage collector for a synchronous block that
    builds many objects at once (never across an ``await``), as flujo does around a large
    encode or decode. ``size``: the bytes of the document the block reads; below
    ``PAUSE_BYTES`` nothing is paused."""
    if size is not None and size < PAUSE_BYTES:
        return _NO_PAUSE
    return _Pause()
