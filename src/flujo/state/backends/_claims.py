"""Claims: the proof a worker holds a run exclusively, and how a lease tells it it ended."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from flujo.exceptions import BackendConfigError, ClaimLostError

from .._runid import validate_run_id
from ..models import utc_now

__all__ = ["HOST", "ClaimHolder", "ClaimWatch", "RunClaim", "holder_name", "run_ids_asked"]


#: This machine's name, read once: a claim names its holder by it (an audited socket call,
#: made at import rather than while a run is claimed).
HOST = socket.gethostname()


def holder_name() -> str:
    """Who holds a claim, for operators: host, process id, and a random part."""
    return f"{HOST}:{os.getpid()}:{secrets.token_hex(4)}"


def run_ids_asked(run_ids: Sequence[str]) -> list[str]:
    """The run ids given to ``claim_holders``, each checked (a lone str is refused: it
    would be read as its characters)."""
    if isinstance(run_ids, str | bytes) or not isinstance(run_ids, Sequence | set | frozenset):
        raise BackendConfigError(
            f"claim_holders takes a list of run ids, got {type(run_ids).__name__}")
    return [validate_run_id(run_id) for run_id in run_ids]


@dataclass(frozen=True)
class ClaimHolder:
    """Who holds a run's claim now (``StateBackend.claim_holders``): ``holder`` names the
    worker (``host:pid:random``) and ``since`` when it took the claim (UTC)."""

    holder: str
    since: datetime


class ClaimWatch:
    """Tells the holder of a claim that can end while held (a lease) that it has ended.

    The claim is lost once ``lose`` is called (from any thread), or once the monotonic
    ``deadline`` passes before ``extend`` moves it on; a lost claim stays lost. ``what``
    names the run in ``ClaimLostError``.
    """

    def __init__(self, what: str, deadline: float | None = None) -> None:
        self._what = what
        self._deadline = deadline
        self._reason: str | None = None
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def _reason_locked(self) -> str | None:
        if (self._reason is None and self._deadline is not None
                and time.monotonic() >= self._deadline):
            self._reason = "it could not be renewed in time"
        return self._reason

    @property
    def reason(self) -> str | None:
        """Why the claim was lost, or None while it is held."""
        with self._lock:
            return self._reason_locked()

    def extend(self, deadline: float) -> bool:
        """Move the deadline on (a renewal succeeded); False if the claim is already lost."""
        with self._lock:
            if self._reason_locked() is not None:
                return False
            self._deadline = deadline
            return True

    def lose(self, reason: str) -> None:
        """Mark the claim lost (the first reason stays) and wake every ``wait``."""
        with self._lock:
            if self._reason_locked() is None:
                self._reason = reason
            waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_wake, waiter)

    def check(self) -> None:
        """Raise ClaimLostError if the claim is lost."""
        reason = self.reason
        if reason is not None:
            raise ClaimLostError(f"{self._what}: this worker lost its claim on the run"
                                 f" ({reason}); it stops, saving nothing more")

    async def wait(self) -> str:
        """Wait until the claim is lost; return why."""
        loop = asyncio.get_running_loop()
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            with self._lock:
                reason = self._reason_locked()
                if reason is not None:
                    return reason
                deadline = self._deadline
                self._waiters.append((loop, waiter))
            try:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, timeout)
            finally:
                with self._lock, contextlib.suppress(ValueError):
                    self._waiters.remove((loop, waiter))


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(frozen=True)
class RunClaim:
    """Proof that this worker holds the exclusive claim on ``run_id`` (see ``claim``).

    ``epoch`` is the fencing token of a claim a backend can check at write time (PostgreSQL:
    it grows with every claim of the run, and a save under an older one is refused); None
    for claims that are not fenced. ``watch`` tells the runner when a claim that can end
    while held (a lease) has ended; None for claims that last until released.
    """

    run_id: str
    acquired_at: datetime = field(default_factory=utc_now)
    epoch: int | None = None
    watch: ClaimWatch | None = field(default=None, compare=False, repr=False)

    @property
    def lost(self) -> bool:
        """Whether the claim ended while held (it can no longer be used to save)."""
        return self.watch is not None and self.watch.reason is not None

    def check(self) -> None:
        """Raise ``ClaimLostError`` if the claim was lost."""
        if self.watch is not None:
            self.watch.check()
