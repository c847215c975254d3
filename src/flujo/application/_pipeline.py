"""Steps and pipelines: ``Step.from_callable(f) >> Step.from_callable(g)``."""

from __future__ import annotations

import collections
import inspect
import math
import threading
import typing
import warnings
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from pydantic import BaseModel

from ..exceptions import PipelineError

__all__ = ["Backoff", "Pipeline", "Step"]

#: Seconds before retry ``n`` (1 for the first retry), or a base number of seconds doubled
#: for each retry up to ``MAX_BACKOFF_S``: ``backoff=0.5`` waits 0.5, 1, 2, ... seconds.
Backoff = float | Callable[[int], float]
MAX_BACKOFF_S = 300.0

# What a step takes and gives, for type checkers: ``Step[In, Out]``, ``Pipeline[In, Out]``.
# A step taking a wider input, or giving a narrower output, may stand in for another.
InT_contra = TypeVar("InT_contra", contravariant=True)
OutT_co = TypeVar("OutT_co", covariant=True)
_In = TypeVar("_In")
_Mid = TypeVar("_Mid")
_Out = TypeVar("_Out")
_Answer = TypeVar("_Answer", bound=BaseModel)
_Params = ParamSpec("_Params")


@dataclass(frozen=True)
class Step(Generic[InT_contra, OutT_co]):
    """One named unit of work: ``func(data)`` or ``func(data, *, context=...)``, sync or async.

    The name identifies the step in saved state, so it must be unique within a pipeline and
    stable across deployments (a renamed step makes old runs refuse to resume). The other
    fields are the step's policy; see ``from_callable`` and ``human``.

    For type checkers a step is ``Step[In, Out]``: ``from_callable`` reads ``In`` and ``Out``
    from the function's first parameter and its return type (an async function's awaited
    result), and ``a >> b`` is accepted only where ``b`` takes what ``a`` gives.
    """

    name: str
    func: Callable[..., Any] | None
    retries: int = 0
    backoff: Backoff = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    timeout: float | None = None
    interruptible: bool = False
    input_model: type[BaseModel] | None = None
    prompt: str = ""

    def __post_init__(self) -> None:
        _check_policy(self)

    @overload
    @classmethod
    def from_callable(
        cls, func: Callable[Concatenate[_In, _Params], Awaitable[_Out]], *,
        name: str | None = None, retries: int = 0, backoff: Backoff = 0.0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        timeout: float | None = None, interruptible: bool = False,
    ) -> Step[_In, _Out]: ...

    @overload
    @classmethod
    def from_callable(
        cls, func: Callable[Concatenate[_In, _Params], _Out], *, name: str | None = None,
        retries: int = 0, backoff: Backoff = 0.0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        timeout: float | None = None, interruptible: bool = False,
    ) -> Step[_In, _Out]: ...

    @classmethod
    def from_callable(
        cls, func: Callable[..., Any], *, name: str | None = None, retries: int = 0,
        backoff: Backoff = 0.0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        timeout: float | None = None, interruptible: bool = False,
    ) -> Step[Any, Any]:
        """A step running ``func``.

        ``retries``: how many times a failed attempt is tried again (the context and input
        of every attempt are those from before the first); only errors that are instances of
        ``retry_on`` are retried. ``backoff``: seconds to wait before retry *n* (see
        ``Backoff``). ``timeout``: seconds an attempt of an async step may take before it
        is cancelled and fails with ``TimeoutError``. ``interruptible``: an async step that may
        be cancelled at once when the run's cancellation is requested (by default a
        cancellation waits for the step to end).
        """
        step_name = name or getattr(func, "__name__", "")
        if not step_name or step_name == "<lambda>":
            raise PipelineError(
                f"give the step for {func!r} a name: Step.from_callable(f, name=...)")
        if not callable(func):
            raise PipelineError(f"step {step_name!r}: {func!r} is not callable")
        errors = retry_on if isinstance(retry_on, tuple) else (retry_on,)
        return cls(step_name, func, retries=retries, backoff=backoff, retry_on=errors,
                   timeout=timeout, interruptible=interruptible)

    @classmethod
    def human(cls, name: str, *, input_model: type[_Answer],
              prompt: str = "") -> Step[Any, _Answer]:
        """A step that pauses the run until a person answers with an ``input_model``.

        The answer (``runner.resume(run_id, answer)``) is validated against ``input_model``
        and becomes this step's output, handed to the next step.
        """
        if not isinstance(name, str) or not name:
            raise PipelineError(f"a human step needs a name, got {name!r}")
        step: Step[Any, _Answer] = Step(name, None, input_model=input_model, prompt=prompt)
        return step

    @property
    def wants_context(self) -> bool:
        if self.func is None:
            return False
        try:
            parameters = inspect.signature(self.func).parameters
        except (TypeError, ValueError):
            return False
        return "context" in parameters

    @property
    def is_async(self) -> bool:
        """Deprecated (nothing in flujo reads it): ``inspect.iscoroutinefunction(step.func)``."""
        warnings.warn("Step.is_async is deprecated and will be removed in flujo 1.0: use"
                      " inspect.iscoroutinefunction(step.func)", DeprecationWarning, stacklevel=2)
        return _is_async(self.func)

    def backoff_delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        if callable(self.backoff):
            try:
                delay = self.backoff(retry)
            except Exception as exc:
                raise PipelineError(
                    f"step {self.name!r}: backoff({retry}) raised {type(exc).__name__}: {exc}"
                ) from exc
            if not is_seconds(delay, zero=True):
                raise PipelineError(
                    f"step {self.name!r}: backoff({retry}) returned {delay!r}; it must return a"
                    " finite number of seconds >= 0")
            return float(delay)
        return min(float(self.backoff) * 2.0 ** min(retry - 1, 64), MAX_BACKOFF_S)

    @overload
    def __rshift__(self: Step[_In, _Mid], other: Step[_Mid, _Out]) -> Pipeline[_In, _Out]: ...

    @overload
    def __rshift__(self: Step[_In, _Mid],
                   other: Pipeline[_Mid, _Out]) -> Pipeline[_In, _Out]: ...

    def __rshift__(self, other: Step[Any, Any] | Pipeline[Any, Any]) -> Pipeline[Any, Any]:
        return Pipeline([self]) >> other


def is_seconds(value: object, *, zero: bool) -> bool:
    """Whether ``value`` is a finite number of seconds (a bool is not), > 0 or (``zero``)
    >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value):
        return False
    return value >= 0 if zero else value > 0


def _is_async(func: Callable[..., Any] | None) -> bool:
    if func is None:
        return False
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None))  # noqa: B004 - an async __call__ counts too


def _check_policy(step: Step[Any, Any]) -> None:
    """Refuse a policy that cannot work, naming the step and the value."""
    what = f"step {step.name!r}"
    if isinstance(step.retries, bool) or not isinstance(step.retries, int) or step.retries < 0:
        raise PipelineError(f"{what}: retries must be an int >= 0, got {step.retries!r}")
    if not callable(step.backoff) and not is_seconds(step.backoff, zero=True):
        raise PipelineError(
            f"{what}: backoff must be seconds (a finite number >= 0) or a function of the"
            f" retry number, got {step.backoff!r}")
    if not step.retry_on or not all(
            isinstance(e, type) and issubclass(e, Exception) for e in step.retry_on):
        # Not BaseException: KeyboardInterrupt, SystemExit and cancellation stop a run.
        raise PipelineError(
            f"{what}: retry_on must be Exception classes, got {step.retry_on!r}")
    if step.timeout is not None and not is_seconds(step.timeout, zero=False):
        raise PipelineError(f"{what}: timeout must be seconds > 0, got {step.timeout!r}")
    if (step.timeout is not None or step.interruptible) and not _is_async(step.func):
        # A sync function runs to its end: nothing can stop it without killing the process.
        raise PipelineError(
            f"{what}: timeout= and interruptible= need an async step (a sync function cannot"
            " be stopped); wrap it: `async def f(x): return await asyncio.to_thread(g, x)`")
    if step.func is None:
        model = step.input_model
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise PipelineError(
                f"{what}: input_model must be a pydantic model class, got {model!r}")
        if not isinstance(step.prompt, str):
            raise PipelineError(f"{what}: prompt must be a str, got {step.prompt!r}")
        from ._human import input_schema  # (a cycle at import time otherwise)

        input_schema(step.name, model)  # one that has no JSON Schema is refused now
    elif step.input_model is not None:
        raise PipelineError(f"{what}: input_model is for Step.human steps")


class _Chain:
    """The steps of a line of pipelines built by ``>>``: ``a >> b >> c`` makes three
    pipelines that are prefixes of one list. Extending the longest of them appends to the
    list; extending a shorter one (a branch) copies its prefix. So building a pipeline of N
    steps step by step costs O(N), not O(N^2)."""

    __slots__ = ("lock", "positions", "steps")

    def __init__(self, steps: tuple[Step[Any, Any], ...]) -> None:
        self.steps = list(steps)
        self.positions = {step.name: index for index, step in enumerate(steps)}
        self.lock = threading.Lock()


class Pipeline(Generic[InT_contra, OutT_co]):
    """An ordered list of uniquely named steps; for type checkers ``Pipeline[In, Out]``, what
    its first step takes and its last step gives (see ``Step``)."""

    __module__ = "flujo"  # its public home, in reprs, tracebacks and pickles

    def __init__(self, steps: Iterable[Step[Any, Any]]) -> None:
        given = tuple(steps)
        if not given:
            raise PipelineError("a pipeline needs at least one step")
        counts = collections.Counter(step.name for step in given)
        duplicates = sorted(n for n, count in counts.items() if count > 1)
        if duplicates:
            raise PipelineError(f"step names must be unique in a pipeline; repeated: {duplicates}")
        self._chain = _Chain(given)
        self._length = len(given)
        self._steps: tuple[Step[Any, Any], ...] | None = given
        self._names: tuple[str, ...] | None = None

    @property
    def steps(self) -> tuple[Step[Any, Any], ...]:
        steps = self._steps
        if steps is None:
            steps = self._steps = tuple(self._chain.steps[:self._length])
        return steps

    @property
    def step_names(self) -> list[str]:
        names = self._names
        if names is None:
            names = self._names = tuple(step.name for step in self.steps)
        return list(names)

    @overload
    def __rshift__(self: Pipeline[_In, _Mid],
                   other: Step[_Mid, _Out]) -> Pipeline[_In, _Out]: ...

    @overload
    def __rshift__(self: Pipeline[_In, _Mid],
                   other: Pipeline[_Mid, _Out]) -> Pipeline[_In, _Out]: ...

    def __rshift__(self, other: Step[Any, Any] | Pipeline[Any, Any]) -> Pipeline[Any, Any]:
        tail = other.steps if isinstance(other, Pipeline) else (other,)
        chain, length = self._chain, self._length
        with chain.lock:
            if len(chain.steps) == length:  # the longest pipeline of its line: append
                repeated = sorted({step.name for step in tail if step.name in chain.positions})
                if not repeated and len({step.name for step in tail}) == len(tail):
                    for step in tail:
                        chain.positions[step.name] = len(chain.steps)
                        chain.steps.append(step)
                    extended: Pipeline[Any, Any] = object.__new__(Pipeline)
                    extended._chain, extended._length = chain, length + len(tail)
                    extended._steps = extended._names = None
                    return extended
        return Pipeline([*self.steps, *tail])  # a branch, or repeated names to report

    def __iter__(self) -> Iterator[Step[Any, Any]]:
        return iter(self.steps)

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        return f"Pipeline({' >> '.join(self.step_names)})"


# Step's public home is ``flujo`` (reprs, tracebacks, pickles). Its field annotations are
# resolved here first: ``typing.get_type_hints`` evaluates a class's string annotations in
# the namespace of the module it names, which would then be ``flujo``'s.
Step.__annotations__ = typing.get_type_hints(Step)
Step.__module__ = "flujo"
