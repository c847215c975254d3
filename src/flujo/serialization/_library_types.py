"""Codecs for value classes of libraries flujo does not depend on, or does not import:
pydantic.v1's ``SecretStr`` and ``SecretBytes``, pydantic-extra-types' ``Color`` and
``SemanticVersion``, python-ulid's ``ULID``, semver's ``Version`` and bson's (pymongo's)
``ObjectId`` — the classes pydantic-extra-types' field types give values of that
are neither models, dataclasses nor subclasses of a builtin (those are derived: ``_auto``,
``_scalars``).

Each is stored under a stable name of its own, never an import path, and found by a fixed
table: writing one looks its class up by where its library defines it (and only takes the
class that is there); reading one imports that fixed module, which is the library's own, not
a module the data names. A process without the library reads such a value as an unknown
type (``UnknownTypeError``; ``strict=False`` keeps it as stored).

Reading builds the value as the library parses its stored text (a version, an id), and
refuses a text the library would write differently; a ``Color`` comes back with the value
it was made from and its parsed channels, set as unpickling sets them.
"""

from __future__ import annotations

import importlib
import math
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..exceptions import DeserializationError, SerializationError, UnknownTypeError
from ._builtins import _base64
from ._paths import note_path
from ._secrets import preview
from ._stdlib import expect_text, unbase64
from ._types import JSONSchema, TypeCodec

if TYPE_CHECKING:
    from ._codec import Decoder, Encoder


# flujo's own imports of the libraries' fixed modules, one at a time: two readers importing
# modules that import each other could otherwise each hold a lock the other waits for.
_IMPORTS = threading.Lock()


def fixed_module(name: str) -> Any:
    """The module ``name`` (one of flujo's fixed table), imported if need be; never a module
    another thread is still running the top of (its classes may not be defined yet)."""
    module = sys.modules.get(name)
    if module is not None and not getattr(getattr(module, "__spec__", None), "_initializing",
                                          False):
        return module
    with _IMPORTS:
        return importlib.import_module(name)  # waits for an import under way to finish


@dataclass(frozen=True)
class LibraryClass:
    """Where a library defines a class: ``module`` and attribute ``name``, and what to
    install to have it."""

    module: str
    name: str
    install: str

    def loaded(self) -> type | None:
        """The class, if its module is imported (writing: a value of it exists)."""
        module = sys.modules.get(self.module)
        found = getattr(module, self.name, None) if module is not None else None
        return found if isinstance(found, type) else None

    def load(self, tag: str) -> type:
        """The class, importing its (fixed) module (reading)."""
        try:
            module = fixed_module(self.module)
        except Exception as exc:  # ImportError, or the RuntimeError of a missing optional
            raise UnknownTypeError(  # dependency (pydantic-extra-types raises those)
                f"{tag} is a {self.module}.{self.name}, and this process cannot import "
                f"{self.module} ({type(exc).__name__}: {exc}): install {self.install}",
                tag=tag) from exc
        found = getattr(module, self.name, None)
        found = found if isinstance(found, type) else None
        if found is None:
            raise UnknownTypeError(f"{tag}: {self.module} no longer defines {self.name}",
                                   tag=tag)
        return found


def _equal(a: Any, b: Any) -> bool:
    return bool(a == b)


def _parsed_text_codec(name: str, where: LibraryClass, parse: Callable[[type, str], Any],
                       schema: JSONSchema, description: str,
                       same: Callable[[Any, Any], bool] = _equal) -> TypeCodec:
    """A class stored as ``str()`` of it and read back by the library's parser, which must
    give a value that writes the same text (one value, one stored form). Writing checks that
    the text reads back as the value (``same``): a value the library's constructor accepted
    but its parser would not (a semver prerelease ``"01"``) is refused when saved."""

    def encode(enc: Encoder, obj: Any, depth: int) -> str:
        text = str(obj)
        try:
            back = parse(type(obj), text)
        except (ValueError, TypeError) as exc:
            back = exc
        if isinstance(back, Exception) or not same(back, obj):
            raise SerializationError(
                f"{name}: {text!r:.60} does not read back as the {where.name} it was written "
                "from, so it cannot be stored exactly; build it with the library's parser")
        return text

    def decode(dec: Decoder, v: Any, depth: int) -> Any:
        text = expect_text(v, name)
        cls = where.load(f"{name}@1")
        try:
            value = parse(cls, text)
        except (ValueError, TypeError) as exc:
            raise DeserializationError(
                f"{name}: {preview(text, 60)} is not a valid {where.name}: {exc}") from exc
        if str(value) != text:
            raise DeserializationError(
                f"{name}: {preview(text, 60)} is not the text {where.name} writes for its value")
        return value

    return TypeCodec(name, 1, "builtin", None, encode, decode, schema,
                     description=description)


_COLOR = LibraryClass("pydantic_extra_types.color", "Color", "pydantic-extra-types")
_RGBA = LibraryClass("pydantic_extra_types.color", "RGBA", "pydantic-extra-types")
_CHANNEL: JSONSchema = {"type": "number", "minimum": 0, "maximum": 1}


def _encode_color(enc: Encoder, color: Any, depth: int) -> dict[str, Any]:
    rgba = color._rgba
    try:
        original = enc.encode(color._original, depth + 1)
    except SerializationError as exc:
        note_path(exc, ".original", None)
        raise
    return {"original": original, "rgba": [rgba.r, rgba.g, rgba.b, rgba.alpha]}


def _channel(value: Any, nullable: bool) -> bool:
    if value is None:
        return nullable
    return type(value) is float and math.isfinite(value) and 0.0 <= value <= 1.0


def _decode_color(dec: Decoder, v: Any, depth: int) -> Any:
    name = "pydantic_extra_types.Color"
    if type(v) is not dict or set(v) != {"original", "rgba"}:
        raise DeserializationError(f"{name}: expected {{original, rgba}}, got {preview(v)}")
    rgba = v["rgba"]
    if (type(rgba) is not list or len(rgba) != 4
            or not all(_channel(c, False) for c in rgba[:3]) or not _channel(rgba[3], True)):
        raise DeserializationError(
            f"{name}: rgba must be [r, g, b, alpha] in 0..1 (alpha may be null), got "
            f"{preview(rgba)}")
    original = dec.decode(v["original"], depth)
    if not isinstance(original, str | tuple | list):  # subclasses too, as Color takes them
        raise DeserializationError(f"{name}: the original value must be text, a tuple or a "
                                   f"list, got {type(original).__name__}")
    color_class = _COLOR.load(f"{name}@1")
    rgba_class = _RGBA.load(f"{name}@1")
    # As unpickling does: the slots set, no parsing of the original (no Color.__init__).
    channels: Any = object.__new__(rgba_class)
    for slot, value in zip(("r", "g", "b", "alpha"), rgba, strict=True):
        object.__setattr__(channels, slot, value)
    object.__setattr__(channels, "_tuple", tuple(rgba))
    color: Any = object.__new__(color_class)
    object.__setattr__(color, "_original", original)
    object.__setattr__(color, "_rgba", channels)
    return color


_COLOR_CODEC = TypeCodec(
    "pydantic_extra_types.Color", 1, "builtin", None, _encode_color, _decode_color,
    {"type": "object",
     "properties": {"original": {"$ref": "#/$defs/value",
                                 "description": "the value the Color was made from"},
                    "rgba": {"type": "array", "prefixItems": [_CHANNEL, _CHANNEL, _CHANNEL,
                                                              {"anyOf": [_CHANNEL,
                                                                         {"type": "null"}]}],
                             "items": False, "minItems": 4}},
     "required": ["original", "rgba"], "additionalProperties": False,
     "examples": [{"original": "red", "rgba": [1.0, 0.0, 0.0, None]}]},
    description="a pydantic-extra-types Color: the value it was made from and its red, "
                "green, blue and alpha channels")

_SEMVER = LibraryClass("semver.version", "Version", "semver")
_SEMANTIC_VERSION = LibraryClass("pydantic_extra_types.semantic_version", "SemanticVersion",
                                 "pydantic-extra-types[semver]")
_ULID = LibraryClass("ulid", "ULID", "python-ulid")
_OBJECT_ID = LibraryClass("bson.objectid", "ObjectId", "pymongo")
_VERSION_SCHEMA: JSONSchema = {"type": "string", "minLength": 5,
                               "description": "MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]",
                               "examples": ["1.2.3-rc.1+build.5"]}


def _parse_version(cls: type, text: str) -> Any:
    return cls.parse(text)  # type: ignore[attr-defined]


def _same_version(a: Any, b: Any) -> bool:
    """The same five parts, of the same types (a prerelease ``""`` is not ``None``)."""
    parts_a, parts_b = a.to_tuple(), b.to_tuple()
    return bool(parts_a == parts_b) and all(
        type(x) is type(y) for x, y in zip(parts_a, parts_b, strict=True))


def _parse_ulid(cls: type, text: str) -> Any:
    return cls.from_str(text)  # type: ignore[attr-defined]


def _parse_object_id(cls: type, text: str) -> Any:
    if len(text) != 24:  # ObjectId also takes 12 raw bytes; stored ids are the hex form
        raise ValueError("an ObjectId is 24 hexadecimal digits")
    return cls(text)


_V1_SECRET_STR = LibraryClass("pydantic.v1.types", "SecretStr", "pydantic")
_V1_SECRET_BYTES = LibraryClass("pydantic.v1.types", "SecretBytes", "pydantic")


def _decode_v1_secret_str(dec: Decoder, v: Any, depth: int) -> Any:
    text = expect_text(v, "pydantic.v1.SecretStr")
    return _V1_SECRET_STR.load("pydantic.v1.SecretStr@1")(text)


def _decode_v1_secret_bytes(dec: Decoder, v: Any, depth: int) -> Any:
    raw = unbase64(v, "pydantic.v1.SecretBytes")  # its errors never quote the text
    return _V1_SECRET_BYTES.load("pydantic.v1.SecretBytes@1")(raw)


LIBRARY_CODECS: tuple[tuple[LibraryClass, TypeCodec], ...] = (
    # pydantic.v1's secrets (pydantic.v1 is loaded only by applications using it)
    (_V1_SECRET_STR, TypeCodec(
        "pydantic.v1.SecretStr", 1, "builtin", None,
        lambda enc, secret, depth: secret.get_secret_value(), _decode_v1_secret_str,
        {"type": "string", "writeOnly": True},
        description="a pydantic.v1 SecretStr: its value, stored so that it comes back; "
                    "masked wherever flujo shows data (encrypt stores holding secrets)")),
    (_V1_SECRET_BYTES, TypeCodec(
        "pydantic.v1.SecretBytes", 1, "builtin", None,
        lambda enc, secret, depth: _base64(secret.get_secret_value()),
        _decode_v1_secret_bytes,
        {"type": "string", "contentEncoding": "base64", "writeOnly": True},
        description="a pydantic.v1 SecretBytes: its value in base64; masked wherever flujo "
                    "shows data (encrypt stores holding secrets)")),
    (_COLOR, _COLOR_CODEC),
    (_SEMVER, _parsed_text_codec(
        "semver.Version", _SEMVER, _parse_version, _VERSION_SCHEMA,
        "a semver Version, as str() writes it", _same_version)),
    (_SEMANTIC_VERSION, _parsed_text_codec(
        "pydantic_extra_types.SemanticVersion", _SEMANTIC_VERSION, _parse_version,
        _VERSION_SCHEMA, "a pydantic-extra-types SemanticVersion, as str() writes it",
        _same_version)),
    (_ULID, _parsed_text_codec(
        "ulid.ULID", _ULID, _parse_ulid,
        {"type": "string", "pattern": "^[0-7][0-9A-HJKMNP-TV-Z]{25}$",
         "examples": ["01ARZ3NDEKTSV4RRFFQ69G5FAV"]},
        "a python-ulid ULID, in its 26-character Crockford base32 form")),
    (_OBJECT_ID, _parsed_text_codec(
        "bson.ObjectId", _OBJECT_ID, _parse_object_id,
        {"type": "string", "pattern": "^[0-9a-f]{24}$",
         "examples": ["507f1f77bcf86cd799439011"]},
        "a bson (pymongo) ObjectId, in hexadecimal")),
)


def library_codec_for(cls: type) -> TypeCodec | None:
    """The codec of ``cls`` when it is one of the classes above, defined where its library
    defines it (a class of the same name elsewhere is not taken for it)."""
    for where, codec in LIBRARY_CODECS:
        if where.name == cls.__name__ and where.loaded() is cls:
            return codec
    return None

LIBRARY_CODEC_NAMES: frozenset[str] = frozenset(codec.name for _, codec in LIBRARY_CODECS)
