"""Codecs for the standard-library types flujo round-trips out of the box.

Each codec writes a stable name (never an import path) and declares the JSON Schema of its
encoded form. ``VALUE_REF`` stands for "any encoded value" and resolves inside the tagged
format schema (``flujo.serialization.tagged_format_schema``).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import pathlib
import re
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import partial
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID
from zoneinfo import ZoneInfo

import orjson
from pydantic import ValidationError
from pydantic_core import SchemaValidator, core_schema, to_jsonable_python

from ..exceptions import DeserializationError, SerializationError, caused
from ._codec import (
    DICT_NAME,
    DICT_VERSION,
    LIST_NAME,
    LIST_VERSION,
    MODELS_NAME,
    MODELS_VERSION,
    REF_NAME,
    REF_VERSION,
    ROWS_NAME,
    ROWS_VERSION,
    UNZONED_ROWS_VERSION,
)
from ._datetimes import (
    datetime_from_text,
    datetime_text,
    time_from_text,
    time_text,
    zone_suffix,
    zoneinfo_from_text,
)
from ._plans import read_model_rows, read_models
from ._rows import parse_header
from ._secrets import preview
from ._types import JSONSchema, TypeCodec, unchanged

if TYPE_CHECKING:
    from ._codec import DecodePlan, Decoder, Encoder

VALUE_REF: JSONSchema = {"$ref": "#/$defs/value"}
_ITEMS: JSONSchema = {"type": "array", "items": VALUE_REF}
_PAIRS: JSONSchema = {
    "type": "array",
    "items": {"type": "array", "prefixItems": [VALUE_REF, VALUE_REF], "items": False,
              "minItems": 2},
}
_ISO_DATE = r"\d{4}-\d{2}-\d{2}"
_ISO_TIME = r"\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([+-]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?|Z)?"
_ZONE = r"(\[fold=1\])?(\[[A-Za-z0-9_+\-/]+\]|\[tzname=[\s\S]*\])?"  # tznames may hold ]


def _expect(value: Any, kind: type, what: str) -> Any:
    if type(value) is not kind:
        raise DeserializationError(f"{what}: expected {kind.__name__}, got {preview(value)}")
    return value


# -- UUID ---------------------------------------------------------------------------------
# pydantic-core writes a UUID in a third of str()'s time and reads one in a fifth of UUID()'s,
# with the same text (checked for every bit pattern by the tests). Text it does not parse goes
# to UUID(), which accepts a few more spellings, so what flujo reads is exactly what UUID()
# reads.
_uuid_text: Callable[[UUID], str] = to_jsonable_python
_parse_uuid = SchemaValidator(core_schema.uuid_schema()).validate_python


def _uuid_from_text(text: str) -> UUID:
    try:
        parsed: UUID = _parse_uuid(text)
    except ValidationError:
        return UUID(text)  # raises ValueError for text it does not take either
    return parsed


# -- date and time (the text: _datetimes) ---------------------------------------------------
def _enc_datetime(enc: Encoder, dt: datetime, depth: int) -> str:
    return datetime_text(dt)


def _enc_time(enc: Encoder, t: time, depth: int) -> str:
    return time_text(t)


def _dec_timedelta(dec: Decoder, v: Any, depth: int) -> timedelta:
    parts = _expect(v, list, "timedelta")
    if len(parts) != 3 or any(type(p) is not int for p in parts):
        raise DeserializationError(f"timedelta: expected [days, seconds, microseconds], got {v!r}")
    days, seconds, micros = parts
    return timedelta(days=days, seconds=seconds, microseconds=micros)


# -- numbers ------------------------------------------------------------------------------
_FLOAT_NAMES: Final = frozenset({"nan", "inf", "-inf"})


def _enc_float(enc: Encoder, x: float, depth: int) -> str:
    if math.isnan(x):
        return "nan"
    return "inf" if x > 0 else "-inf"


def _dec_float(dec: Decoder, v: Any, depth: int) -> float:
    if _expect(v, str, "float") not in _FLOAT_NAMES:
        raise DeserializationError(f"float tag holds {v!r}, not nan/inf/-inf")
    # A new float each time, never the shared math.nan: two NaN objects are two distinct set
    # elements or dict keys (NaN != NaN, so containers tell them apart by identity only).
    return float(v)


def _dec_int(dec: Decoder, v: Any, depth: int) -> int:
    text = _expect(v, str, "int")
    if not text.lstrip("-").startswith("0x"):
        raise DeserializationError(f"int tag holds {v!r}, not a hex literal")
    return int(text, 16)


def _dec_complex(dec: Decoder, v: Any, depth: int) -> complex:
    real, imag = dec.decode_items(_expect(v, list, "complex"), depth)
    if type(real) is not float or type(imag) is not float:
        raise DeserializationError(f"complex parts must be floats, got {v!r}")
    return complex(real, imag)


# -- containers ---------------------------------------------------------------------------
def _sorted_items(enc: Encoder, items: set[Any] | frozenset[Any], depth: int) -> list[Any]:
    """Sets are written in a deterministic order so equal sets give identical bytes.

    Their own order when ``<`` totally orders the elements, else the order of the encoded
    bytes. sorted() succeeding is not enough: with NaNs or frozensets (ordered by inclusion)
    its result depends on the set's iteration order, which depends on insertion history.
    """
    if len(set(map(type, items))) == 1 and type(next(iter(items))) is str:
        return sorted(items)  # str order is total, and strings are written as they are
    ordered: list[Any] = []
    try:
        ordered = sorted(items)
        total = all(a < b for a, b in pairwise(ordered))
    except Exception:  # not only TypeError: Decimal('NaN') < x raises InvalidOperation
        total = False
    if enc.shared is not None:  # the second pass of a value with shared objects
        return _shared_items(enc, ordered if total else items, depth + 1, sort=not total)
    if total:
        return enc.encode_items(ordered, depth + 1)
    return _by_bytes(enc.as_data(items, depth + 1))


def _by_bytes(encoded: list[Any]) -> list[Any]:
    """Encoded elements in the order of their JSON bytes (keys sorted)."""
    return sorted(encoded, key=lambda e: orjson.dumps(e, option=orjson.OPT_SORT_KEYS))


def _shared_items(enc: Encoder, items: Any, depth: int, *, sort: bool) -> list[Any]:
    """A set's elements where a value holds shared objects: they are hashed when read back
    (``Encoder.hashing``), and an anchor must come before its references in the document,
    so elements holding anchors or references are not reordered after being written."""
    marks = enc.anchors, enc.refs
    enc.hashing += 1
    try:
        encoded = enc.as_data(items, depth) if sort else enc.encode_items(items, depth)
    finally:
        enc.hashing -= 1
    if not sort or (enc.anchors, enc.refs) != marks:
        return encoded
    return _by_bytes(encoded)


_MAX_SHARED_HASH: Final = 64


def _hash_safe(keys: list[Any], what: str) -> list[Any]:
    """Refuse stored keys crafted to share one hash (hash flooding).

    Hashes of ints, floats, Decimals and tuples of them are not randomized: stored data could
    hold thousands of distinct ints with one hash and make building the set or dict
    quadratic. Legitimate data practically never has more than a few equal hashes.
    """
    if len(keys) <= _MAX_SHARED_HASH:
        return keys
    counts: dict[int, int] = {}
    for key in keys:
        digest = hash(key)
        count = counts.get(digest, 0) + 1
        if count > _MAX_SHARED_HASH:
            raise DeserializationError(
                f"{what}: more than {_MAX_SHARED_HASH} distinct keys share one hash value; "
                "refused as a hash-flooding attempt")
        counts[digest] = count
    return keys


def _hash_safe_pairs(pairs: list[tuple[Any, Any]], what: str) -> list[tuple[Any, Any]]:
    _hash_safe([key for key, _ in pairs], what)
    return pairs


def _dec_tuple(dec: Decoder, v: Any, depth: int) -> tuple[Any, ...]:
    return tuple(dec.decode_items(_expect(v, list, "tuple"), depth))


# The containers that can hold themselves bind the empty container (Decoder.bind) before
# reading their contents: a reference inside then finds it.
def _dec_list(dec: Decoder, v: Any, depth: int) -> list[Any]:
    out: list[Any] = []
    dec.bind(out)
    out += dec.decode_items(_expect(v, list, "list"), depth)
    return out


def _dec_ref(dec: Decoder, v: Any, depth: int) -> Any:
    return dec.resolve(v)


def _dec_set(dec: Decoder, v: Any, depth: int) -> set[Any]:
    out: set[Any] = set()
    dec.bind(out)
    out.update(_hash_safe(dec.decode_items(_expect(v, list, "set"), depth), "set"))
    return out


def _dec_frozenset(dec: Decoder, v: Any, depth: int) -> frozenset[Any]:
    return frozenset(_hash_safe(dec.decode_items(_expect(v, list, "frozenset"), depth),
                                "frozenset"))


# Three frames a level, like the other containers: nesting that was written is read.
def _dec_dict(dec: Decoder, v: Any, depth: int) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    dec.bind(out)
    out.update(_hash_safe_pairs(dec.decode_pairs(_expect(v, list, "dict"), depth, "dict"),
                                "dict"))
    return out


def _dec_ordereddict(dec: Decoder, v: Any, depth: int) -> OrderedDict[Any, Any]:
    out: OrderedDict[Any, Any] = OrderedDict()
    dec.bind(out)
    out.update(_hash_safe_pairs(
        dec.decode_pairs(_expect(v, list, "ordereddict"), depth, "ordereddict"), "ordereddict"))
    return out


def _dec_counter(dec: Decoder, v: Any, depth: int) -> Counter[Any]:
    out: Counter[Any] = Counter()
    dec.bind(out)
    dict.update(out, _hash_safe_pairs(  # the counts as stored: Counter.update would add them
        dec.decode_pairs(_expect(v, list, "counter"), depth, "counter"), "counter"))
    return out


def _enc_dict_pairs(enc: Encoder, d: dict[Any, Any], depth: int) -> list[list[Any]]:
    return enc.encode_pairs(d.items(), depth + 1)


def _enc_deque(enc: Encoder, d: deque[Any], depth: int) -> dict[str, Any]:
    return {"items": enc.encode_items(d, depth + 1), "maxlen": d.maxlen}


def _dec_deque(dec: Decoder, v: Any, depth: int) -> deque[Any]:
    body = _expect(v, dict, "deque")
    out: deque[Any] = deque(maxlen=body["maxlen"])
    dec.bind(out)
    out.extend(dec.decode_items(_expect(body["items"], list, "deque items"), depth))
    return out


_FACTORY_BUILTINS: Final[dict[str, Callable[[], Any]]] = {
    "list": list, "dict": dict, "int": int, "float": float, "str": str, "bool": bool,
}


def _enc_defaultdict(enc: Encoder, d: defaultdict[Any, Any], depth: int) -> dict[str, Any]:
    factory = d.default_factory
    name: str | None
    if factory is None:
        name = None
    elif isinstance(factory, type) and _FACTORY_BUILTINS.get(factory.__name__) is factory:
        name = factory.__name__
    else:
        codec = enc.registry.codec_for_factory(factory)
        if codec is None:
            raise SerializationError(
                f"defaultdict factory {factory!r} is neither a built-in type nor a "
                "registered type, so it cannot be restored; use a class or register it"
            )
        name = codec.name
    return {"factory": name, "items": enc.encode_pairs(d.items(), depth + 1)}


def _dec_defaultdict(dec: Decoder, v: Any, depth: int) -> defaultdict[Any, Any]:
    body = _expect(v, dict, "defaultdict")
    name = body["factory"]
    factory: Callable[[], Any] | None
    if name is None:
        factory = None
    elif name in _FACTORY_BUILTINS:
        factory = _FACTORY_BUILTINS[name]
    else:
        factory = dec.registry.factory_named(_expect(name, str, "defaultdict factory"))
    items = _expect(body["items"], list, "defaultdict items")
    out: defaultdict[Any, Any] = defaultdict(factory)
    dec.bind(out)
    out.update(_hash_safe_pairs(dec.decode_pairs(items, depth, "defaultdict"), "defaultdict"))
    return out


# -- IP addresses, networks and interfaces -------------------------------------------------
# Stored as str(): only the text str() writes is read back (no leading zeros, lower-case hex,
# a network without host bits, ...), so one value has exactly one stored form.
def _canonical_parser(cls: type) -> Callable[[str], Any]:
    """``cls(text)``, refused unless ``str()`` of it is ``text`` exactly."""
    kind = cls.__name__

    def parse(text: str) -> Any:
        value = cls(text)
        if str(value) != text:
            raise DeserializationError(
                f"{text!r} is not the canonical text of an {kind} (that is {str(value)!r})")
        return value

    return parse


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(\.{_OCTET}){{3}}"
_IPV6 = r"[0-9a-f:.]*:[0-9a-f:.]*(%[^%/]+)?"  # the exact text is checked when read


# -- time zones on their own ----------------------------------------------------------------
def _zoneinfo_text(tz: ZoneInfo) -> str:
    return zone_suffix(tz)[1:-1]  # "[Zone/Key]", checked to be in the database's list


_DAY_US: Final = 86_400_000_000


def _timezone_value(tz: timezone) -> dict[str, Any]:
    # __getinitargs__ tells an explicit name from none: timezone(timedelta(0), "UTC") is not
    # timezone.utc, though they are equal and say the same tzname().
    args = tz.__getinitargs__()  # type: ignore[attr-defined]
    offset: timedelta = args[0]
    micros = (offset.days * 86_400 + offset.seconds) * 1_000_000 + offset.microseconds
    return {"offset_us": micros, "name": args[1] if len(args) > 1 else None}


def _enc_timezone(enc: Encoder, tz: timezone, depth: int) -> dict[str, Any]:
    return _timezone_value(tz)


def _dec_timezone(dec: Decoder, v: Any, depth: int) -> timezone:
    body = _expect(v, dict, "timezone")
    if len(body) != 2 or "offset_us" not in body or "name" not in body:
        raise DeserializationError(
            f"timezone: expected {{\"offset_us\": int, \"name\": str or null}}, got {preview(v)}")
    micros = body["offset_us"]
    name = body["name"]
    if type(micros) is not int or not -_DAY_US < micros < _DAY_US:
        raise DeserializationError(
            f"timezone: offset_us must be an integer strictly within a day, got {preview(micros)}")
    offset = timedelta(microseconds=micros)
    if name is None:
        return timezone(offset)  # timezone(timedelta(0)) is timezone.utc itself
    return timezone(offset, _expect(name, str, "timezone name"))


# -- compiled regular expressions ----------------------------------------------------------
# A pattern is data, not code, but compiling it costs CPU: stored patterns are bounded.
MAX_PATTERN_LENGTH: Final = 10_000
# DEBUG prints while compiling and TEMPLATE is gone from newer Pythons: neither is stored.
_PATTERN_FLAGS: Final = int(re.ASCII | re.IGNORECASE | re.LOCALE | re.UNICODE | re.MULTILINE
                            | re.DOTALL | re.VERBOSE)


def _pattern_value(p: re.Pattern[Any]) -> dict[str, Any]:
    flags = p.flags
    if flags & ~_PATTERN_FLAGS:
        raise SerializationError(
            f"cannot store the regular expression {preview(p.pattern)} with flags {flags:#x}: "
            "re.DEBUG and re.TEMPLATE are not stored")
    source = p.pattern
    if len(source) > MAX_PATTERN_LENGTH:
        raise SerializationError(
            f"a regular expression of {len(source)} characters is longer than the "
            f"{MAX_PATTERN_LENGTH} that are read back")
    if type(source) is str:
        return {"pattern": source, "flags": flags}
    return {"bytes": base64.b64encode(source).decode("ascii"), "flags": flags}


def _enc_pattern(enc: Encoder, p: re.Pattern[Any], depth: int) -> dict[str, Any]:
    return _pattern_value(p)


def _dec_pattern(dec: Decoder, v: Any, depth: int) -> re.Pattern[Any]:
    body = _expect(v, dict, "pattern")
    flags = body.get("flags")
    if len(body) != 2 or type(flags) is not int or flags & ~_PATTERN_FLAGS:
        raise DeserializationError(
            "pattern: expected {\"pattern\": str, \"flags\": int} or {\"bytes\": base64, "
            f"\"flags\": int}} with flags among re.A|I|L|U|M|S|X, got {preview(v)}")
    source: str | bytes
    if "pattern" in body:
        source = _expect(body["pattern"], str, "pattern")
    elif "bytes" in body:
        text = _expect(body["bytes"], str, "pattern bytes")
        if len(text) > (MAX_PATTERN_LENGTH + 2) // 3 * 4:
            raise DeserializationError(
                f"pattern: longer than {MAX_PATTERN_LENGTH} bytes, refused")
        source = _from_base64(text)
    else:
        raise DeserializationError(f"pattern: expected a pattern or bytes key, got {preview(v)}")
    if len(source) > MAX_PATTERN_LENGTH:
        raise DeserializationError(
            f"pattern: {len(source)} characters, longer than the {MAX_PATTERN_LENGTH} allowed")
    try:
        compiled = re.compile(source, flags)
    except (re.error, ValueError, OverflowError, RecursionError) as exc:
        raise caused(DeserializationError(
            f"pattern: {preview(source)} does not compile: {exc}"), exc)
    if compiled.flags != flags:  # e.g. a str pattern stored without re.UNICODE
        raise DeserializationError(
            f"pattern: stored flags {flags:#x} but the pattern compiles with {compiled.flags:#x}")
    return compiled


# Types stored as one string: the reading ``text -> obj`` of each. The decoder calls these
# directly (``TypeCodec.from_text``); the decode plans wrap the same functions.
_from_base64: Callable[[str], bytes] = partial(binascii.a2b_base64, strict_mode=True)


def _bytearray_from_text(text: str) -> bytearray:
    return bytearray(_from_base64(text))


_FROM_TEXT: Final[dict[str, Callable[[str], Any]]] = {
    "datetime": datetime_from_text,
    "date": date.fromisoformat,
    "time": time_from_text,
    "uuid": _uuid_from_text,
    "decimal": Decimal,
    # b64decode(validate=True) is this call after a Python-level argument check.
    "bytes": _from_base64,
    "bytearray": _bytearray_from_text,
    "path.posix": pathlib.PosixPath,
    "path.windows": pathlib.WindowsPath,
    "purepath.posix": pathlib.PurePosixPath,
    "purepath.windows": pathlib.PureWindowsPath,
    "ipv4address": _canonical_parser(ipaddress.IPv4Address),
    "ipv6address": _canonical_parser(ipaddress.IPv6Address),
    "ipv4network": _canonical_parser(ipaddress.IPv4Network),
    "ipv6network": _canonical_parser(ipaddress.IPv6Network),
    "ipv4interface": _canonical_parser(ipaddress.IPv4Interface),
    "ipv6interface": _canonical_parser(ipaddress.IPv6Interface),
    "zoneinfo": zoneinfo_from_text,
}


def _text_plan(name: str) -> DecodePlan:
    """The decode plan of a type stored as one string (the check inline: these are hot)."""
    decode = _FROM_TEXT[name]

    def decode_text(dec: Decoder, v: Any, depth: int) -> Any:
        if type(v) is not str:
            raise DeserializationError(f"{name}: expected str, got {preview(v)}")
        return decode(v)

    return decode_text


def _string_codec(name: str, py_type: type, schema: JSONSchema) -> TypeCodec:
    return TypeCodec(name, 1, "builtin", py_type, lambda enc, obj, depth: str(obj),
                     _text_plan(name), schema)


def _path_codec(name: str, cls: type[pathlib.PurePath]) -> TypeCodec:
    return _string_codec(name, cls, {"type": "string"})


def _dec_models(dec: Decoder, v: Any, depth: int) -> list[Any]:
    body = _expect(v, list, "models")
    if len(body) != 2:
        raise DeserializationError(f"models: expected [tag, [model JSON, ...]], got {preview(v)}")
    return read_models(dec, body[0], body[1], depth)


def _rows_v1_to_v2(v: Any) -> Any:
    """rows@1 is rows@2 without unset fields: the same value."""
    return v


def _rows_v2_to_v3(v: Any) -> Any:
    """rows@2 is rows@3 without datetimes written as flujo's text: the same value."""
    return v


def _dec_rows(dec: Decoder, v: Any, depth: int) -> list[Any]:
    body = _expect(v, list, "rows")
    if len(body) != 3 or type(body[0]) is not str:
        raise DeserializationError(f"rows: expected [tag, fields, [row, ...]], got {preview(v)}")
    stored = parse_header(body[1], depth + 1, dec.limit, dec.max_depth)
    return read_model_rows(dec, body[0], stored, body[2], depth)


# The grammar of _rows; anchors, not $defs, because a codec's schema is embedded in others.
_ROWS_FIELDS: Final[JSONSchema] = {
    "$anchor": "flujo-rows-fields", "type": "array",
    "description": "the field names, in row order; a field holding models is {name: node}",
    "items": {"anyOf": [
        {"type": "string"},
        {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": {
            "$anchor": "flujo-rows-node",
            "description": "fields (one model as a row), {\"list\": node} or {\"dict\": node}",
            "anyOf": [
                {"$ref": "#flujo-rows-fields"},
                {"type": "object", "minProperties": 1, "maxProperties": 1,
                 "properties": {"list": {"$ref": "#flujo-rows-node"},
                                "dict": {"$ref": "#flujo-rows-node"}},
                 "additionalProperties": False}]}}]},
}

_CODECS: tuple[TypeCodec, ...] = (
    TypeCodec("datetime", 1, "builtin", datetime, _enc_datetime, _text_plan("datetime"),
              {"type": "string", "pattern": f"^{_ISO_DATE}T{_ISO_TIME}{_ZONE}$"},
              description="ISO 8601 (RFC 3339) timestamp; an IANA zone as an RFC 9557 "
                          "suffix, e.g. 2024-03-10T01:30:00-05:00[America/New_York]"),
    TypeCodec("date", 1, "builtin", date, lambda enc, d, depth: d.isoformat(),
              _text_plan("date"),
              {"type": "string", "pattern": f"^{_ISO_DATE}$"}),
    TypeCodec("time", 1, "builtin", time, _enc_time, _text_plan("time"),
              {"type": "string", "pattern": f"^{_ISO_TIME}{_ZONE}$"}),
    TypeCodec("timedelta", 1, "builtin", timedelta,
              lambda enc, td, depth: [td.days, td.seconds, td.microseconds], _dec_timedelta,
              {"type": "array", "prefixItems": [{"type": "integer"}] * 3, "items": False,
               "minItems": 3, "description": "[days, seconds, microseconds]"}),
    _string_codec("uuid", UUID, {
        "type": "string",
        "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    }),
    _string_codec("decimal", Decimal, {"type": "string", "pattern":
                  r"^[+-]?((\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|Infinity|s?NaN\d*)$"}),
    TypeCodec("float", 1, "builtin", float, _enc_float, _dec_float,
              {"enum": ["nan", "inf", "-inf"],
               "description": "only non-finite floats are tagged; finite ones are plain"}),
    TypeCodec("int", 1, "builtin", int, lambda enc, i, depth: hex(i), _dec_int,
              {"type": "string", "pattern": "^-?0x[0-9a-f]+$",
               "description": "only integers outside [-2**63, 2**64) are tagged, in hex"}),
    TypeCodec("complex", 1, "builtin", complex,
              lambda enc, c, depth: [enc.encode(c.real, depth + 1), enc.encode(c.imag, depth + 1)],
              _dec_complex,
              {"type": "array", "prefixItems": [VALUE_REF, VALUE_REF], "items": False,
               "minItems": 2, "description": "[real, imag]"}),
    TypeCodec("bytes", 1, "builtin", bytes,
              lambda enc, b, depth: base64.b64encode(b).decode("ascii"), _text_plan("bytes"),
              {"type": "string", "contentEncoding": "base64"}),
    TypeCodec("bytearray", 1, "builtin", bytearray,
              lambda enc, b, depth: base64.b64encode(b).decode("ascii"),
              _text_plan("bytearray"),
              {"type": "string", "contentEncoding": "base64"}),
    TypeCodec("tuple", 1, "builtin", tuple,
              lambda enc, t, depth: enc.encode_items(t, depth + 1),
              _dec_tuple, _ITEMS),
    TypeCodec("set", 1, "builtin", set, _sorted_items,
              _dec_set,
              {**_ITEMS, "description": "elements in a deterministic order"}),
    TypeCodec("frozenset", 1, "builtin", frozenset, _sorted_items,
              _dec_frozenset,
              {**_ITEMS, "description": "elements in a deterministic order"}),
    TypeCodec(DICT_NAME, DICT_VERSION, "builtin", dict, _enc_dict_pairs,
              _dec_dict,
              {**_PAIRS, "description": "a dict with a non-str key or the reserved '$t' key, "
                                        "as [key, value] pairs in insertion order"}),
    TypeCodec(LIST_NAME, LIST_VERSION, "builtin", None, None, _dec_list, _ITEMS,
              description="A list reached more than once in the value (shared, or in a "
                          "cycle), where it first occurs: it carries the anchor that "
                          "references to it name."),
    TypeCodec(REF_NAME, REF_VERSION, "builtin", None, None, _dec_ref,
              {"type": "integer", "minimum": 1,
               "description": "the anchor of an object written earlier in the value"},
              description="Another occurrence of an object reached more than once in the "
                          "value: the number of its anchor, written where it first occurs."),
    TypeCodec("ordereddict", 1, "builtin", OrderedDict, _enc_dict_pairs,
              _dec_ordereddict,
              _PAIRS),
    TypeCodec("counter", 1, "builtin", Counter, _enc_dict_pairs,
              _dec_counter,
              _PAIRS),
    TypeCodec("deque", 1, "builtin", deque, _enc_deque, _dec_deque,
              {"type": "object", "properties": {"items": _ITEMS, "maxlen": {
                  "type": ["integer", "null"], "minimum": 0}},
               "required": ["items", "maxlen"], "additionalProperties": False}),
    TypeCodec("defaultdict", 1, "builtin", defaultdict, _enc_defaultdict, _dec_defaultdict,
              {"type": "object", "properties": {"factory": {"type": ["string", "null"]},
                                                "items": _PAIRS},
               "required": ["factory", "items"], "additionalProperties": False}),
    TypeCodec(MODELS_NAME, MODELS_VERSION, "builtin", None, None, _dec_models,
              {"type": "array", "minItems": 2, "items": False, "prefixItems": [
                  {"type": "string", "pattern": "^[^@$\\s][^@\\s]*@[1-9][0-9]*$",
                   "description": "the tag of the model class"},
                  {"type": "array", "items": {"type": "object"},
                   "description": "each model in its typed form (its own JSON)"}]},
              description="A list of instances of one pydantic model class, each in the "
                          "typed form: [tag, [json, ...]] stands for [{\"$t\": tag, \"v\": "
                          "[json]}, ...]."),
    TypeCodec(ROWS_NAME, ROWS_VERSION, "builtin", None, None, _dec_rows,
              {"type": "array", "minItems": 3, "items": False, "prefixItems": [
                  {"type": "string", "pattern": "^[^@$\\s][^@\\s]*@[1-9][0-9]*$",
                   "description": "the tag of the model class"},
                  _ROWS_FIELDS,
                  {"type": "array", "items": {"type": "array"},
                   "description": "each model as the array of its field values, in the "
                                  "order of fields"}]},
              description="A list of instances of one pydantic model class, each in the "
                          "typed form with its field names written once: [tag, fields, "
                          "[row, ...]], a row being the array of a model's field values. "
                          "Version 2: fields may end with \"$unset\", and each row of that "
                          "model then ends with null or the names of its unset fields. "
                          "Version 3: a datetime value may be flujo's datetime text (the "
                          "datetime type's), e.g. 2024-03-10T01:30:00-05:00[America/New_York]; "
                          "a list without such a datetime is still written as version 2.",
              migrations={1: unchanged(_rows_v1_to_v2), 2: unchanged(_rows_v2_to_v3)},
              also_writes=(UNZONED_ROWS_VERSION,)),
    _path_codec("path.posix", pathlib.PosixPath),
    _path_codec("path.windows", pathlib.WindowsPath),
    _path_codec("purepath.posix", pathlib.PurePosixPath),
    _path_codec("purepath.windows", pathlib.PureWindowsPath),
    _string_codec("ipv4address", ipaddress.IPv4Address,
                  {"type": "string", "pattern": f"^{_IPV4}$"}),
    _string_codec("ipv6address", ipaddress.IPv6Address,
                  {"type": "string", "pattern": f"^{_IPV6}$",
                   "description": "str(): compressed lower-case hex, a scope id after %"}),
    _string_codec("ipv4network", ipaddress.IPv4Network,
                  {"type": "string", "pattern": f"^{_IPV4}/[0-9]{{1,2}}$"}),
    _string_codec("ipv6network", ipaddress.IPv6Network,
                  {"type": "string", "pattern": f"^{_IPV6}/[0-9]{{1,3}}$"}),
    _string_codec("ipv4interface", ipaddress.IPv4Interface,
                  {"type": "string", "pattern": f"^{_IPV4}/[0-9]{{1,2}}$"}),
    _string_codec("ipv6interface", ipaddress.IPv6Interface,
                  {"type": "string", "pattern": f"^{_IPV6}/[0-9]{{1,3}}$"}),
    TypeCodec("zoneinfo", 1, "builtin", ZoneInfo,
              lambda enc, tz, depth: _zoneinfo_text(tz), _text_plan("zoneinfo"),
              {"type": "string", "pattern": "^[A-Za-z0-9_+\\-/]+$"},
              description="the zone's key, one of the time zone database's list of zones"),
    TypeCodec("timezone", 1, "builtin", timezone, _enc_timezone, _dec_timezone,
              {"type": "object", "properties": {
                  "offset_us": {"type": "integer", "exclusiveMinimum": -_DAY_US,
                                "exclusiveMaximum": _DAY_US,
                                "description": "the UTC offset in microseconds"},
                  "name": {"type": ["string", "null"],
                           "description": "the name given to timezone(), null for none"}},
               "required": ["offset_us", "name"], "additionalProperties": False},
              description="a datetime.timezone; timezone.utc is offset 0 without a name"),
    TypeCodec("pattern", 1, "builtin", re.Pattern, _enc_pattern, _dec_pattern,
              {"type": "object", "oneOf": [
                  {"properties": {"pattern": {"type": "string", "maxLength": 10_000},
                                  "flags": {"type": "integer", "minimum": 0}},
                   "required": ["pattern", "flags"], "additionalProperties": False},
                  {"properties": {"bytes": {"type": "string", "contentEncoding": "base64"},
                                  "flags": {"type": "integer", "minimum": 0}},
                   "required": ["bytes", "flags"], "additionalProperties": False}]},
              description="a compiled regular expression (re.compile): its pattern, str or "
                          "base64 bytes, and its flags (Pattern.flags, re.UNICODE included "
                          "for str patterns); at most 10,000 characters"),
)

def _base64(data: bytes | bytearray) -> str:
    return base64.b64encode(data).decode("ascii")


# float and int are not leaves: their codecs handle only the values Encoder.encode does not
# write natively (non-finite floats, ints beyond 64 bits), so they must be reached through it.
_LEAVES: dict[str, Callable[[Any], Any]] = {
    "datetime": datetime_text,
    "date": date.isoformat,
    "time": lambda t: _enc_time(None, t, 0),  # type: ignore[arg-type]
    "timedelta": lambda td: [td.days, td.seconds, td.microseconds],
    "uuid": _uuid_text,
    "decimal": str,
    "bytes": _base64,  # bytearray is mutable, so not a leaf: its identity is kept
    "path.posix": str,
    "path.windows": str,
    "purepath.posix": str,
    "purepath.windows": str,
    "ipv4address": str,
    "ipv6address": str,
    "ipv4network": str,
    "ipv6network": str,
    "ipv4interface": str,
    "ipv6interface": str,
    "zoneinfo": _zoneinfo_text,
    "timezone": _timezone_value,
    "pattern": _pattern_value,
}
BUILTIN_CODECS: tuple[TypeCodec, ...] = tuple(
    replace(codec, leaf=_LEAVES.get(codec.name), from_text=_FROM_TEXT.get(codec.name))
    for codec in _CODECS)
