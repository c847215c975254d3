"""One attempt of one step, and the waits between attempts.

An attempt ends in one of four ways: the step's output; the step's exception, re-raised as
it is (a ``Step.human`` step raises PauseForInput); ``CancelRequested`` (the run's
cancellation was requested and the step is ``interruptible``, or it came during a backoff);
or ClaimLostError (this worker lost the run; the step is cancelled if it is async, its
result dropped otherwise).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..exceptions import PauseForInput
from ..state.backends.base import RunClaim
from ._models import PipelineContext
from ._pipeline import Step

__all__ = ["CancelRequested", "attempt", "wait_before_retry"]

#: Asks the store whether the run's cancellation was requested.
CancelCheck = Callable[[], Awaitable[bool]]


class CancelRequested(Exception):
    """The run's cancellation was requested while a step or a backoff was waiting."""


async def attempt(step: Step[Any, Any], data: Any, context: PipelineContext, claim: RunClaim | None,
                  cancel_check: CancelCheck | None, poll_s: float) -> Any:
    """Run one attempt of ``step`` and return its output.

    ``cancel_check`` (for ``interruptible`` steps) is polled every ``poll_s`` seconds while
    the step runs; a requested cancellation cancels the step and raises CancelRequested.
    """
    watch = claim.watch if claim is not None else None
    interrupt = cancel_check if step.interruptible else None
    if watch is None and interrupt is None:
        return await _timed(step, data, context)
    running = asyncio.ensure_future(_timed(step, data, context))
    stoppers: list[asyncio.Future[Any]] = []
    if watch is not None:
        stoppers.append(asyncio.ensure_future(watch.wait()))
    requested: asyncio.Future[Any] | None = None
    if interrupt is not None:
        requested = asyncio.ensure_future(_until_requested(interrupt, poll_s))
        stoppers.append(requested)
    try:
        await asyncio.wait((running, *stoppers), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for stopper in stoppers:
            stopper.cancel()
        if not running.done():
            # The claim was lost, the cancellation requested, or this run itself is being
            # cancelled: the step must have ended before anything else happens.
            running.cancel()
            await asyncio.wait((running,))
        await asyncio.gather(*stoppers, return_exceptions=True)
    if claim is not None:
        claim.check()
    if requested is not None and requested.done() and not requested.cancelled():
        problem = requested.exception()
        if problem is not None:  # the store could not be asked: that is the error
            raise problem
        # Asked to stop: the step's result (one that swallowed its cancellation and
        # returned, too) is dropped, as for a step that was cut short.
        raise CancelRequested
    return running.result()


async def wait_before_retry(seconds: float, claim: RunClaim | None,
                            cancel_check: CancelCheck | None, poll_s: float) -> None:
    """Sleep ``seconds``; raise CancelRequested at once if the run's cancellation is
    requested meanwhile, ClaimLostError if this worker loses the run."""
    deadline = time.monotonic() + seconds
    while True:
        if claim is not None:
            claim.check()
        if cancel_check is not None and await cancel_check():
            raise CancelRequested
        left = deadline - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(left, poll_s))


async def _until_requested(cancel_check: CancelCheck, poll_s: float) -> None:
    while not await cancel_check():
        await asyncio.sleep(poll_s)


async def _timed(step: Step[Any, Any], data: Any, context: PipelineContext) -> Any:
    if step.timeout is None:
        return await _call(step, data, context)
    limit = asyncio.timeout(step.timeout)
    try:
        async with limit:
            return await _call(step, data, context)
    except TimeoutError:
        if not limit.expired():
            raise  # the step's own TimeoutError (an HTTP client's, ...), not the limit
        raise TimeoutError(
            f"step {step.name!r} took over {step.timeout:g} s (timeout=) and was cancelled"
        ) from None


async def _call(step: Step[Any, Any], data: Any, context: PipelineContext) -> Any:
    if step.func is None:  # Step.human: it asks, as a step raising PauseForInput does
        assert step.input_model is not None  # checked when the step was defined
        raise PauseForInput(step.input_model, step.prompt)
    kwargs = {"context": context} if step.wants_context else {}
    result = step.func(data, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result
