"""Codecs for pydantic's own value classes: secrets, URLs and DSNs, ``NameEmail``,
``ByteSize``, and pydantic-core's ``Url`` and ``MultiHostUrl``.

These are classes of pydantic (a dependency of flujo), not of the application: reading one
back builds it through pydantic's own constructor, which checks the stored text as pydantic
checks any input, and gives the value the writer had (``str()`` of a URL is its normalized
form, which parses to itself). Model fields of these types are written by these codecs, in
the generic form (the typed form holds only plain JSON types).

Secrets (``SecretStr``, ``SecretBytes``) are stored as their value, so that they come back
exactly; whatever flujo shows a person masks them (``mode="json"``, ``flujo state show``,
error messages: ``_secrets.mask_secrets``). Encrypt a store that holds secrets (docs/backends.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pydantic
import pydantic.networks
import pydantic_core
from pydantic import ByteSize, NameEmail, SecretBytes, SecretStr, ValidationError

from ..exceptions import DeserializationError
from ._builtins import _base64
from ._secrets import preview
from ._stdlib import expect_text, unbase64
from ._types import TypeCodec

if TYPE_CHECKING:
    from ._codec import Decoder, Encoder

def _dec_secret_str(dec: Decoder, v: Any, depth: int) -> SecretStr:
    return SecretStr(expect_text(v, "secretstr"))


def _dec_secret_bytes(dec: Decoder, v: Any, depth: int) -> SecretBytes:
    return SecretBytes(unbase64(v, "secretbytes"))  # its errors never quote the text


def _url_codec(cls: type, name: str) -> TypeCodec:
    """A URL or DSN class, stored as ``str()`` of it and read back by ``cls(text)``."""

    def encode(enc: Encoder, url: Any, depth: int) -> str:
        return str(url)

    def decode(dec: Decoder, v: Any, depth: int) -> Any:
        text = expect_text(v, name)
        # Messages leave the text out: a DSN may hold a password.
        try:
            url = cls(text)
        except (ValidationError, TypeError, ValueError) as exc:
            reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise DeserializationError(
                f"{name}: the stored text is not a valid {cls.__name__}: {reason}") from exc
        if str(url) != text:  # one value, one stored form (as for ipaddress)
            raise DeserializationError(
                f"{name}: the stored text is not the text {cls.__name__} writes for it")
        return url

    return TypeCodec(name, 1, "builtin", cls, encode, decode,
                     {"type": "string", "format": "uri", "minLength": 1},
                     description=f"a pydantic {cls.__name__}, as str() writes it")


def _url_classes() -> list[tuple[type, str]]:
    """pydantic's URL and DSN classes, then pydantic-core's two."""
    found: list[tuple[type, str]] = []
    for attribute, value in sorted(vars(pydantic.networks).items()):
        if (isinstance(value, type) and value.__module__ == "pydantic.networks"
                and not attribute.startswith("_")
                and issubclass(value, (pydantic.networks._BaseUrl,
                                       pydantic.networks._BaseMultiHostUrl))):
            found.append((value, f"pydantic.{attribute}"))
    found.append((pydantic_core.Url, "pydantic_core.Url"))
    found.append((pydantic_core.MultiHostUrl, "pydantic_core.MultiHostUrl"))
    return found


def _enc_name_email(enc: Encoder, value: NameEmail, depth: int) -> dict[str, str]:
    return {"name": value.name, "email": value.email}


def _dec_name_email(dec: Decoder, v: Any, depth: int) -> NameEmail:
    if type(v) is not dict or set(v) != {"name", "email"} or any(
            type(part) is not str for part in v.values()):
        raise DeserializationError(f"pydantic.NameEmail: expected {{name, email}} texts, got "
                                   f"{preview(v)}")
    return NameEmail(v["name"], v["email"])


def _dec_byte_size(dec: Decoder, v: Any, depth: int) -> ByteSize:
    v = dec.decode(v, depth)  # a size past 64 bits is a tagged int
    if type(v) is not int:
        raise DeserializationError(f"pydantic.ByteSize: expected an int, got {preview(v, 40)}")
    return ByteSize(v)


PYDANTIC_CODECS: tuple[TypeCodec, ...] = (
    TypeCodec("secretstr", 1, "builtin", SecretStr,
              lambda enc, secret, depth: secret.get_secret_value(), _dec_secret_str,
              {"type": "string", "writeOnly": True},
              description="a pydantic SecretStr: its value, stored so that it comes back; "
                          "masked wherever flujo shows data (encrypt stores holding secrets)"),
    TypeCodec("secretbytes", 1, "builtin", SecretBytes,
              lambda enc, secret, depth: _base64(secret.get_secret_value()),
              _dec_secret_bytes,
              {"type": "string", "contentEncoding": "base64", "writeOnly": True},
              description="a pydantic SecretBytes: its value in base64; masked wherever "
                          "flujo shows data (encrypt stores holding secrets)"),
    TypeCodec("pydantic.NameEmail", 1, "builtin", NameEmail, _enc_name_email,
              _dec_name_email,
              {"type": "object", "properties": {"name": {"type": "string"},
                                                "email": {"type": "string"}},
               "required": ["name", "email"], "additionalProperties": False},
              description="a pydantic NameEmail"),
    TypeCodec("pydantic.ByteSize", 1, "builtin", ByteSize,
              lambda enc, size, depth: enc.encode(int(size), depth + 1), _dec_byte_size,
              {"anyOf": [{"type": "integer"}, {"$ref": "#/$defs/int@1"}]},
              description="a pydantic ByteSize (an int of bytes)"),
    *(_url_codec(cls, name) for cls, name in _url_classes()),
)
