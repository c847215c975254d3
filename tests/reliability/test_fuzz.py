"""Property-based fuzzing: only flujo's own exceptions may escape, and models round-trip.

* ``safe_deserialize`` (and ``deserialize_from_json``) on arbitrary JSON data, with tagged
  objects naming real and made-up types, and on arbitrary bytes;
* the envelope reader (``EnvelopeCodec.parse``/``open`` through a backend's ``load_record``)
  on arbitrary bytes, on arbitrary JSON documents, and on genuine records with one random
  part replaced, deleted or bit-flipped, with and without encryption;
* a round trip over generated pydantic models: random fields, nesting, optionals, unions,
  generic models, containers of models, through ``safe_serialize`` and through a backend.

``FLUJO_FUZZ_EXAMPLES`` sets the number of examples per property (CI default: 450, a third
of that for the model properties);
``scripts/reliability/fuzz_campaign.py`` runs this file with many more.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import itertools
import json
import os
import warnings
import zlib
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Generic, Optional, TypeVar, Union
from uuid import UUID
from zoneinfo import ZoneInfo, available_timezones

import pytest
from _common import difference
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from flujo.exceptions import FlujoError
from flujo.serialization import deserialize_from_json, safe_deserialize, safe_serialize
from flujo.state import Encryption, InMemoryBackend, WorkflowState
from flujo.state._envelope import CODECS

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("FLUJO_FUZZ_EXAMPLES", "450"))
_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=_CHECKS)
# generating a model class costs far more than an example of raw data: a third as many
FUZZ_MODELS = settings(max_examples=max(1, EXAMPLES // 3), deadline=None,
                       suppress_health_check=_CHECKS)

# -- arbitrary JSON, tags included ---------------------------------------------------------------

TAG_NAMES = ["set", "frozenset", "tuple", "dict", "ordereddict", "counter", "deque",
             "defaultdict", "datetime", "date", "time", "timedelta", "uuid", "decimal", "float",
             "int", "complex", "bytes", "bytearray", "path.posix", "path.windows",
             "purepath.posix", "purepath.windows", "models", "flujo.PipelineContext",
             "flujo.StepResult", "flujo.PipelineResult", "os:system", "builtins:eval",
             f"{__name__}:Shade", f"{__name__}:Leaf", f"{__name__}:Box[int]", "", "@"]
json_leaves = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
               | st.sampled_from(["nan", "inf", "-inf", "0x1f", "-0x1", "2024-01-01",
                                  "2024-01-01T00:00:00+01:00[Europe/Paris]", "AAAA", "1.5",
                                  "12:00", "00000000-0000-0000-0000-000000000000"]))
tags = st.builds(lambda name, version: f"{name}@{version}",
                 st.sampled_from(TAG_NAMES) | st.text(max_size=8),
                 st.sampled_from(["1", "2", "0", "01", "-1", "x", ""]) | st.text(max_size=3))


def _tagged(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (st.builds(lambda t, v: {"$t": t, "v": v}, tags, children)
            | st.builds(lambda t, v, extra: {"$t": t, "v": v, **extra}, tags, children,
                        st.dictionaries(st.text(max_size=3), children, max_size=2)))


json_values = st.recursive(
    json_leaves,
    lambda children: (st.lists(children, max_size=5)
                      | st.dictionaries(st.text(max_size=8), children, max_size=5)
                      | _tagged(children)
                      | st.lists(st.lists(children, min_size=2, max_size=2), max_size=4)),
    max_leaves=40)


def _only_flujo_errors(action: Any) -> Any:
    try:
        return action()
    except FlujoError:
        return None


@FUZZ
@given(data=json_values, strict=st.booleans())
def test_safe_deserialize_arbitrary_json(data: Any, strict: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _only_flujo_errors(lambda: safe_deserialize(data, strict=strict))


@FUZZ
@given(data=json_values)
def test_deserialize_from_json_text(data: Any) -> None:
    try:
        text = json.dumps(data)
    except ValueError:
        return
    _only_flujo_errors(lambda: deserialize_from_json(text))


@FUZZ
@given(raw=st.binary(max_size=200) | st.text(max_size=200))
def test_deserialize_from_json_arbitrary_bytes(raw: bytes | str) -> None:
    _only_flujo_errors(lambda: deserialize_from_json(raw))


# -- the envelope reader ------------------------------------------------------------------------

KEY = bytes(range(32))
ENCRYPTION = Encryption({"k": KEY}, active_key_id="k")


def _genuine() -> dict[str, bytes]:
    async def make() -> dict[str, bytes]:
        records: dict[str, bytes] = {}
        for name, options in (("plain", {}), ("zlib", {"compression": "zlib"}),
                              ("zstd", {"compression": "zstd"}),
                              ("sealed", {"encryption": ENCRYPTION, "compression": "zlib"})):
            backend = InMemoryBackend(**options)
            state = WorkflowState(run_id="r", pipeline_name="fuzz", pipeline_context={
                "d": Decimal("1.10"), "t": datetime(2026, 1, 1, tzinfo=UTC), "s": {1, 2},
                "b": b"\x00", "n": [1, {"k": (1, 2)}]})
            await backend.save_state("r", state)
            records[name] = backend.raw_records()["r"]
        return records

    return asyncio.run(make())


GENUINE = _genuine()


def _load(raw: bytes, *, encrypted: bool) -> None:
    async def go() -> None:
        backend = InMemoryBackend(encryption=ENCRYPTION) if encrypted else InMemoryBackend()
        backend.put_raw("r", raw)
        await backend.load_record("r")
        await backend.read_envelope("r")
        await backend.list_runs()

    _only_flujo_errors(lambda: asyncio.run(go()))


@FUZZ
@given(raw=st.binary(max_size=400), encrypted=st.booleans())
def test_envelope_reader_arbitrary_bytes(raw: bytes, encrypted: bool) -> None:
    _load(raw, encrypted=encrypted)


envelope_docs = st.fixed_dictionaries(
    {},
    optional={
        "format": st.just("flujo.state") | json_leaves,
        "envelope_version": st.just(1) | json_leaves,
        "run_id": st.just("r") | json_leaves,
        "revision": st.integers(-2, 2**70) | json_leaves,
        "state_version": st.integers(-1, 3) | json_leaves,
        "manifest": st.dictionaries(st.sampled_from(TAG_NAMES), st.integers(-1, 3)) | json_values,
        "pipeline_name": st.just("fuzz") | json_leaves,
        "status": st.sampled_from(["running", "completed", "x"]) | json_leaves,
        "created_at": st.just("2026-01-01T00:00:00.000000+00:00") | json_leaves,
        "updated_at": st.just("2026-01-01T00:00:00.000000+00:00") | json_leaves,
        "codec": st.sampled_from(CODECS) | json_leaves,
        "key_id": st.sampled_from([None, "k", "other"]) | json_leaves,
        "payload": json_values | st.binary(max_size=100).map(
            lambda b: base64.b64encode(b).decode())
        | json_values.map(lambda v: base64.b64encode(
            zlib.compress(json.dumps(v).encode())).decode()),
        "current_step_index": json_leaves,
        "pipeline_context": json_values,
    })


@FUZZ
@given(doc=envelope_docs, encrypted=st.booleans())
def test_envelope_reader_arbitrary_documents(doc: dict[str, Any], encrypted: bool) -> None:
    try:
        raw = json.dumps(doc).encode()
    except ValueError:
        return
    _load(raw, encrypted=encrypted)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@FUZZ
@given(which=st.sampled_from(sorted(GENUINE)), data=st.data())
def test_envelope_reader_mutated_genuine_records(which: str, data: st.DataObject) -> None:
    raw = GENUINE[which]
    encrypted = which == "sealed"
    how = data.draw(st.sampled_from(["replace", "delete", "flip", "truncate"]))
    if how in ("flip", "truncate"):
        position = data.draw(st.integers(0, len(raw) - 1))
        if how == "flip":
            mutated = bytearray(raw)
            mutated[position] ^= 1 << data.draw(st.integers(0, 7))
            _load(bytes(mutated), encrypted=encrypted)
        else:
            _load(raw[:position], encrypted=encrypted)
        return
    doc = json.loads(raw)
    path = data.draw(st.sampled_from(_paths(doc)[1:]))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if how == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(json_values)
    try:
        text = json.dumps(doc).encode()
    except ValueError:
        return
    _load(text, encrypted=encrypted)


# -- generated pydantic models round-trip ---------------------------------------------------------

class Shade(enum.Enum):
    DARK = "dark"
    LIGHT = 2


class Leaf(BaseModel):
    name: str = "leaf"
    at: datetime | None = None


T = TypeVar("T")


class Box(BaseModel, Generic[T]):
    item: T
    more: list[T] = []


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")
    a: int = 0


OFFSETS = st.builds(lambda minutes: timezone(timedelta(minutes=minutes)),
                    st.integers(-23 * 60, 23 * 60))
# (zones outside available_timezones(), e.g. posix/..., are refused when written, and so is
# the machine's own, which some systems list)
KNOWN_ZONES = sorted(available_timezones() - {"localtime", "posixrules"})
ZONES = st.none() | OFFSETS | st.sampled_from(KNOWN_ZONES).map(ZoneInfo) | st.just(UTC)


# (python type, value strategy, hashable)
LEAVES: dict[str, tuple[Any, st.SearchStrategy[Any], bool]] = {
    "int": (int, st.integers(), True),
    "str": (str, st.text(max_size=10), True),
    "float": (float, st.floats(), False),
    "bool": (bool, st.booleans(), True),
    "decimal": (Decimal, st.decimals(allow_nan=False, allow_infinity=False, places=None),
                True),
    "datetime": (datetime, st.datetimes(timezones=ZONES), True),
    "date": (date, st.dates(), True),
    "time": (time, st.times(timezones=st.none() | OFFSETS), True),
    "timedelta": (timedelta, st.timedeltas(), True),
    "uuid": (UUID, st.uuids(), True),
    "bytes": (bytes, st.binary(max_size=10), True),
    "enum": (Shade, st.sampled_from(Shade), True),
    "leaf": (Leaf, st.builds(Leaf, name=st.text(max_size=5),
                             at=st.none() | st.datetimes(timezones=ZONES)), False),
    "any": (Any, json_leaves, False),
}
_names = itertools.count()


def leaf_specs() -> st.SearchStrategy[Any]:
    return st.sampled_from(sorted(LEAVES)).map(lambda name: ("leaf", name))


def type_specs(depth: int = 0) -> st.SearchStrategy[Any]:
    if depth >= 3:
        return leaf_specs()
    inner = st.deferred(lambda: type_specs(depth + 1))
    hashable = st.sampled_from(sorted(n for n, (_, _, h) in LEAVES.items() if h)).map(
        lambda name: ("leaf", name))
    return st.one_of(
        leaf_specs(), leaf_specs(),
        st.tuples(st.just("list"), inner), st.tuples(st.just("dict"), inner),
        st.tuples(st.just("tuple"), inner), st.tuples(st.just("set"), hashable),
        st.tuples(st.just("frozenset"), hashable), st.tuples(st.just("optional"), inner),
        st.tuples(st.just("union"), inner, inner), st.tuples(st.just("box"), inner),
        model_specs(depth + 1),
    )


def model_specs(depth: int = 0) -> st.SearchStrategy[Any]:
    return st.builds(lambda fields, extra: ("model", tuple(fields), extra),
                     st.lists(st.deferred(lambda: type_specs(depth)), max_size=4),
                     st.booleans())


def python_type(spec: Any) -> Any:
    kind = spec[0]
    if kind == "leaf":
        return LEAVES[spec[1]][0]
    if kind == "list":
        return list[python_type(spec[1])]  # type: ignore[misc]
    if kind == "dict":
        return dict[str, python_type(spec[1])]  # type: ignore[misc]
    if kind == "tuple":
        return tuple[python_type(spec[1]), ...]  # type: ignore[misc]
    if kind == "set":
        return set[python_type(spec[1])]  # type: ignore[misc]
    if kind == "frozenset":
        return frozenset[python_type(spec[1])]  # type: ignore[misc]
    if kind == "optional":
        return Optional[python_type(spec[1])]  # noqa: UP045
    if kind == "union":
        return Union[python_type(spec[1]), python_type(spec[2])]  # noqa: UP007
    if kind == "box":
        return Box[python_type(spec[1])]  # type: ignore[misc]
    return make_model(spec)


_MODELS: dict[Any, type[BaseModel]] = {}


def make_model(spec: Any) -> type[BaseModel]:
    model = _MODELS.get(spec)
    if model is None:
        _, fields, extra = spec
        definitions: dict[str, Any] = {f"f{i}": (python_type(f), ...) for i, f in
                                       enumerate(fields)}
        config = ConfigDict(extra="allow") if extra else None
        model = create_model(f"Gen{next(_names)}", __config__=config, **definitions)
        _MODELS[spec] = model
    return model


def values(spec: Any) -> st.SearchStrategy[Any]:
    kind = spec[0]
    if kind == "leaf":
        return LEAVES[spec[1]][1]
    if kind == "list":
        return st.lists(values(spec[1]), max_size=3)
    if kind == "dict":
        return st.dictionaries(st.text(max_size=5), values(spec[1]), max_size=3)
    if kind == "tuple":
        return st.lists(values(spec[1]), max_size=3).map(tuple)
    if kind == "set":
        return st.sets(values(spec[1]), max_size=3)
    if kind == "frozenset":
        return st.frozensets(values(spec[1]), max_size=3)
    if kind == "optional":
        return st.none() | values(spec[1])
    if kind == "union":
        return values(spec[1]) | values(spec[2])
    if kind == "box":
        box = Box[python_type(spec[1])]  # type: ignore[misc]
        return st.builds(lambda item, more: box(item=item, more=more), values(spec[1]),
                         st.lists(values(spec[1]), max_size=2))
    model = make_model(spec)
    _, fields, extra = spec
    extras = (st.dictionaries(st.sampled_from(["x", "y", "z"]), json_leaves, max_size=2)
              if extra else st.just({}))
    return st.builds(lambda items, more: model(**items, **more),
                     st.fixed_dictionaries({f"f{i}": values(f) for i, f in enumerate(fields)}),
                     extras)


@st.composite
def model_instances(draw: st.DrawFn) -> BaseModel:
    spec = draw(model_specs())
    try:
        return draw(values(spec))
    except ValidationError:
        assume(False)
        raise


@FUZZ_MODELS
@given(instance=model_instances())
def test_generated_models_round_trip_exactly(instance: BaseModel) -> None:
    restored = safe_deserialize(safe_serialize(instance))
    assert type(restored) is type(instance)
    found = difference(restored, instance)
    assert found is None, found
    again = deserialize_from_json(json.dumps(safe_serialize([instance, instance])))
    assert difference(again, [instance, instance]) is None


@FUZZ_MODELS
@given(instances=st.lists(model_instances(), min_size=1, max_size=3))
def test_generated_models_round_trip_through_a_backend(instances: list[BaseModel]) -> None:
    async def go() -> Any:
        backend = InMemoryBackend(compression="zlib")
        state = WorkflowState(run_id="r", pipeline_context={"models": instances},
                              last_step_output=tuple(instances))
        await backend.save_state("r", state)
        record = await backend.load_record("r")
        assert record is not None
        return record.state

    state = asyncio.run(go())
    assert difference(state.pipeline_context["models"], instances) is None
    assert difference(state.last_step_output, tuple(instances)) is None


def test_a_naive_datetime_keeps_its_fold() -> None:
    # was: fold was dropped, so a resumed naive datetime could be an hour off in timestamp()
    value = datetime(2021, 11, 7, 1, 30, fold=1)
    restored = safe_deserialize(safe_serialize(value))
    assert restored.fold == 1
    restored_time = safe_deserialize(safe_serialize(time(1, 30, fold=1)))
    assert restored_time.fold == 1
