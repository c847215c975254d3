"""``assert_identical`` and ``assert_round_trip``: equal values with exactly the same types."""

from __future__ import annotations

import array
import collections
import dataclasses
import datetime as dt
import decimal
import enum
import functools
import math
import pathlib
import types
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from pydantic import BaseModel

from ..serialization import TypeRegistry, safe_deserialize, safe_serialize

__all__ = ["assert_identical", "assert_round_trip"]

_MISSING = object()
_REPR_LIMIT = 80
# orjson writes and reads integers in this range exactly; the tagged format tags the rest.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
# Compared with == once their types are identical.
_PLAIN = (str, bytes, bytearray, int, type(None), dt.date, dt.timedelta, range, memoryview,
          uuid.UUID, pathlib.PurePath)


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not hide the real difference
        text = f"<{type(value).__name__}: repr failed with {type(exc).__name__}>"
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


def _type_name(cls: type) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _segment(key: Any) -> str:
    """A path step, written the way flujo's error paths are (``.name``, ``['a b']``, ``[1]``)."""
    if isinstance(key, str) and key.isidentifier():
        return f".{key}"
    return f"[{_short(key)}]"  # (repr may fail: an int of more than 4,300 digits)


def _describe_key(key: Any) -> str:
    text = _short(key)
    kind = type(key)
    return text if kind in (str, int) else f"{text} ({_type_name(kind)})"


def _float_diff(actual: float, expected: float, path: str) -> str | None:
    if math.isnan(expected) or math.isnan(actual):
        if math.isnan(expected) and math.isnan(actual):
            return None
        return f"{path}: {actual!r} != expected {expected!r}"
    if actual != expected or math.copysign(1.0, actual) != math.copysign(1.0, expected):
        return f"{path}: {actual!r} != expected {expected!r}"
    return None


def _tz_diff(actual: dt.tzinfo | None, expected: dt.tzinfo | None, path: str) -> str | None:
    if actual is None or expected is None:
        if actual is expected:
            return None
        return f"{path}: tzinfo {_short(actual)} != expected {_short(expected)}"
    if _fixed_offset(actual) and _fixed_offset(expected) and (
            isinstance(actual, dt.timezone) or type(actual) is type(expected)):
        # flujo reads pydantic's TzInfo back as the equal datetime.timezone (docs/format.md);
        # the other way round (a TzInfo where a timezone was saved) is a difference.
        both_std = isinstance(actual, dt.timezone) and isinstance(expected, dt.timezone)
        if actual.utcoffset(None) != expected.utcoffset(None) or (
            both_std and actual.tzname(None) != expected.tzname(None)
        ):
            return f"{path}: tzinfo {_short(actual)} != expected {_short(expected)}"
        return None
    if type(actual) is not type(expected):
        return (f"{path}: tzinfo type {_type_name(type(actual))} != expected"
                f" {_type_name(type(expected))} ({_short(actual)} vs {_short(expected)})")
    key = getattr(expected, "key", _MISSING)  # zoneinfo.ZoneInfo (and look-alikes)
    if key is not _MISSING:
        if getattr(actual, "key", _MISSING) != key:
            return f"{path}: zone {_short(actual)} != expected {_short(expected)}"
        return None
    if actual != expected:
        return f"{path}: tzinfo {_short(actual)} != expected {_short(expected)}"
    return None


def _fixed_offset(tz: dt.tzinfo) -> bool:
    """``datetime.timezone`` or pydantic's ``TzInfo``: a fixed UTC offset."""
    kind = type(tz)
    return kind is dt.timezone or (
        kind.__name__ == "TzInfo" and kind.__module__.startswith("pydantic"))


def _wall_time_diff(actual: dt.datetime | dt.time, expected: dt.datetime | dt.time,
                    path: str) -> str | None:
    # == on aware values compares instants and ignores fold: compare what is stored instead.
    if actual.replace(tzinfo=None) != expected.replace(tzinfo=None):
        return f"{path}: {_short(actual)} != expected {_short(expected)}"
    if actual.fold != expected.fold:
        return f"{path}: fold {actual.fold} != expected {expected.fold} ({_short(expected)})"
    return _tz_diff(actual.tzinfo, expected.tzinfo, f"{path}.tzinfo")


def _slot_names(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in [slots] if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and name not in names:
                names.append(name)
    return names


_PYDANTIC_SLOTS = frozenset({"__pydantic_fields_set__", "__pydantic_extra__",
                             "__pydantic_private__"})


def _attributes(obj: Any) -> dict[str, Any] | None:
    """An object's instance state (``__dict__`` and slots), or None when it has none.
    ``functools.cached_property`` values are caches, not state; pydantic's own slots are
    compared on their own."""
    state: dict[str, Any] = {}
    found = False
    own = getattr(obj, "__dict__", None)
    cached = {name for klass in type(obj).__mro__ for name, value in vars(klass).items()
              if isinstance(value, functools.cached_property)}
    if isinstance(own, dict):
        state.update((k, v) for k, v in own.items() if k not in cached)
        found = True
    for name in _slot_names(type(obj)):
        if name in _PYDANTIC_SLOTS:
            continue
        found = True
        value = getattr(obj, name, _MISSING)
        if value is not _MISSING:
            state[name] = value
    return state if found else None


def _buffer_identity(value: memoryview | array.array[Any]) -> tuple[Any, ...]:
    if isinstance(value, memoryview):
        return value.format, value.shape, value.readonly, value.tobytes()
    return value.typecode, value.tobytes()


class _Comparer:
    def __init__(self) -> None:
        self._active: set[tuple[int, int]] = set()  # container pairs being compared (cycles)

    def diff(self, actual: Any, expected: Any, path: str) -> str | None:
        """The first difference, as ``"<path>: <what>"``, or None when identical."""
        ta, te = type(actual), type(expected)
        if ta is not te:
            return (f"{path}: type {_type_name(ta)} != expected {_type_name(te)}"
                    f" ({_short(actual)} vs {_short(expected)})")
        if isinstance(expected, float):
            return _float_diff(actual, expected, path)
        if isinstance(expected, complex):
            return (_float_diff(actual.real, expected.real, f"{path}.real")
                    or _float_diff(actual.imag, expected.imag, f"{path}.imag"))
        if isinstance(expected, decimal.Decimal):
            if actual.as_tuple() != expected.as_tuple():  # digits, exponent, sign, NaN kind
                return f"{path}: {actual!r} != expected {expected!r}"
            return None
        if isinstance(expected, dt.datetime | dt.time):
            return _wall_time_diff(actual, expected, path)
        if isinstance(expected, dt.tzinfo):
            return _tz_diff(actual, expected, path)
        if isinstance(expected, enum.Enum):
            if actual is not expected and not _same_pseudo_member(actual, expected):
                return f"{path}: {actual!r} != expected {expected!r}"
            return None
        if type(expected).__module__ == "numpy" and hasattr(expected, "dtype"):
            return _numpy_diff(actual, expected, path)
        if isinstance(expected, memoryview | array.array):  # by their bytes: NaN is NaN
            if _buffer_identity(actual) != _buffer_identity(expected):
                return f"{path}: {_short(actual)} != expected {_short(expected)}"
            return None
        if isinstance(expected, _PLAIN) and not hasattr(expected, "__dict__"):
            if actual != expected:
                return f"{path}: {_short(actual)} != expected {_short(expected)}"
            return None
        key = (id(actual), id(expected))
        if key in self._active:
            return None  # already being compared higher up (a cycle)
        self._active.add(key)
        try:
            return self._diff_container(actual, expected, path)
        finally:
            self._active.discard(key)

    def _diff_container(self, actual: Any, expected: Any, path: str) -> str | None:
        if isinstance(expected, types.MethodType):
            # A bound method kept as an attribute (ipaddress's /31 and /32 networks set
            # ``hosts = self.__iter__``): the same function, bound to corresponding objects.
            if actual.__func__ is not expected.__func__:
                return f"{path}: {_short(actual)} != expected {_short(expected)}"
            return self.diff(actual.__self__, expected.__self__, f"{path}.__self__")
        if isinstance(expected, BaseModel):
            return self._diff_model(actual, expected, path)
        if dataclasses.is_dataclass(expected) and not isinstance(expected, type):
            # the whole instance state: fields, attributes set by __post_init__, extras
            return self._diff_attrs(_attributes(actual) or {}, _attributes(expected) or {},
                                    path)
        if isinstance(expected, tuple) and hasattr(expected, "_fields"):  # NamedTuple
            return self._diff_attrs(dict(zip(expected._fields, actual, strict=False)),
                                    dict(zip(expected._fields, expected, strict=False)), path)
        if isinstance(expected, dict):
            return self._diff_dict(actual, expected, path)
        if isinstance(expected, list | tuple | collections.deque):
            if isinstance(expected, collections.deque) and actual.maxlen != expected.maxlen:
                return f"{path}: deque maxlen {actual.maxlen} != expected {expected.maxlen}"
            return self._diff_items(list(actual), list(expected), path)
        if isinstance(expected, set | frozenset):
            return self._diff_set(actual, expected, path)
        return self._diff_object(actual, expected, path)

    def _diff_items(self, actual: list[Any], expected: list[Any], path: str) -> str | None:
        for index, (a, e) in enumerate(zip(actual, expected, strict=False)):
            problem = self.diff(a, e, f"{path}[{index}]")
            if problem:
                return problem
        if len(actual) != len(expected):
            return f"{path}: length {len(actual)} != expected {len(expected)}"
        return None

    def _diff_dict(self, actual: dict[Any, Any], expected: dict[Any, Any],
                   path: str) -> str | None:
        factory_a = getattr(actual, "default_factory", None)  # defaultdict
        factory_e = getattr(expected, "default_factory", None)
        if factory_a != factory_e:
            return f"{path}: default_factory {factory_a!r} != expected {factory_e!r}"
        keys_a, keys_e = list(actual), list(expected)
        same_keys = len(keys_a) == len(keys_e) and all(
            self.diff(ka, ke, path) is None for ka, ke in zip(keys_a, keys_e, strict=True))
        if not same_keys:
            return self._explain_keys(keys_a, keys_e, path)
        for (ka, va), ve in zip(actual.items(), expected.values(), strict=True):
            problem = self.diff(va, ve, f"{path}{_segment(ka)}")
            if problem:
                return problem
        return None

    def _explain_keys(self, keys_a: list[Any], keys_e: list[Any], path: str) -> str:
        def found(key: Any, among: list[Any]) -> bool:
            return any(self.diff(other, key, path) is None for other in among)

        missing = [k for k in keys_e if not found(k, keys_a)]
        extra = [k for k in keys_a if not found(k, keys_e)]
        parts = []
        if missing:
            parts.append(f"missing key(s) {', '.join(_describe_key(k) for k in missing)}")
        if extra:
            parts.append(f"unexpected key(s) {', '.join(_describe_key(k) for k in extra)}")
        if not parts:
            parts.append(f"key order [{', '.join(_short(k) for k in keys_a)}] != expected"
                         f" [{', '.join(_short(k) for k in keys_e)}]")
        return f"{path}: {'; '.join(parts)}"

    def _diff_set(self, actual: Iterable[Any], expected: Iterable[Any], path: str) -> str | None:
        remaining: dict[int, Any] = dict(enumerate(actual))
        buckets: dict[int, list[int]] = collections.defaultdict(list)
        for position, element in remaining.items():
            buckets[hash(element)].append(position)
        for element in expected:
            # Equal elements share a hash; NaN does not, so fall back to a scan.
            candidates = [p for p in buckets.get(hash(element), ()) if p in remaining]
            match = next((p for p in candidates
                          if self.diff(remaining[p], element, path) is None), None)
            if match is None:
                match = next((p for p, candidate in remaining.items()
                              if self.diff(candidate, element, path) is None), None)
            if match is None:
                return f"{path}: element {_describe_key(element)} is missing"
            del remaining[match]
        if remaining:
            return (f"{path}: unexpected element(s)"
                    f" {', '.join(_describe_key(x) for x in remaining.values())}")
        return None

    def _diff_model(self, actual: BaseModel, expected: BaseModel, path: str) -> str | None:
        # what pickle keeps: __dict__ (fields and plain attributes), extras, fields_set and
        # private attributes
        problem = self._diff_attrs(_attributes(actual) or {}, _attributes(expected) or {}, path)
        if problem:
            return problem
        extra_a = getattr(actual, "__pydantic_extra__", None)
        extra_e = getattr(expected, "__pydantic_extra__", None)
        if (extra_a is None) != (extra_e is None) or list(extra_a or {}) != list(extra_e or {}):
            return (f"{path}: extra fields {list(extra_a or {})} != expected "
                    f"{list(extra_e or {})}")
        problem = self._diff_attrs(extra_a or {}, extra_e or {}, path)
        if problem:
            return problem
        set_a = getattr(actual, "__pydantic_fields_set__", None)
        set_e = getattr(expected, "__pydantic_fields_set__", None)
        if set_a != set_e:
            return (f"{path}: model_fields_set {sorted(set_a or ())} != expected "
                    f"{sorted(set_e or ())}")
        private_a = getattr(actual, "__pydantic_private__", None)
        private_e = getattr(expected, "__pydantic_private__", None)
        if (private_a is None) != (private_e is None):
            return f"{path}: private attributes {private_a!r:.80} != expected {private_e!r:.80}"
        return self._diff_attrs(private_a or {}, private_e or {}, path)

    def _diff_attrs(self, actual: dict[str, Any], expected: dict[str, Any],
                    path: str) -> str | None:
        for name, value in expected.items():
            got = actual.get(name, _MISSING)
            if got is _MISSING or value is _MISSING:
                if got is not value:
                    state = "missing" if got is _MISSING else "unexpected"
                    return f"{path}.{name}: attribute {state}"
                continue
            problem = self.diff(got, value, f"{path}{_segment(name)}")
            if problem:
                return problem
        unexpected = [n for n in actual if n not in expected]
        if unexpected:
            return f"{path}: unexpected attribute(s) {', '.join(unexpected)}"
        return None

    def _diff_object(self, actual: Any, expected: Any, path: str) -> str | None:
        state_a, state_e = _attributes(actual), _attributes(expected)
        own_eq = any("__eq__" in klass.__dict__ for klass in type(expected).__mro__[:-1])
        if state_a is not None and state_e is not None:
            if own_eq:
                # Compare the attributes both sides have (caches may differ), then __eq__.
                shared = [n for n in state_e if n in state_a]
                problem = self._diff_attrs({n: state_a[n] for n in shared},
                                           {n: state_e[n] for n in shared}, path)
                if problem:
                    return problem
            else:
                return self._diff_attrs(state_a, state_e, path)
        try:
            equal = bool(actual == expected)
        except Exception as exc:
            return f"{path}: cannot compare {_short(expected)} with == ({type(exc).__name__})"
        return None if equal else f"{path}: {_short(actual)} != expected {_short(expected)}"


def _numpy_diff(actual: Any, expected: Any, path: str) -> str | None:
    """numpy arrays and scalars: dtype (byte order and unit), shape, memory order, values."""
    if actual.dtype.str != expected.dtype.str or actual.dtype != expected.dtype:
        return f"{path}: dtype {actual.dtype!r} != expected {expected.dtype!r}"
    if actual.shape != expected.shape:
        return f"{path}: shape {actual.shape} != expected {expected.shape}"
    fortran = bool(getattr(expected, "flags", None) is not None and expected.ndim > 1
                   and expected.flags.f_contiguous and not expected.flags.c_contiguous)
    if fortran and not (actual.flags.f_contiguous and not actual.flags.c_contiguous):
        return f"{path}: C order != expected Fortran order"
    if expected.dtype.char in "gG":  # x87 long doubles: their padding bytes are arbitrary
        import numpy

        same = bool(numpy.array_equal(actual, expected, equal_nan=True))
    else:
        same = actual.tobytes() == expected.tobytes()
    return None if same else f"{path}: {_short(actual)} != expected {_short(expected)}"


def assert_identical(actual: Any, expected: Any) -> None:
    """Assert that ``actual`` equals ``expected`` with exactly the same types at every level.

    Stricter than ``==``: ``1``, ``1.0`` and ``True`` differ; so do ``Decimal("1.0")`` and
    ``Decimal("1.00")``, ``0.0`` and ``-0.0``, two datetimes at the same instant in different
    zones, a ``ZoneInfo`` and a fixed offset, different ``fold`` values, a tuple and a list,
    dicts with their keys in another order, ``OrderedDict`` and ``dict``. NaN equals NaN.
    Pydantic models and dataclasses are compared by what pickle keeps of them: fields,
    plain attributes (``__dict__`` and slots), extras, ``model_fields_set`` and private
    attributes (``functools.cached_property`` caches aside); NamedTuples field by field,
    other objects by their attributes, and by ``==`` when they define it. Raises
    AssertionError naming the path (``$.lines[0].price``) of the first difference.
    """
    problem = _Comparer().diff(actual, expected, "$")
    if problem:
        raise AssertionError(problem)


def _json_problem(data: Any, path: str) -> str | None:
    """Where ``data`` is not strict JSON (what the tagged format promises), or None."""
    kind = type(data)
    if kind is dict:
        for key, value in data.items():
            if type(key) is not str:
                return f"{path}: object key {_short(key)} is not a str"
            problem = _json_problem(value, f"{path}{_segment(key)}")
            if problem:
                return problem
        return None
    if kind is list:
        for index, value in enumerate(data):
            problem = _json_problem(value, f"{path}[{index}]")
            if problem:
                return problem
        return None
    if kind is float:
        return None if math.isfinite(data) else f"{path}: {data!r} is not a JSON number"
    if kind is int:
        if not _INT_MIN <= data <= _INT_MAX:
            return f"{path}: integer {_short(data)} does not fit 64 bits"
        return None
    if kind is str or kind is bool or data is None:
        return None
    return f"{path}: {_type_name(kind)} {_short(data)} is not a JSON value"


def _same_pseudo_member(actual: enum.Enum, expected: enum.Enum) -> bool:
    """Members an enum's ``_missing_`` makes on the fly (google-genai does, for values it does
    not know) are new objects on every lookup: the same value and name is the same member."""
    return (type(actual) is type(expected) and expected._name_ not in type(expected).__members__
            and (actual._name_, actual._value_) == (expected._name_, expected._value_))


def assert_round_trip(value: Any, *, registry: TypeRegistry | None = None) -> Any:
    """Serialize ``value``, write and read it as strict JSON, decode it, and check it is identical.

    The value goes through ``safe_serialize`` (with ``registry``, default: the global one),
    strict JSON text (orjson: no NaN, no non-str keys, no integers beyond 64 bits), and
    ``safe_deserialize``; the result is then compared with ``assert_identical``. Raises
    AssertionError naming the path of the first difference; serialization errors
    (``UnserializableTypeError``, ...) propagate as they are. Returns the decoded value.
    """
    data = safe_serialize(value, registry=registry)
    problem = _json_problem(data, "$")
    if problem:
        raise AssertionError(f"the serialized form is not strict JSON: {problem}")
    try:
        text = orjson.dumps(data)
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise AssertionError(f"the serialized form is not strict JSON: {exc}") from exc
    decoded = safe_deserialize(orjson.loads(text), registry=registry)
    try:
        assert_identical(decoded, value)
    except AssertionError as exc:
        shown = text.decode("utf-8")
        if len(shown) > 400:
            shown = shown[:397] + "..."
        raise AssertionError(
            f"the value does not survive a round trip through flujo's JSON: {exc}\n"
            f"  serialized as: {shown}"
        ) from None
    return decoded
