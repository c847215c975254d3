"""Pausing CPython's cyclic garbage collector around one large encode or decode.

Why: a large document decodes to (and encodes from) tens of thousands of new containers. Each
700 of them start a young collection, and the objects that survive two of those count
toward a full collection of the whole heap, which then runs again and again while the
result grows: the events workload (300,000 records) decoded about 3 times slower per record
than at 1,000 (docs/performance.md, "Pausing the collector"). None of those objects can be
cyclic garbage yet: they are being built.

What: the collector is turned off for the call, then turned back on. CPython counts the
containers made meanwhile all the same, so the collection the call put off runs at the next
allocation after it, once, of the generation CPython chooses: a decode's result is traversed
once, by one young collection, as it would have been at least once without the pause.
Containers a call frees again (an encode's intermediate data) lower the count as they go,
and cost no collection at all.

Rules that keep it safe:

- A call claims the pause (``pause(claim)``, a ``Claim`` of its own) and only the claim that
  turned the collector off turns it back on (``resume(claim)``, in a ``finally``): a call
  inside a call, or a second thread's call meanwhile, leaves it alone, and the collector is
  on again as soon as the first call ends, however long other calls go on. A collector the
  application turned off before the call stays off.
- This module is compiled (mypyc), and only compiled it pauses (``ACTIVE``): ``pause``,
  ``resume`` and the ``with`` block's enter and exit then run as C, where no signal handler
  (KeyboardInterrupt) and no other thread can run between turning the collector off and
  recording the claim, or between dropping the claim and turning it on. Interpreted, a
  handler could run at either point and leave the collector off; the pure-Python form
  (no C compiler, or ``FLUJO_PURE_PYTHON=1``) therefore never pauses.
- No lock: a signal handler that serializes cannot deadlock.
- A pause never spans an ``await``: every caller pauses inside one synchronous call.
- ``set_collector_pause(False)`` turns the behaviour off for the process.

What it cannot tell, because the collector is one switch for the process: while a large
call runs in one thread, other threads (an event loop waiting for that thread, say)
allocate with the collector off too, for as long as that call lasts; garbage cycles made
meanwhile (by a custom serializer, say) wait until it ends; and code that turns the
collector off during the call (in that thread or another) finds it on again after it.
"""

from __future__ import annotations

import gc
import types
from contextlib import AbstractContextManager, nullcontext
from typing import Final

from ..exceptions import InvalidArgumentError

__all__ = ["ACTIVE", "PAUSE_BYTES", "PAUSE_OBJECTS", "PAUSE_STATE", "Claim",
           "collector_paused", "pause", "resume", "set_collector_pause"]

# A document of at least this many bytes is decoded with the collector paused: below it the
# pause would cost more than the few young collections it saves.
PAUSE_BYTES: Final = 64 * 1024
# An encode pauses the collector once it has noted this many containers (Encoder.note).
PAUSE_OBJECTS: Final = 512


def _probe() -> None:
    """A function of this module: interpreted, a Python function; compiled, a builtin."""


# Whether this module runs compiled, the only form that pauses (see the docstring).
ACTIVE: Final = not isinstance(_probe, types.FunctionType)


class Claim:
    """What a call pauses the collector under."""


class _State:
    def __init__(self) -> None:
        self.enabled = True  # set_collector_pause
        # The claim of the call that turned the collector off, until it turns it back on.
        self.owner: Claim | None = None


PAUSE_STATE: Final = _State()


def set_collector_pause(enabled: object) -> bool:
    """Whether flujo pauses the garbage collector while it encodes or decodes a large value
    (on by default; see docs/performance.md): ``True`` or ``False``. Returns the previous
    setting."""
    # (object, not bool: compiled, a bool parameter would refuse anything else with a bare
    # TypeError before this check could name the value)
    if type(enabled) is not bool:
        raise InvalidArgumentError(f"enabled must be True or False, got {enabled!r}")
    previous = PAUSE_STATE.enabled
    PAUSE_STATE.enabled = enabled is True
    return previous


def pause(claim: Claim) -> None:
    """Turn the collector off for ``claim``'s call, if it is on and pausing is enabled. The
    caller must call ``resume(claim)`` in a ``finally`` (whether or not this paused)."""
    if not ACTIVE or not PAUSE_STATE.enabled or not gc.isenabled():
        return  # off already: the application's doing, or another call's pause
    gc.disable()
    PAUSE_STATE.owner = claim


def resume(claim: Claim) -> None:
    """Turn the collector back on if ``claim``'s call turned it off. The collection the
    pause put off, if one is due, is CPython's to run, at the next allocation of a
    container: one collection, of the generation CPython chooses, instead of many."""
    if PAUSE_STATE.owner is claim:
        PAUSE_STATE.owner = None
        gc.enable()


class _Pause(Claim):
    """``with``: the collector paused (if this block turned it off) for the block. The
    instance is its own claim."""

    def __enter__(self) -> None:
        pause(self)

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        resume(self)


_NO_PAUSE: Final = nullcontext()


def collector_paused(size: object = None) -> AbstractContextManager[None]:
    """A context manager that pauses the garbage collector for a synchronous block that
    builds many objects at once (never across an ``await``), as flujo does around a large
    encode or decode. ``size`` (an int): the bytes of the document the block reads; below
    ``PAUSE_BYTES`` nothing is paused."""
    # (object, not int | None: compiled, the parameter's type would refuse anything else
    # with a bare TypeError before this check could name the value)
    if size is None:
        return _Pause()
    if type(size) is not int:
        raise InvalidArgumentError(f"size must be an int or None, got {size!r}")
    return _NO_PAUSE if size < PAUSE_BYTES else _Pause()
