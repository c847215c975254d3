"""numpy arrays and scalars (_numpy, the flujo[numpy] extra): dtype with byte order and unit,
shape and memory order exact, scalars as their own numpy type; object arrays and subclasses
refused when saved; malformed stored arrays refused with bounded work; no pickle anywhere."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from flujo.exceptions import DeserializationError, PayloadTooLargeError, SerializationError
from flujo.serialization import (
    TypeRegistry,
    safe_deserialize,
    safe_serialize,
    tagged_format_schema,
)
from flujo.state import InMemoryBackend, SQLiteBackend
from flujo.state.models import WorkflowState

SRC = Path(__file__).resolve().parents[2] / "src"


def _round_trip(value: Any) -> Any:
    return safe_deserialize(orjson.loads(orjson.dumps(safe_serialize(value))))


def assert_same_array(back: Any, value: Any) -> None:
    assert type(back) is np.ndarray
    assert back.dtype == value.dtype and back.dtype.str == value.dtype.str
    assert back.shape == value.shape
    fortran = value.flags.f_contiguous and not value.flags.c_contiguous
    assert back.flags.f_contiguous == (fortran or (value.flags.f_contiguous and back.ndim <= 1)
                                       or back.size <= 1 or back.flags.f_contiguous)
    assert back.flags.c_contiguous == (not fortran)
    assert back.flags.owndata and back.flags.writeable  # as from pickle
    order = "F" if fortran else "C"
    assert _same_bytes(back, value, order)


def _same_bytes(back: Any, value: Any, order: str = "C") -> bool:
    if value.dtype.char in "gG":  # x87 long doubles: the padding bytes are never the same
        return bool(np.array_equal(back, value, equal_nan=True)) and bool(
            (np.signbit(back.real) == np.signbit(value.real)).all())
    return bool(back.tobytes(order=order) == value.tobytes(order=order))


def _structured() -> np.ndarray:
    array = np.zeros(2, dtype=[("x", "<f4"), ("y", ">i8", (2,)), ("name", "<U3"),
                               ("inner", [("a", "u1"), ("b", ">f8")])])
    array[1] = (1.5, [1, -2], "abc", (7, 2.5))
    return array


ARRAYS = {
    "int-big-endian": np.arange(6, dtype=">i4").reshape(2, 3),
    "float-fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "strided-view": np.arange(10)[::3],
    "transposed": np.arange(6).reshape(2, 3).T,
    "zero-dimensional": np.array(5.0),
    "empty": np.zeros((0, 3), dtype="<c16"),
    "bool": np.array([True, False]),
    "unicode": np.array(["a", "bcd", "é"]),
    "bytes": np.array([b"ab", b"\x00"]),
    "void": np.array([b"\x01\x02"], dtype="V2"),
    "datetime-ns": np.array(["2024-01-01T00:00:00.123456789", "NaT"], dtype="datetime64[ns]"),
    "timedelta-s": np.array([5, -1], dtype=">m8[s]"),
    "half": np.array([0.5, -0.0], dtype=np.float16),
    "longdouble": np.array([0.1, -0.0, np.nan, 1e4000], dtype=np.longdouble),
    "clongdouble": np.array([1 + 0.1j], dtype=np.clongdouble),
    "structured": _structured(),
    "nan-payload": np.array([np.nan, -np.inf], dtype="<f8"),
}


@pytest.mark.parametrize("case", sorted(ARRAYS))
def test_arrays_come_back_exactly(case: str) -> None:
    value = ARRAYS[case]
    assert_same_array(_round_trip(value), value)


@given(hnp.arrays(dtype=st.one_of(hnp.scalar_dtypes(), hnp.byte_string_dtypes(),
                                  hnp.unicode_string_dtypes()).flatmap(
                      lambda d: st.sampled_from([d, d.newbyteorder()])),
                  shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)),
       st.booleans())
@settings(max_examples=150, deadline=None)
def test_any_array_comes_back_exactly(array: np.ndarray, fortran: bool) -> None:
    value = np.asfortranarray(array) if fortran else array
    assert_same_array(_round_trip(value), value)


SCALARS = [np.float32(1.5), np.float64("nan"), np.float16(-0.0), np.longdouble("0.1"),
           np.clongdouble(1 - 2j),
           np.int8(-128), np.uint64(2**64 - 1), np.int64(-3), np.bool_(True),
           np.complex64(1 + 2j), np.datetime64("2024-01-01T12:00", "m"),
           np.datetime64("NaT"), np.timedelta64(5, "s"), np.str_("hé"), np.bytes_(b"\x00b"),
           _structured()[1]]


@pytest.mark.parametrize("value", SCALARS, ids=lambda v: type(v).__name__)
def test_scalars_come_back_as_their_own_numpy_type(value: Any) -> None:
    back = _round_trip({"k": value})["k"]
    assert type(back) is type(value)
    assert back.dtype == value.dtype and _same_bytes(back, value)


def test_an_array_held_twice_comes_back_as_one_array() -> None:
    array = np.arange(3)
    back = _round_trip({"a": array, "b": [array]})
    assert back["a"] is back["b"][0]


def test_plain_json_mode_gives_lists_and_python_values() -> None:
    plain = safe_serialize({"a": np.arange(4).reshape(2, 2), "f": np.float32(1.5),
                            "i": np.int64(7)}, mode="json")
    assert plain == {"a": [[0, 1], [2, 3]], "f": 1.5, "i": 7}


@pytest.mark.parametrize(("value", "message"), [
    (np.array([object()]), "holding Python objects"),
    (np.zeros(1, dtype=[("a", "O")]), "holding Python objects"),
    (np.zeros(1, dtype=np.dtype({"names": ["a", "b"], "formats": ["u1", "<f8"]},
                                align=True)), "no exact description"),
])
def test_what_numpy_cannot_store_exactly_is_refused_naming_the_path(
        value: Any, message: str) -> None:
    with pytest.raises(SerializationError, match=message) as info:
        safe_serialize({"x": [value]})
    assert info.value.path == "$.x[0]"


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix's own
@pytest.mark.parametrize("make", [lambda: np.matrix([[1, 2]]),
                                  lambda: np.ma.masked_array([1, 2], [0, 1])],
                         ids=["matrix", "masked"])
def test_ndarray_subclasses_are_refused(make: Any) -> None:
    value = make()
    with pytest.raises(SerializationError, match=type(value).__name__):
        safe_serialize(value)


def _array(dtype: Any = "<i8", shape: Any = (2,), order: str = "C",
           data: Any = None) -> dict[str, Any]:
    if data is None:
        data = base64.b64encode(np.zeros(2, "<i8").tobytes()).decode()
    return {"$t": "numpy.ndarray@1", "v": {"dtype": dtype, "shape": list(shape),
                                           "order": order, "data": data}}


@pytest.mark.parametrize(("tagged", "message"), [
    (_array(shape=(3,)), "do not make shape"),
    (_array(shape=(-1,)), "shape must be"),
    (_array(shape=[1] * 65), "shape must be"),
    (_array(shape=(10**30, 10**30)), "do not make shape"),
    (_array(dtype="|V0", shape=(2**40, 2**40), data=""), "no size"),
    (_array(dtype="|O"), "holding Python objects"),
    (_array(dtype="object"), "holding Python objects"),
    (_array(dtype="int64"), "not the form numpy writes"),
    (_array(dtype="no such dtype"), "is not a numpy dtype"),
    (_array(dtype=[["a"]]), "must be \\[name, dtype\\]"),
    (_array(dtype=[["a", "<i8", [-1]]]), "must be \\[name, dtype\\]"),
    (_array(dtype=[["f", "<i8"]] * 1001), "more than 1000 fields"),
    (_array(order="K"), "order must be"),
    (_array(data="not base64!"), "not valid base64"),
    (_array(data=5), "base64 text"),
    ({"$t": "numpy.ndarray@1", "v": [1, 2]}, "expected"),
    ({"$t": "numpy.scalar@1", "v": {"dtype": "<f4", "data": "AAAA"}}, "3 bytes"),
    ({"$t": "numpy.scalar@1", "v": {"dtype": "|O", "data": "AAAAAAAAAAA="}}, "objects"),
])
def test_malformed_stored_arrays_are_refused(tagged: dict[str, Any], message: str) -> None:
    with pytest.raises(DeserializationError, match=message) as info:
        safe_deserialize({"k": tagged})
    assert info.value.path == "$.k"


def test_a_deeply_nested_stored_dtype_is_refused() -> None:
    dtype: Any = "<i8"
    for _ in range(40):
        dtype = [["f", dtype]]
    with pytest.raises(DeserializationError, match="dtype"):
        safe_deserialize(_array(dtype=dtype))


def test_written_values_match_the_tagged_format_schema() -> None:
    validator = jsonschema.Draft202012Validator(tagged_format_schema(TypeRegistry()))
    for value in [*ARRAYS.values(), *SCALARS]:
        assert validator.is_valid(safe_serialize(value))


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_backends_keep_arrays_exactly_and_refuse_one_over_the_payload_limit(
        backend: str, tmp_path: Path) -> None:
    def made(**options: Any) -> Any:
        if backend == "memory":
            return InMemoryBackend(**options)
        return SQLiteBackend(tmp_path / f"state-{len(options)}.db", **options)

    async def scenario() -> None:
        store = made()
        state = WorkflowState(run_id="np", pipeline_name="p",
                              pipeline_context={"arrays": dict(ARRAYS), "x": np.float32(2)})
        await store.save_state("np", state)
        record = await store.load_record("np")
        assert record is not None
        loaded = record.state
        for case, value in ARRAYS.items():
            assert_same_array(loaded.pipeline_context["arrays"][case], value)
        assert type(loaded.pipeline_context["x"]) is np.float32
        await store.close()
        small = made(max_payload_bytes=100_000)
        big = WorkflowState(run_id="big", pipeline_name="p",
                            pipeline_context={"a": np.zeros(100_000)})
        with pytest.raises(PayloadTooLargeError, match="max_payload_bytes"):
            await small.save_state("big", big)
        assert await small.load_record("big") is None
        await small.close()

    asyncio.run(scenario())


def test_a_fresh_process_reads_arrays_importing_numpy_itself(tmp_path: Path) -> None:
    data = tmp_path / "arrays.json"
    data.write_bytes(orjson.dumps(safe_serialize(ARRAYS["structured"])))
    code = ("import sys; import flujo.serialization as s, orjson\n"
            "assert 'numpy' not in sys.modules\n"
            "a = s.safe_deserialize(orjson.loads(open(sys.argv[1], 'rb').read()))\n"
            "print(type(a).__module__, a.dtype.str, a.shape)")
    done = subprocess.run([sys.executable, "-c", code, str(data)], capture_output=True,
                          text=True, env={"PYTHONPATH": str(SRC)}, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["numpy", ARRAYS["structured"].dtype.str, "(2,)"]


def test_long_doubles_are_written_as_the_same_text_every_time() -> None:
    texts = {orjson.dumps(safe_serialize([np.longdouble("0.1"), np.array([np.longdouble(i)
                                                                         for i in range(3)])]))
             for _ in range(20)}
    assert len(texts) == 1


@pytest.mark.parametrize("value", [np.str_(""), np.bytes_(b"")], ids=["str", "bytes"])
def test_empty_text_scalars_come_back(value: Any) -> None:
    back = _round_trip([value])[0]
    assert type(back) is type(value) and back == value


def test_structured_fields_with_titles_come_back() -> None:
    value = np.zeros(2, dtype=np.dtype({"names": ["a", "b"], "formats": ["i1", "<f4"],
                                        "titles": ["Title A", "Title B"]}))
    value["a"] = [1, 2]
    back = _round_trip(value)
    assert back.dtype == value.dtype and back.dtype.fields == value.dtype.fields
    assert back.tobytes() == value.tobytes()


@pytest.mark.parametrize("value", [
    np.zeros(3, dtype=[("a", "u1", (0,))]),
    np.zeros(2, dtype=np.dtype("i4", metadata={"unit": "m"})),
], ids=["no-size", "metadata"])
def test_dtypes_the_stored_form_cannot_hold_are_refused_when_saved(value: Any) -> None:
    with pytest.raises(SerializationError, match="not stored") as info:
        safe_serialize({"x": value})
    assert info.value.path == "$.x"


@pytest.mark.parametrize("dtype", ["|S0", "<U0", "|V0", [["a", "|u1", [0]]]])
def test_stored_dtypes_of_no_size_are_refused_before_allocating(dtype: Any) -> None:
    with pytest.raises(DeserializationError, match="no size"):
        safe_deserialize(_array(dtype=dtype, shape=(2**31,), data=""))


@pytest.mark.parametrize("data", ["AAARAA==", "AADYAA=="])
def test_text_past_the_last_code_point_is_refused_on_read(data: str) -> None:
    with pytest.raises(DeserializationError, match="code point"):
        safe_deserialize(_array(dtype="<U1", shape=(1,), data=data))
    with pytest.raises(DeserializationError, match="code point"):
        safe_deserialize({"$t": "numpy.scalar@1", "v": {"dtype": "<U1", "data": data}})


def test_a_subclass_of_a_numpy_scalar_type_is_refused_when_saved() -> None:
    class Name(np.str_):
        pass

    with pytest.raises(SerializationError, match="Name"):
        safe_serialize(Name("ab"))


def test_long_doubles_show_as_the_nearest_python_numbers() -> None:
    plain = safe_serialize([np.longdouble(1.5), np.clongdouble(1 + 2j),
                            np.array([0.25], dtype=np.longdouble)], mode="json")
    assert plain == [1.5, {"real": 1.0, "imag": 2.0}, [0.25]]


def test_an_empty_array_has_the_strides_of_a_new_one() -> None:
    back = _round_trip(np.zeros((0, 3)))
    assert back.strides == np.empty((0, 3)).strides


def test_numpy_types_as_defaultdict_factories_are_refused_when_saved() -> None:
    from collections import defaultdict

    for factory in (np.float64, np.ndarray):
        with pytest.raises(SerializationError, match="factory"):
            safe_serialize(defaultdict(factory))


def test_concurrent_first_reads_wait_for_numpy_to_be_imported(tmp_path: Path) -> None:
    code = """
import threading
from flujo.serialization import safe_deserialize
data = {"$t": "numpy.scalar@1", "v": {"dtype": "<f4", "data": "AADAPw=="}}
errors = []
def read():
    try:
        assert float(safe_deserialize(data)) == 1.5
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=read) for _ in range(40)]
for thread in threads: thread.start()
for thread in threads: thread.join()
print(len(errors), errors[:1])
"""
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={"PYTHONPATH": str(SRC)}, timeout=120, check=True)
        assert done.stdout.strip() == "0 []", done.stdout


def test_assert_identical_tells_numpy_values_apart() -> None:
    from flujo.testing import assert_identical

    value = np.arange(4, dtype="<i4")
    assert_identical(value.copy(), value)
    assert_identical(np.float32(1.5), np.float32(1.5))
    for other in (value.astype(">i4"), value.reshape(2, 2), value + 1, np.float64(1.5)):
        with pytest.raises(AssertionError):
            assert_identical(other, value if other.dtype.kind == "i" else np.float32(1.5))
    with pytest.raises(AssertionError, match="Fortran"):
        assert_identical(np.ones((2, 2)), np.asfortranarray(np.ones((2, 2))))
