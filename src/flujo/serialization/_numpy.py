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

import sys
from typing import TYPE_CHECKING, Any

from ..exceptions import DeserializationError, SerializationError, UnknownTypeError
from ._builtins import _base64
from ._library_types import fixed_module
from ._secrets import preview
from ._stdlib import unbase64
from ._types import JSONSchema, TypeCodec

if TYPE_CHECKING:
    from ._codec import Decoder, Encoder

ARRAY = "numpy.ndarray"
SCALAR = "numpy.scalar"
_MAX_FIELDS = 1000  # fields of a structured dtype, all levels together
_MAX_DIMENSIONS = 64  # numpy's own limit


def _numpy(tag: str) -> Any:
    try:
        return fixed_module("numpy")
    except Exception as exc:  # ImportError, or a broken installation
        raise UnknownTypeError(f"{tag} is a numpy value, and this process cannot import "
                               f"numpy ({type(exc).__name__}: {exc}): install flujo[numpy]",
                               tag=tag) from exc


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

def _describe_dtype(numpy: Any, dtype: Any, name: str, *, empty_ok: bool = False) -> Any:
    """The stored form of ``dtype``: its ``str``, or its ``descr`` as lists when it has
    fields; refused when it holds objects, has no size (``empty_ok``: an empty string
    scalar), carries metadata, or the form would not rebuild it exactly."""
    if dtype.hasobject:
        raise SerializationError(f"{name}: a dtype holding Python objects ({dtype}) is not "
                                 "stored; store a list of the items instead")
    if dtype.itemsize == 0 and not empty_ok:
        raise SerializationError(f"{name}: a dtype of no size ({dtype}) is not stored")
    if dtype.metadata is not None or (dtype.fields is not None and any(
            field[0].metadata is not None for field in dtype.fields.values())):
        raise SerializationError(f"{name}: a dtype with metadata ({dtype}) is not stored: "
                                 "the stored form has no place for it")
    if dtype.fields is None and dtype.subdtype is None:
        return dtype.str
    described = _as_lists(dtype.descr)
    try:
        _check_described(described, name, [_MAX_FIELDS])
        same = numpy.dtype(_as_tuples(described)) == dtype
    except (DeserializationError, TypeError, ValueError):
        same = False
    if not same:
        raise SerializationError(f"{name}: the structured dtype {dtype} has no exact "
                                 "description (aligned fields, offsets of its own, titles "
                                 "that are not text); register a serializer")
    return described


def _as_lists(descr: Any) -> Any:
    """numpy's ``descr`` as JSON lists: ``[name or [title, name], dtype, shape?]``."""
    if isinstance(descr, str):
        return descr
    out: list[Any] = []
    for entry in descr:
        label = list(entry[0]) if isinstance(entry[0], tuple) else entry[0]
        item: list[Any] = [label, _as_lists(entry[1])]
        if len(entry) > 2:
            item.append(list(entry[2]))
        out.append(item)
    return out


def _as_tuples(described: Any) -> Any:
    if isinstance(described, str):
        return described
    out: list[tuple[Any, ...]] = []
    for entry in described:
        label = tuple(entry[0]) if isinstance(entry[0], list) else entry[0]
        shape = (tuple(entry[2]),) if len(entry) > 2 else ()
        out.append((label, _as_tuples(entry[1]), *shape))
    return out


def _label(value: Any) -> bool:
    """A field's name, or ``[title, name]``: text."""
    if type(value) is list:
        return len(value) == 2 and all(type(part) is str for part in value)
    return type(value) is str


def _check_described(described: Any, name: str, budget: list[int], depth: int = 0) -> None:
    if type(described) is str:
        return
    if type(described) is not list or not described or depth > 8:
        raise DeserializationError(f"{name}: a dtype must be a string or a list of fields "
                                   f"at most 8 deep, got {preview(described)}")
    for entry in described:
        budget[0] -= 1
        if budget[0] < 0:
            raise DeserializationError(f"{name}: a dtype of more than {_MAX_FIELDS} fields")
        if (type(entry) is not list or len(entry) not in (2, 3) or not _label(entry[0])
                or (len(entry) == 3 and (type(entry[2]) is not list or not all(
                    type(n) is int and 0 <= n < 2**31 for n in entry[2])))):
            raise DeserializationError(f"{name}: a dtype field must be [name, dtype] or "
                                       f"[name, dtype, shape], got {preview(entry)}")
        _check_described(entry[1], name, budget, depth + 1)


def _read_dtype(numpy: Any, described: Any, name: str, *, empty_ok: bool = False) -> Any:
    _check_described(described, name, [_MAX_FIELDS])
    try:
        dtype = numpy.dtype(_as_tuples(described))
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise DeserializationError(f"{name}: {preview(described)} is not a numpy dtype: "
                                   f"{exc}") from exc
    if dtype.hasobject:
        raise DeserializationError(f"{name}: a dtype holding Python objects is never read "
                                   f"({preview(described)})")
    if dtype.itemsize == 0 and not empty_ok:
        raise DeserializationError(f"{name}: a dtype of no size ({preview(described)}) is "
                                   "never read")
    if (type(described) is str and dtype.str != described) or (
            type(described) is list and _as_lists(dtype.descr) != described):
        raise DeserializationError(f"{name}: {preview(described)} is not the form numpy "
                                   "writes for its dtype")
    return dtype


def _check_text(numpy: Any, array: Any, name: str) -> None:
    """Refuse text fields holding numbers that are no Unicode code point: numpy would build
    them, and fail on them later (``tolist()``, ``repr``) with a SystemError."""
    dtype = array.dtype
    if dtype.fields is not None:
        for field in dtype.names:
            _check_text(numpy, array[field], name)
        return
    if dtype.subdtype is not None:
        dtype = dtype.subdtype[0]
    if dtype.kind != "U" or array.size == 0:
        return
    order = ">" if dtype.byteorder == ">" else "<"
    codes = numpy.ascontiguousarray(array).view(f"{order}u4")
    if int(codes.max()) > 0x10FFFF:
        raise DeserializationError(f"{name}: the text holds a number past the last Unicode "
                                   "code point")


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
            "data": _base64(_raw_bytes(numpy, array, order))}


def _decode_array(dec: Decoder, v: Any, depth: int) -> Any:
    if type(v) is not dict or set(v) != {"dtype", "shape", "order", "data"}:
        raise DeserializationError(f"{ARRAY}: expected {{dtype, shape, order, data}}, got "
                                   f"{preview(v)}")
    shape, order = v["shape"], v["order"]
    if (type(shape) is not list or len(shape) > _MAX_DIMENSIONS
            or not all(type(n) is int and n >= 0 for n in shape)):
        raise DeserializationError(f"{ARRAY}: shape must be a list of at most "
                                   f"{_MAX_DIMENSIONS} sizes, got {preview(shape)}")
    if order not in ("C", "F"):
        raise DeserializationError(f"{ARRAY}: order must be 'C' or 'F', got {preview(order, 20)}")
    numpy = _numpy(f"{ARRAY}@1")
    dtype = _read_dtype(numpy, v["dtype"], ARRAY)
    raw = unbase64(v["data"], ARRAY)
    count = 1
    for size in shape:
        count *= size  # Python ints: no overflow
    if count * dtype.itemsize != len(raw):  # the dtype has a size: count <= len(raw)
        raise DeserializationError(
            f"{ARRAY}: {len(raw)} bytes of data do not make shape {shape} of {dtype}")
    try:
        if count == 0:  # nothing to copy: strides as numpy gives a new array
            return numpy.empty(tuple(shape), dtype=dtype, order=order)
        view = numpy.ndarray(tuple(shape), dtype=dtype, buffer=raw, order=order)
        _check_text(numpy, view, ARRAY)
        return view.copy(order="K")  # owning writable memory in that order, as from pickle
    except (ValueError, TypeError, OverflowError) as exc:
        raise DeserializationError(f"{ARRAY}: cannot build the array: {exc}") from exc


# -- scalars ---------------------------------------------------------------------------------

def _encode_scalar(enc: Encoder, scalar: Any, depth: int) -> dict[str, Any]:
    numpy = sys.modules["numpy"]
    dtype = scalar.dtype
    # An empty np.str_ or np.bytes_ has a dtype of no size (and tobytes() gives padding).
    empty_text = dtype.itemsize == 0 and dtype.kind in "SU"
    raw = b"" if empty_text else _raw_bytes(numpy, scalar, "C")
    return {"dtype": _describe_dtype(numpy, dtype, SCALAR, empty_ok=empty_text),
            "data": _base64(raw)}


def _decode_scalar(dec: Decoder, v: Any, depth: int) -> Any:
    if type(v) is not dict or set(v) != {"dtype", "data"}:
        raise DeserializationError(f"{SCALAR}: expected {{dtype, data}}, got {preview(v)}")
    numpy = _numpy(f"{SCALAR}@1")
    dtype = _read_dtype(numpy, v["dtype"], SCALAR, empty_ok=True)
    raw = unbase64(v["data"], SCALAR)
    if len(raw) != dtype.itemsize:
        raise DeserializationError(f"{SCALAR}: {len(raw)} bytes of data for a {dtype} "
                                   f"scalar of {dtype.itemsize}")
    if dtype.itemsize == 0:
        if dtype.kind not in "SU":
            raise DeserializationError(f"{SCALAR}: a {dtype} scalar of no size is never read")
        return dtype.type()  # np.str_("") or np.bytes_(b"")
    try:
        values = numpy.frombuffer(raw, dtype=dtype)
        _check_text(numpy, values, SCALAR)
        scalar = values[0]
    except (ValueError, TypeError) as exc:
        raise DeserializationError(f"{SCALAR}: cannot build the scalar: {exc}") from exc
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
