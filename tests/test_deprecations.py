"""Names on their way out keep working until 1.0, and say what replaces them."""

from __future__ import annotations

import asyncio

import pytest

from flujo import Step
from flujo.state import InMemoryBackend, WorkflowState


async def _double(x: int) -> int:
    return 2 * x


def _triple(x: int) -> int:
    return 3 * x


def test_step_is_async_warns_and_still_answers() -> None:
    for func, expected in ((_double, True), (_triple, False)):
        step = Step.from_callable(func)
        with pytest.warns(DeprecationWarning, match=r"inspect\.iscoroutinefunction"):
            assert step.is_async is expected


def test_load_workflow_state_warns_and_still_loads() -> None:
    async def scenario() -> None:
        backend = InMemoryBackend()
        await backend.save_state("r", WorkflowState(run_id="r", pipeline_name="p",
                                                    pipeline_context={"n": 1}))
        with pytest.warns(DeprecationWarning, match=r"load_record\(run_id\)\)\.state"):
            state = await backend.load_workflow_state("r")
        assert state is not None and state.pipeline_context == {"n": 1}
        with pytest.warns(DeprecationWarning):
            assert await backend.load_workflow_state("missing") is None

    asyncio.run(scenario())


def test_flujo_tools_is_flujo_schema_with_a_warning() -> None:
    import flujo.schema
    import flujo.tools

    for name in flujo.schema.__all__:
        with pytest.warns(DeprecationWarning, match=rf"use flujo\.schema\.{name}\b"):
            assert getattr(flujo.tools, name) is getattr(flujo.schema, name)
    assert set(flujo.schema.__all__) <= set(dir(flujo.tools))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        flujo.tools.nothing  # noqa: B018


def test_a_star_import_of_flujo_tools_brings_flujo_schema_s_names() -> None:
    import flujo.schema

    namespace: dict[str, object] = {}
    with pytest.warns(DeprecationWarning):
        exec("from flujo.tools import *", namespace)
    assert {name: namespace[name] for name in flujo.schema.__all__} == {
        name: getattr(flujo.schema, name) for name in flujo.schema.__all__}
