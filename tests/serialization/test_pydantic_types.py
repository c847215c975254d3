"""pydantic's own value classes (_pydantic_types): secrets, URLs and DSNs, NameEmail,
ByteSize, pydantic-core's Url and MultiHostUrl: standalone and as model fields, exact, and
secrets masked wherever flujo shows data."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import (
    AmqpDsn,
    AnyUrl,
    BaseModel,
    ByteSize,
    ConfigDict,
    FileUrl,
    HttpUrl,
    MongoDsn,
    NameEmail,
    PostgresDsn,
    RedisDsn,
    SecretBytes,
    SecretStr,
    WebsocketUrl,
)
from pydantic_core import MultiHostUrl, Url

from flujo.exceptions import DeserializationError, UnserializableTypeError
from flujo.serialization import mask_secrets, safe_deserialize, safe_serialize

from ._support import assert_same


class Connection(BaseModel):
    url: HttpUrl
    dsn: PostgresDsn
    token: SecretStr
    key: SecretBytes
    owner: NameEmail
    size: ByteSize
    mirrors: list[AnyUrl] = []


def _connection() -> Connection:
    return Connection(url="https://Example.com/a b", dsn="postgres://u:pw@h1,h2:5433/db",
                      token="hunter2", key=b"k\x00", owner="Al <al@x.org>", size="1KiB",
                      mirrors=["ftp://m1", "https://m2/x?y=1"])


def _same(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    if isinstance(a, (SecretStr, SecretBytes)):
        assert a.get_secret_value() == b.get_secret_value()
    else:
        assert a == b and str(a) == str(b)


VALUES = [
    HttpUrl("https://example.com:8443/p?q=1#f"), AnyUrl("custom+scheme://host/path"),
    FileUrl("file:///etc/hosts"), WebsocketUrl("wss://ws.example"),
    PostgresDsn("postgresql://a:b@h1:5432,h2:5433/db"), RedisDsn("redis://localhost:6379/0"),
    MongoDsn("mongodb://u:p@m1,m2/db"), AmqpDsn("amqp://guest:guest@localhost:5672//"),
    Url("http://raw/"), MultiHostUrl("redis://h1,h2/0"),
    SecretStr("s3cret"), SecretStr(""), SecretBytes(b"\x00\xff"), NameEmail("Al", "al@x.org"),
    ByteSize(0), ByteSize(2**70),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_standalone_values_round_trip_exactly(value: Any) -> None:
    data = orjson.loads(orjson.dumps(safe_serialize(value)))
    _same(value, safe_deserialize(data))


def test_as_model_fields_they_round_trip_and_keep_the_model_exact() -> None:
    value = _connection()
    back = safe_deserialize(orjson.loads(orjson.dumps(safe_serialize(value))))
    assert back == value and type(back.size) is ByteSize
    assert back.token.get_secret_value() == "hunter2"
    assert back.key.get_secret_value() == b"k\x00"
    assert [type(m) for m in back.mirrors] == [AnyUrl, AnyUrl]
    assert_same(back.model_fields_set, value.model_fields_set)


@settings(max_examples=100, deadline=None)
@given(st.from_regex(r"https?://[a-z][a-z0-9-]{0,10}(\.[a-z]{2,4})?(:[1-9][0-9]{0,3})?"
                     r"(/[A-Za-z0-9 ._~%-]{0,8}){0,3}(\?[a-z]=[A-Za-z0-9 ]{0,4})?",
                     fullmatch=True))
def test_any_http_url_comes_back_as_the_same_text(text: str) -> None:
    url = HttpUrl(text)
    back = safe_deserialize(safe_serialize(url))
    assert type(back) is HttpUrl and str(back) == str(url)


def test_secrets_are_masked_wherever_flujo_shows_data() -> None:
    value = _connection()
    shown = safe_serialize(value, mode="json")
    assert shown["token"] == "**********" and shown["key"] == "**********"
    assert "hunter2" not in repr(shown)
    stored = safe_serialize({"a": SecretStr("hunter2"), "b": [SecretBytes(b"zz")]})
    assert mask_secrets(stored) == {"a": {"$t": "secretstr@1", "v": "**********"},
                                    "b": [{"$t": "secretbytes@1", "v": "**********"}]}
    assert stored["a"]["v"] == "hunter2"  # a copy was masked
    # an error about stored data shows it masked
    broken = {"$t": "deque@1", "v": {"items": [{"$t": "secretstr@1", "v": "hunter2"}],
                                     "maxlen": -1}}
    with pytest.raises(DeserializationError) as info:
        safe_deserialize(broken)
    assert "hunter2" not in str(info.value) and "**********" in str(info.value)


class Request(BaseModel):
    model_config = ConfigDict(extra="allow")
    api_key: SecretStr


def test_masking_never_fails_open() -> None:
    # past any number of containers
    many = safe_serialize({"rows": [{"i": i} for i in range(5000)], "key": SecretStr("s-1")})
    assert mask_secrets(many)["key"]["v"] == "**********"
    # a bounded mask (a preview) hides what is past its budget instead of showing it
    bounded = mask_secrets(many, budget=3)
    assert "s-1" not in repr(bounded) and "<not shown>" in repr(bounded)
    # an extra field named "$t" makes a model's fields look like a secret: its other fields
    # are still looked into
    request = Request.model_validate({"api_key": "sk-live", "$t": "secretstr@1"})
    assert "sk-live" not in repr(mask_secrets(safe_serialize({"r": request})))


def test_a_dsn_is_not_quoted_in_errors() -> None:
    with pytest.raises(DeserializationError) as info:
        safe_deserialize({"$t": "pydantic.PostgresDsn@1", "v": "mysql://u:pw@h/db"})
    assert "pw" not in str(info.value)


@pytest.mark.parametrize(("tag", "v"), [
    ("pydantic.HttpUrl@1", "not a url"),
    ("pydantic.HttpUrl@1", "https://EXAMPLE.com"),  # not the text HttpUrl writes
    ("pydantic.HttpUrl@1", 5),
    ("pydantic.PostgresDsn@1", "http://x"),
    ("secretstr@1", 5),
    ("secretbytes@1", "not base64!"),
    ("pydantic.NameEmail@1", {"name": "a"}),
    ("pydantic.NameEmail@1", "Al <al@x.org>"),
    ("pydantic.ByteSize@1", "1KiB"),
    ("pydantic.ByteSize@1", 1.5),
    ("pydantic_core.Url@1", ""),
])
def test_malformed_values_are_refused(tag: str, v: Any) -> None:
    with pytest.raises(DeserializationError, match=r"at \$\[0\]"):
        safe_deserialize([{"$t": tag, "v": v}])


def test_subclasses_are_not_written_as_their_base() -> None:
    class MyUrl(HttpUrl):
        pass

    class MySecret(SecretStr):
        pass

    with pytest.raises(UnserializableTypeError, match=r"MyUrl.*at \$\[0\]"):
        safe_serialize([MyUrl("https://x.org")])
    with pytest.raises(UnserializableTypeError, match=r"MySecret"):
        safe_serialize(MySecret("x"))
