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


def test_the_registry_s_list_readers_warn_and_still_read() -> None:
    from pydantic import BaseModel

    from flujo.serialization import TypeRegistry, safe_deserialize, safe_serialize
    from flujo.serialization._registry import Decoder
    from flujo.serialization._rows import parse_header

    class Row(BaseModel):
        n: int

    registry = TypeRegistry(model_rows=False)
    registry.register_type(Row, name="tests.Row")
    written = safe_serialize([Row(n=1), Row(n=2)], registry=registry)
    assert written["$t"] == "models@1"
    assert safe_deserialize(written, registry=registry) == [Row(n=1), Row(n=2)]
    decoder = Decoder(registry, strict=True, max_depth=64)
    with pytest.warns(DeprecationWarning, match="decode_model_batch is deprecated"):
        back = registry.decode_model_batch(decoder, *written["v"], 0)
    assert back == [Row(n=1), Row(n=2)]
    stored = parse_header(["n"], 1, decoder.limit, decoder.max_depth)
    with pytest.warns(DeprecationWarning, match="decode_model_rows is deprecated"):
        assert registry.decode_model_rows(decoder, "tests.Row@1", stored, [[3]], 0) \
            == [Row(n=3)]


def test_earlier_constructions_keep_working() -> None:
    from decimal import Decimal

    from flujo.exceptions import UnportableTypeWarning
    from flujo.serialization import TypeRegistry

    warning = UnportableTypeWarning(Decimal)  # as flujo 0.16 made it
    assert warning.cls is Decimal and "Decimal" in str(warning)
    registry = TypeRegistry()

    def from_text(text: str) -> Decimal:
        return Decimal(text)

    codec = registry.register_custom_serializer(Decimal, str, deserializer=from_text,
                                                name="tests.Dec", schema={"type": "string"})
    assert codec.deserializer is from_text  # deprecated, still set
