"""Steps and pipelines: ``Step.from_callable(f) >> Step.from_callable(g)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..exceptions import PipelineError

__all__ = ["Pipeline", "Step"]


@dataclass(frozen=True)
class Step:
    """One named unit of work: ``func(data)`` or ``func(data, *, context=...)``, sync or async.

    The name identifies the step in saved state, so it must be unique within a pipeline and
    stable across deployments (a renamed step makes old runs refuse to resume).
    """

    name: str
    func: Callable[..., Any]

    @classmethod
    def from_callable(cls, func: Callable[..., Any], *, name: str | None = None) -> Step:
        step_name = name or getattr(func, "__name__", "")
        if not step_name or step_name == "<lambda>":
            raise PipelineError(
                f"give the step for {func!r} a name: Step.from_callable(f, name=...)")
        return cls(step_name, func)

    @property
    def wants_context(self) -> bool:
        try:
            parameters = inspect.signature(self.func).parameters
        except (TypeError, ValueError):
            return False
        return "context" in parameters

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def __rshift__(self, other: Step | Pipeline) -> Pipeline:
        return Pipeline([self]) >> other


class Pipeline:
    """An ordered list of uniquely named steps."""

    def __init__(self, steps: Iterable[Step]) -> None:
        self.steps: tuple[Step, ...] = tuple(steps)
        names = [step.name for step in self.steps]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise PipelineError(f"step names must be unique in a pipeline; repeated: {duplicates}")
        if not self.steps:
            raise PipelineError("a pipeline needs at least one step")

    @property
    def step_names(self) -> list[str]:
        return [step.name for step in self.steps]

    def __rshift__(self, other: Step | Pipeline) -> Pipeline:
        tail = other.steps if isinstance(other, Pipeline) else (other,)
        return Pipeline([*self.steps, *tail])

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        return f"Pipeline({' >> '.join(self.step_names)})"
