"""Codecs for the less common standard-library values: buffers (``memoryview``,
``array.array``) and ``time.struct_time``.

Rare in stored state, so kept out of the compiled core (``_builtins``); the registry installs
them with the other built-in codecs. Buffers are written as base64 of their bytes in a fixed
byte order (little-endian), with what is needed to rebuild them exactly on any platform, and
refused when read on a platform whose item sizes differ.
"""

from __future__ import annotations

import array
import binascii
import math
import struct
import sys
import time
from typing import TYPE_CHECKING, Any, Final

from ..exceptions import DeserializationError, SerializationError
from ._builtins import _base64, _from_base64
from ._secrets import preview
from ._types import JSONSchema, TypeCodec

if TYPE_CHECKING:
    from ._codec import Decoder, Encoder

_BASE64: JSONSchema = {"type": "string", "contentEncoding": "base64"}
# The formats memoryview.cast() accepts: native single items, the struct module's letters.
_CAST_FORMATS: Final = frozenset("bBhHiIlLqQnNfdc?e")
_MAX_DIMENSIONS: Final = 64  # memoryview's own limit (PyBUF_MAX_NDIM)


def expect_text(value: Any, what: str) -> str:
    """Stored text, checked to be a ``str`` (its type named, never its content: it may be a
    secret)."""
    if type(value) is not str:
        raise DeserializationError(f"{what}: expected text, got {type(value).__name__}")
    return value


def unbase64(text: Any, what: str) -> bytes:
    """Stored base64 text, checked (strict) and decoded."""
    if type(text) is not str:
        raise DeserializationError(f"{what}: expected base64 text, got {type(text).__name__}")
    try:
        return _from_base64(text)
    except (binascii.Error, ValueError) as exc:
        raise DeserializationError(f"{what}: not valid base64: {exc}") from exc


def _little_endian(data: bytes, itemsize: int) -> bytes:
    """``data`` (items of ``itemsize`` bytes in this machine's order) in little-endian order."""
    if sys.byteorder == "little" or itemsize == 1:
        return data
    swapped = array.array({2: "H", 4: "I", 8: "Q"}[itemsize], data)
    swapped.byteswap()
    return swapped.tobytes()


# -- memoryview -------------------------------------------------------------------------------
def _enc_memoryview(enc: Encoder, view: memoryview, depth: int) -> dict[str, Any]:
    if view.format not in _CAST_FORMATS:
        raise SerializationError(
            f"memoryview of format {view.format!r} cannot be rebuilt (only the single-item "
            f"formats memoryview.cast() takes: {''.join(sorted(_CAST_FORMATS))})")
    itemsize = view.itemsize
    if view.ndim > 1 and 0 in (view.shape or ()):  # numpy's np.zeros((0, 3), "B").data
        # cast() cannot make such a view again
        raise SerializationError(f"memoryview of shape {view.shape}: a view with no items in "
                                 "more than one dimension cannot be rebuilt")
    data = _little_endian(view.tobytes(), itemsize)  # C order, whatever the strides
    return {"data": _base64(data), "format": view.format, "itemsize": itemsize,
            "shape": list(view.shape or ()), "readonly": view.readonly}


def _dec_memoryview(dec: Decoder, v: Any, depth: int) -> memoryview:
    if type(v) is not dict or set(v) != {"data", "format", "itemsize", "shape", "readonly"}:
        raise DeserializationError(
            "memoryview: expected {data, format, itemsize, shape, readonly}, got "
            f"{preview(v)}")
    fmt, itemsize, shape, readonly = v["format"], v["itemsize"], v["shape"], v["readonly"]
    if type(fmt) is not str or fmt not in _CAST_FORMATS:
        raise DeserializationError(f"memoryview: format {preview(fmt, 20)} is not one memoryview "
                                   "can be cast to")
    if type(readonly) is not bool:
        raise DeserializationError(f"memoryview: readonly must be true or false, got "
                                   f"{preview(readonly, 20)}")
    native = struct.calcsize(fmt)
    if type(itemsize) is not int or itemsize != native:
        raise DeserializationError(
            f"memoryview: items of format {fmt!r} were {preview(itemsize, 20)} bytes where written "
            f"and are {native} here; rebuild it from its bytes yourself")
    if (type(shape) is not list or len(shape) > _MAX_DIMENSIONS
            or any(type(n) is not int or n < 0 for n in shape)):
        raise DeserializationError(f"memoryview: shape must be a list of at most "
                                   f"{_MAX_DIMENSIONS} sizes, got {preview(shape)}")
    data = unbase64(v["data"], "memoryview")
    if len(data) != itemsize * math.prod(shape):
        raise DeserializationError(
            f"memoryview: {len(data)} bytes do not fill the shape {shape} of {itemsize}-byte "
            "items")
    data = _little_endian(data, itemsize)  # the swap is its own inverse
    return _view(data if readonly else bytearray(data), fmt, shape)


def _view(buffer: bytes | bytearray, fmt: str, shape: list[int]) -> memoryview:
    """``buffer`` seen as items of ``fmt`` in ``shape`` (``[]``: one item, 0-dimensional)."""
    cast: Any = memoryview(buffer).cast("B").cast  # typeshed lists the formats one by one
    view: memoryview = cast(fmt) if len(shape) == 1 else cast(fmt, shape)
    return view


# -- array.array ------------------------------------------------------------------------------
# The typecodes of the stored format: those of every Python flujo supports ('w', wchar_t as
# UCS-4, came with 3.13), so the format and its schema do not depend on the interpreter that
# wrote or exported them. A Python without one refuses an array of it when reading.
ARRAY_TYPECODES: Final = frozenset("bBuwhHiIlLqQfd")


def _enc_array(enc: Encoder, values: array.array[Any], depth: int) -> dict[str, Any]:
    data = _little_endian(values.tobytes(), values.itemsize)
    return {"typecode": values.typecode, "itemsize": values.itemsize, "data": _base64(data)}


def _dec_array(dec: Decoder, v: Any, depth: int) -> array.array[Any]:
    if type(v) is not dict or set(v) != {"typecode", "itemsize", "data"}:
        raise DeserializationError(
            f"array: expected {{typecode, itemsize, data}}, got {preview(v)}")
    typecode, itemsize = v["typecode"], v["itemsize"]
    if type(typecode) is not str or typecode not in ARRAY_TYPECODES:
        raise DeserializationError(f"array: unknown typecode {preview(typecode, 20)}")
    if typecode not in array.typecodes:
        raise DeserializationError(
            f"array: typecode {typecode!r} is not supported by this Python"
            f" ({sys.version_info.major}.{sys.version_info.minor}; 'w' needs 3.13)")
    values = array.array(typecode)
    if type(itemsize) is not int or itemsize != values.itemsize:
        raise DeserializationError(
            f"array: items of typecode {typecode!r} were {preview(itemsize, 20)} bytes where "
            "written "
            f"and are {values.itemsize} here (the C type's size differs between platforms)")
    data = unbase64(v["data"], "array")
    if len(data) % itemsize:
        raise DeserializationError(
            f"array: {len(data)} bytes are not a whole number of {itemsize}-byte items")
    values.frombytes(_little_endian(data, itemsize))
    return values


# -- time.struct_time -------------------------------------------------------------------------
_STRUCT_TIME_FIELDS: Final = ("tm_year", "tm_mon", "tm_mday", "tm_hour", "tm_min", "tm_sec",
                              "tm_wday", "tm_yday", "tm_isdst")


def _enc_struct_time(enc: Encoder, value: time.struct_time, depth: int) -> list[Any]:
    return [*(int(value[i]) for i in range(9)), value.tm_zone, value.tm_gmtoff]


def _dec_struct_time(dec: Decoder, v: Any, depth: int) -> time.struct_time:
    if type(v) is not list or len(v) != 11:
        raise DeserializationError(
            f"struct_time: expected its 9 numbers, zone and UTC offset, got {preview(v)}")
    numbers, zone, offset = v[:9], v[9], v[10]
    if any(type(n) is not int for n in numbers) or type(zone) not in (str, type(None)) or \
            type(offset) not in (int, type(None)):
        raise DeserializationError(
            f"struct_time: expected 9 ints, a zone name or null and an offset or null, got "
            f"{preview(v)}")
    return time.struct_time((*numbers, zone, offset))


_INTEGERS: JSONSchema = {"type": "integer"}

STDLIB_CODECS: tuple[TypeCodec, ...] = (
    TypeCodec("memoryview", 1, "builtin", memoryview, _enc_memoryview, _dec_memoryview,
              {"type": "object", "properties": {
                  "data": {**_BASE64, "description": "the items in C order, little-endian"},
                  "format": {"enum": sorted(_CAST_FORMATS)},
                  "itemsize": {"type": "integer", "minimum": 1},
                  "shape": {"type": "array", "items": {"type": "integer", "minimum": 0},
                            "maxItems": _MAX_DIMENSIONS},
                  "readonly": {"type": "boolean"}},
               "required": ["data", "format", "itemsize", "shape", "readonly"],
               "additionalProperties": False},
              description="a copy of a memoryview's bytes with its format, shape and "
                          "whether it is read-only (over bytes) or writable (over a "
                          "bytearray of its own)"),
    TypeCodec("array", 1, "builtin", array.array, _enc_array, _dec_array,
              {"type": "object", "properties": {
                  "typecode": {"enum": sorted(ARRAY_TYPECODES)},
                  "itemsize": {"type": "integer", "minimum": 1},
                  "data": {**_BASE64, "description": "the items, little-endian"}},
               "required": ["typecode", "itemsize", "data"], "additionalProperties": False},
              description="an array.array: its typecode and items"),
    TypeCodec("struct_time", 1, "builtin", time.struct_time, _enc_struct_time,
              _dec_struct_time,
              {"type": "array", "prefixItems": [
                  *([_INTEGERS] * 9), {"type": ["string", "null"]},
                  {"type": ["integer", "null"]}], "items": False, "minItems": 11},
              description="a time.struct_time: " + ", ".join(_STRUCT_TIME_FIELDS)
                          + ", tm_zone, tm_gmtoff"),
)
