"""What ``Flujo.run_async`` returns: a run to await, or to iterate step by step."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from typing import Any, Generic

from ..exceptions import PipelineError
from ._models import PipelineResult, ResultContextT, ResultOutputT, StepResult

__all__ = ["RunHandle"]


class RunHandle(Generic[ResultContextT, ResultOutputT]):
    """What ``run_async`` returns: await it for the result, or ``async for`` its step results.

    After an ``async for`` loop ends, ``result`` holds the ``PipelineResult``.
    """

    __module__ = "flujo"  # its public home, in reprs, tracebacks and pickles

    def __init__(self, steps: AsyncIterator[StepResult],
                 outcome: list[PipelineResult[ResultContextT, ResultOutputT]]) -> None:
        self._steps = steps
        self._outcome = outcome

    @property
    def result(self) -> PipelineResult[ResultContextT, ResultOutputT]:
        if not self._outcome:
            raise PipelineError("the run has not finished; await it or iterate it to the end")
        return self._outcome[0]

    def __aiter__(self) -> AsyncIterator[StepResult]:
        return self._steps

    async def aclose(self) -> None:
        """Stop a run left unfinished (e.g. after ``break``): its claim is released now.

        Without it, a generator abandoned mid-iteration keeps the claim until it is
        garbage-collected. ``async with runner.run_async(...) as run:`` calls it for you.
        """
        await self._steps.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> RunHandle[ResultContextT, ResultOutputT]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _finish(self) -> PipelineResult[ResultContextT, ResultOutputT]:
        async for _ in self._steps:
            pass
        return self.result

    def __await__(self) -> Generator[Any, None, PipelineResult[ResultContextT, ResultOutputT]]:
        return self._finish().__await__()
