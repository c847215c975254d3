"""Codecs for numpy arrays and scalars (the ``flujo[numpy]`` extra), without pickle.

An array is stored as its dtype, shape, memory order and raw bytes in base64:
``{"dtype": "<f4", "shape": [2, 3], "order": "C", "data": "..."}``. The dtype keeps its byte
order and unit (``">i8"``, ``"<M8[ns]"``, ``"<U5"``); a structured dtype is its ``descr``
list (``[["x", "<f4"], ["y", ">i8", [2]]]``) when that list rebuilds it exactly, else it is
refused (aligned structs with padding). ``order`` is ``"F"`` for a Fortran-ordered array and
``"C"`` otherwise, as pickle decides it; an array comes back owning writable memory, as from
pickle. A scalar (``np.float32(1.5)``, ``np.datetime64("2024-01-01")``) is its dtype and
bytes: ``{"dtype": "<f4", "data": "AADAPw=="}``, and comes back as the same numpy type.

Object arrays (and dtypes holding objects) are refused: their items would be Python objects
of any kind, which pickle stores by reducing each; store a list instead. Subclasses of
``ndarray`` (``np.matrix``, masked arrays) are refused too.

flujo never imports numpy to write (a value of it exists, so numpy is loaded); reading a
numpy tag imports numpy itself, a fixed module, never one named by the data. The bytes are
bounded by the store's payload limit like any stored value; reading checks that the shape
and dtype account for exactly the stored bytes before anything is allocated.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import sys
from typing import TYPE_CHECKING, Any

from ..exceptions import DeserializationError, SerializationError, UnknownTypeError
from ._types import JSONSchema, TypeCodec

if TYPE_CHECKING:
    from ._codec import Decoder, Encoder

ARRAY = "numpy.ndarray"
SCALAR = "numpy.scalar"
_MAX_FIELDS = 1000  # fields of a structured dtype, all levels together
_MAX_DIMENSIONS = 64  # numpy's own limit


def _numpy(tag: str) -> Any:
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        return numpy
    try:
        return importlib.import_module("numpy")
    except ImportError as exc:
        raise UnknownTypeError(f"{tag} is a numpy value, and this process cannot import "
                               "numpy: install flujo[numpy]", tag=tag) from exc


def numpy_codec_for(cls: type) -> TypeCodec | None:
    """The codec of ``cls`` when it is numpy's ``ndarray`` or one of its scalar types."""
    numpy = sys.modules.get("numpy")
    if numpy is None or cls.__module__ != "numpy":
        return None
    if cls is numpy.ndarray:
        return ARRAY_CODEC
    if issubclass(cls, numpy.generic):
        return SCALAR_CODEC
    return None


# -- dtypes ----------------------------------------------------------------------------------

def _describe_dtype(numpy: Any, dtype: Any, name: str) -> Any:
    """The stored form of ``dtype``: its ``str``, or its ``descr`` as lists when it has
    fields; refused when it holds objects or the form would not rebuild it exactly."""
    if dtype.hasobject:
        raise SerializationError(f"{name}: a dtype holding Python objects ({dtype}) is not stored; "
                       "store a list of the items instead")
    if dtype.fields is None and dtype.subdtype is None:
        return dtype.str
    described = _as_lists(dtype.descr)
    if numpy.dtype(_as_tuples(described)) != dtype:
        raise SerializationError(f"{name}: the structured dtype {dtype} has no exact description "
                       "(aligned fields or offsets of its own); register a serializer")
    return described


def _as_lists(descr: Any) -> Any:
    if isinstance(descr, str):
        return descr
    out: list[Any] = []
    for entry in descr:
        item: list[Any] = [entry[0], _as_lists(entry[1])]
        if len(entry) > 2:
            item.append(list(entry[2]))
        out.append(item)
    return out


def _as_tuples(described: Any) -> Any:
    if isinstance(described, str):
        return described
    out: list[tuple[Any, ...]] = []
    for entry in described:
        shape = (tuple(entry[2]),) if len(entry) > 2 else ()
        out.append((entry[0], _as_tuples(entry[1]), *shape))
    return out


def _check_described(described: Any, name: str, budget: list[int], depth: int = 0) -> None:
    if type(described) is str:
        return
    if type(described) is not list or not described or depth > 8:
        raise DeserializationError(f"{name}: a dtype must be a string or a list of fields, "
                                   f"got {described!r:.80}")
    for entry in described:
        budget[0] -= 1
        if budget[0] < 0:
            raise DeserializationError(f"{name}: a dtype of more than {_MAX_FIELDS} fields")
        if (type(entry) is not list or len(entry) not in (2, 3) or type(entry[0]) is not str
                or (len(entry) == 3 and (type(entry[2]) is not list or not all(
                    type(n) is int and 0 <= n < 2**31 for n in entry[2])))):
            raise DeserializationError(f"{name}: a dtype field must be [name, dtype] or "
                                       f"[name, dtype, shape], got {entry!r:.80}")
        _check_described(entry[1], name, budget, depth + 1)


def _read_dtype(numpy: Any, described: Any, name: str) -> Any:
    _check_described(described, name, [_MAX_FIELDS])
    try:
        dtype = numpy.dtype(_as_tuples(described))
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise DeserializationError(f"{name}: {described!r:.80} is not a numpy dtype: "
                                   f"{exc}") from exc
    if dtype.hasobject:
        raise DeserializationError(f"{name}: a dtype holding Python objects is never read "
                                   f"({described!r:.80})")
    if (type(described) is str and dtype.str != described) or (
            type(described) is list and _as_lists(dtype.descr) != described):
        raise DeserializationError(f"{name}: {described!r:.80} is not the form numpy writes "
                                   "for its dtype")
    return dtype


def _read_bytes(v: Any, name: str) -> bytes:
    if type(v) is not str:
        raise DeserializationError(f"{name}: data must be base64 text, got {type(v).__name__}")
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DeserializationError(f"{name}: data is not valid base64") from exc


def _raw_bytes(numpy: Any, array: Any, order: str) -> bytes:
    """The array's bytes in ``order``. x87 extended precision (``np.longdouble`` where it is
    80 bits in 12 or 16 bytes) leaves the bytes past the tenth of each number unset: they are
    written as zeros, so that one value is always stored as the same text."""
    raw: bytes = array.tobytes(order=order)
    dtype = array.dtype
    if dtype.char not in "gG" or numpy.finfo(dtype).nmant != 63 or dtype.byteorder == ">":
        return raw
    part = dtype.itemsize // (2 if dtype.char == "G" else 1)  # a complex is two numbers
    if part <= 10:
        return raw
    numbers = numpy.frombuffer(raw, dtype=numpy.uint8).reshape(-1, part).copy()
    numbers[:, 10:] = 0
    return bytes(numbers.tobytes())


# -- arrays ----------------------------------------------------------------------------------

def _encode_array(enc: Encoder, array: Any, depth: int) -> dict[str, Any]:
    numpy = sys.modules["numpy"]
    fortran = array.flags.f_contiguous and not array.flags.c_contiguous
    order = "F" if fortran else "C"
    return {"dtype": _describe_dtype(numpy, array.dtype, ARRAY),
            "shape": list(array.shape), "order": order,
            "data": base64.b64encode(_raw_bytes(numpy, array, order)).decode("ascii")}


def _decode_array(dec: Decoder, v: Any, depth: int) -> Any:
    if type(v) is not dict or set(v) != {"dtype", "shape", "order", "data"}:
        raise DeserializationError(f"{ARRAY}: expected {{dtype, shape, order, data}}, got "
                                   f"{v!r:.80}")
    shape, order = v["shape"], v["order"]
    if (type(shape) is not list or len(shape) > _MAX_DIMENSIONS
            or not all(type(n) is int and n >= 0 for n in shape)):
        raise DeserializationError(f"{ARRAY}: shape must be a list of at most "
                                   f"{_MAX_DIMENSIONS} sizes, got {shape!r:.80}")
    if order not in ("C", "F"):
        raise DeserializationError(f"{ARRAY}: order must be 'C' or 'F', got {order!r:.20}")
    numpy = _numpy(f"{ARRAY}@1")
    dtype = _read_dtype(numpy, v["dtype"], ARRAY)
    raw = _read_bytes(v["data"], ARRAY)
    count = 1
    for size in shape:
        count *= size  # Python ints: no overflow
    if count * dtype.itemsize != len(raw) or (dtype.itemsize == 0 and count > 2**31):
        raise DeserializationError(
            f"{ARRAY}: {len(raw)} bytes of data do not make shape {shape} of {dtype}")
    try:
        view = numpy.ndarray(tuple(shape), dtype=dtype, buffer=raw, order=order)
        return view.copy(order="K")  # owning writable memory in that order, as from pickle
    except (ValueError, TypeError, OverflowError) as exc:
        raise DeserializationError(f"{ARRAY}: cannot build the array: {exc}") from exc


# -- scalars ---------------------------------------------------------------------------------

def _encode_scalar(enc: Encoder, scalar: Any, depth: int) -> dict[str, Any]:
    numpy = sys.modules["numpy"]
    return {"dtype": _describe_dtype(numpy, scalar.dtype, SCALAR),
            "data": base64.b64encode(_raw_bytes(numpy, scalar, "C")).decode("ascii")}


def _decode_scalar(dec: Decoder, v: Any, depth: int) -> Any:
    if type(v) is not dict or set(v) != {"dtype", "data"}:
        raise DeserializationError(f"{SCALAR}: expected {{dtype, data}}, got {v!r:.80}")
    numpy = _numpy(f"{SCALAR}@1")
    dtype = _read_dtype(numpy, v["dtype"], SCALAR)
    raw = _read_bytes(v["data"], SCALAR)
    if len(raw) != dtype.itemsize:
        raise DeserializationError(f"{SCALAR}: {len(raw)} bytes of data for a {dtype} "
                                   f"scalar of {dtype.itemsize}")
    scalar = numpy.frombuffer(raw, dtype=dtype)[0]
    if dtype.fields is not None:  # a structured scalar: np.void over its own copy
        scalar = scalar.copy()
    return scalar


_DTYPE: JSONSchema = {
    "anyOf": [{"type": "string", "description": "numpy's dtype.str: '<f4', '>i8', '<M8[ns]'"},
              {"type": "array", "items": {"type": "array"},
               "description": "a structured dtype's descr: [[name, dtype, shape?], ...]"}]}
_DATA: JSONSchema = {"type": "string", "contentEncoding": "base64"}

ARRAY_CODEC = TypeCodec(
    ARRAY, 1, "builtin", None, _encode_array, _decode_array,
    {"type": "object",
     "properties": {"dtype": _DTYPE,
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0},
                              "maxItems": _MAX_DIMENSIONS},
                    "order": {"enum": ["C", "F"]}, "data": _DATA},
     "required": ["dtype", "shape", "order", "data"], "additionalProperties": False,
     "examples": [{"dtype": "<f8", "shape": [2], "order": "C",
                   "data": "AAAAAAAA+D8AAAAAAAAEQA=="}]},
    description="a numpy array: dtype (byte order and unit kept), shape, memory order and "
                "its bytes in base64; no object dtypes")
SCALAR_CODEC = TypeCodec(
    SCALAR, 1, "builtin", None, _encode_scalar, _decode_scalar,
    {"type": "object", "properties": {"dtype": _DTYPE, "data": _DATA},
     "required": ["dtype", "data"], "additionalProperties": False,
     "examples": [{"dtype": "<f4", "data": "AADAPw=="}]},
    description="a numpy scalar (np.float32, np.int64, np.datetime64, ...): its dtype and "
                "bytes; comes back as the same numpy type")
NUMPY_CODECS: tuple[TypeCodec, ...] = (ARRAY_CODEC, SCALAR_CODEC)
