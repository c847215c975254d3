"""The envelope codec: layout, compression, encryption, size caps and exact JSON."""

from __future__ import annotations

import base64
import decimal
import json
import zlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from flujo.exceptions import (
    CorruptStateError,
    EncryptionError,
    FutureVersionError,
    PayloadTooLargeError,
)
from flujo.serialization import TypeRegistry
from flujo.state import (
    ENVELOPE_VERSION,
    FORMAT,
    Encryption,
    EnvelopeCodec,
    WorkflowState,
    ZlibCompressor,
    ZstdCompressor,
)
from flujo.state._compression import zstd_available
from flujo.state._envelope_codec import associated_data
from flujo.state._jsonio import dumps, loads

KEY = bytes(range(32))


def state(**context: Any) -> WorkflowState:
    return WorkflowState(
        run_id="r-1",
        pipeline_name="orders",
        pipeline_context=context,
        created_at=datetime(2024, 1, 1, tzinfo=UTC),
        updated_at=datetime(2024, 1, 2, tzinfo=UTC),
    )


def roundtrip(codec: EnvelopeCodec, value: WorkflowState) -> WorkflowState:
    sealed = codec.seal(codec.encode_state(value), revision=1)
    envelope = codec.parse(sealed.raw, what="test")
    assert envelope == sealed.envelope
    return codec.open(envelope, what="test")


def test_plain_envelope_layout() -> None:
    codec = EnvelopeCodec(registry=TypeRegistry())
    sealed = codec.seal(codec.encode_state(state(price=decimal.Decimal("1.5"))), revision=7)
    data = orjson.loads(sealed.raw)
    assert list(data) == [
        "format",
        "envelope_version",
        "run_id",
        "revision",
        "state_version",
        "manifest",
        "pipeline_name",
        "status",
        "created_at",
        "updated_at",
        "codec",
        "key_id",
        "kind",
        "base",
        "step",
        "attempt",
        "steps_done",
        "payload",
    ]
    assert data["format"] == FORMAT == "flujo.state"
    assert data["envelope_version"] == ENVELOPE_VERSION == 2
    assert (data["kind"], data["base"], data["step"], data["attempt"], data["steps_done"]) == (
        "state", 7, None, None, 0)
    assert list(data["payload"]) == ["fields", "history", "flujo_timestamps", "flujo_label"]
    assert (data["run_id"], data["revision"], data["codec"], data["key_id"]) == (
        "r-1",
        7,
        "json",
        None,
    )
    # The timestamps live in the header only (the store owns them), so no datetime tag.
    assert data["manifest"] == {"decimal": 1}
    assert data["payload"]["fields"]["pipeline_context"] == {
        "price": {"$t": "decimal@1", "v": "1.5"}}
    assert "created_at" not in data["payload"] and "updated_at" not in data["payload"]
    assert len(data["created_at"]) == len("2024-01-01T00:00:00.000000+00:00")
    assert codec.to_bytes(sealed.envelope) == sealed.raw


@pytest.mark.parametrize("compression", ["zlib", "zstd", "auto"])
@pytest.mark.parametrize("encrypted", [False, True])
def test_every_codec_round_trips(compression: str, encrypted: bool) -> None:
    encryption = Encryption.single(KEY, "k") if encrypted else None
    codec = EnvelopeCodec(compression=compression, encryption=encryption)
    value = state(items=[decimal.Decimal(i) for i in range(200)], text="x" * 5000)
    sealed = codec.seal(codec.encode_state(value), revision=1)
    expected = "json+" + ("zstd" if compression == "auto" and zstd_available() else compression)
    assert sealed.envelope.codec == expected + ("+aesgcm" if encrypted else "")
    assert len(sealed.raw) < 5000
    back = roundtrip(codec, value)  # sealed again: the header's timestamps are its own
    stamps = {"created_at": back.created_at, "updated_at": back.updated_at}
    assert back == value.model_copy(update=stamps)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_opening_a_record_leaves_its_envelope_as_stored(compression: str | None) -> None:
    # Payloads parsed from a record's bytes are decoded without copies; a "json" record's
    # payload is the envelope's own data, which the caller holds (StateRecord.envelope):
    # decoding must leave it as it was.
    codec = EnvelopeCodec(compression=compression)
    value = state(items=[{"n": i, "tags": ["a", (1, 2)]} for i in range(20)],
                  when={"at": datetime(2024, 5, 1, tzinfo=UTC)}, plain={"x": [1, 2]})
    envelope = codec.parse(codec.seal(codec.encode_state(value), revision=1).raw, what="t")
    stored = codec.to_bytes(envelope)
    first, second = codec.open(envelope, what="t"), codec.open(envelope, what="t")
    assert codec.to_bytes(envelope) == stored
    assert first == second
    assert first.pipeline_context["items"][3]["tags"][1] == (1, 2)
    assert first.pipeline_context["plain"] is not second.pipeline_context["plain"]


def test_aad_binds_header_fields() -> None:
    codec = EnvelopeCodec(encryption=Encryption.single(KEY, "k"))
    sealed = codec.seal(codec.encode_state(state(a=1)), revision=1)
    header = sealed.envelope.header()
    for field, value in [
        ("run_id", "r-2"),
        ("state_version", 1),
        ("manifest", {"datetime": 1, "set": 1}),
    ]:
        if header[field] == value:
            continue
        doctored = {**orjson.loads(sealed.raw), field: value}
        envelope = codec.parse(dumps(doctored), what="doctored")
        with pytest.raises(EncryptionError, match="authentication"):
            codec.open(envelope, what="doctored")
    changed = dict(header, revision=99, status="failed", updated_at="2030-01-01T00:00:00+00:00")
    assert associated_data(changed) == associated_data(header)  # backend-owned fields


def test_key_problems_are_encryption_errors() -> None:
    writer = EnvelopeCodec(encryption=Encryption.single(KEY, "old"))
    envelope = writer.seal(writer.encode_state(state()), revision=1).envelope
    with pytest.raises(EncryptionError, match="'old', which is not configured"):
        EnvelopeCodec(encryption=Encryption.single(KEY, "new")).open(envelope, what="x")
    with pytest.raises(EncryptionError, match="authentication"):
        EnvelopeCodec(encryption=Encryption.single(bytes(32), "old")).open(envelope, what="x")
    with pytest.raises(EncryptionError, match="no encryption configured"):
        EnvelopeCodec().open(envelope, what="x")
    garbage = envelope.model_copy(update={"payload": "not base64!"})
    with pytest.raises(EncryptionError, match="base64"):
        writer.open(garbage, what="x")
    short = envelope.model_copy(update={"payload": base64.b64encode(b"short").decode()})
    with pytest.raises(EncryptionError, match="too short"):
        writer.open(short, what="x")


def test_accept_plaintext_is_opt_in() -> None:
    plain = EnvelopeCodec()
    envelope = plain.seal(plain.encode_state(state(a=1)), revision=1).envelope
    strict = EnvelopeCodec(encryption=Encryption.single(KEY))
    with pytest.raises(EncryptionError, match="not encrypted"):
        strict.open(envelope, what="x")
    lenient = EnvelopeCodec(
        encryption=Encryption({"default": KEY}, active_key_id="default", accept_plaintext=True)
    )
    assert lenient.open(envelope, what="x").pipeline_context == {"a": 1}
    assert lenient.outdated(envelope) == ["codec json -> json+aesgcm"]


@pytest.mark.parametrize(
    ("keys", "active", "message"),
    [
        ({}, "a", "at least one key"),
        ({"a": b"short"}, "a", "16, 24 or 32 bytes"),
        ({"a": KEY}, "b", "not among the keys"),
        ({"": KEY}, "", "1 to 256"),
    ],
)
def test_bad_encryption_config(keys: dict[str, bytes], active: str, message: str) -> None:
    with pytest.raises(EncryptionError, match=message):
        Encryption(keys, active_key_id=active)


def test_keys_do_not_leak_into_repr() -> None:
    assert KEY.hex() not in repr(Encryption.single(KEY)) and "keys" not in repr(
        Encryption.single(KEY)
    )


def _zlib_bomb(size: int) -> bytes:
    return zlib.compress(b"[" + b"0," * (size // 2) + b"0]", 9)


def test_decompression_is_capped() -> None:
    bomb = _zlib_bomb(5_000_000)
    assert len(bomb) < 20_000
    with pytest.raises(PayloadTooLargeError, match="max_payload_bytes=1000000"):
        ZlibCompressor().decompress(bomb, 1_000_000)
    assert len(ZlibCompressor().decompress(bomb, 10_000_000)) > 5_000_000
    if zstd_available():
        import zstandard

        zbomb = zstandard.ZstdCompressor(level=19).compress(b"\x00" * 50_000_000)
        with pytest.raises(PayloadTooLargeError, match="more than"):
            ZstdCompressor().decompress(zbomb, 1_000_000)


def test_bomb_envelope_is_refused_on_load() -> None:
    codec = EnvelopeCodec(compression="zlib", max_payload_bytes=100_000)
    envelope = codec.seal(codec.encode_state(state()), revision=1).envelope
    bomb = envelope.model_copy(update={"payload": base64.b64encode(_zlib_bomb(1_000_000)).decode()})
    with pytest.raises(PayloadTooLargeError, match=r"^bomb: .*max_payload_bytes"):
        codec.open(bomb, what="bomb")


@pytest.mark.parametrize("algorithm", ["zlib", "zstd"])
def test_damaged_compressed_payloads(algorithm: str) -> None:
    if algorithm == "zstd" and not zstd_available():
        pytest.skip("zstandard not installed")
    codec = EnvelopeCodec(compression=algorithm)
    data = codec.seal(codec.encode_state(state(x="y" * 1000)), revision=1).envelope
    blob = base64.b64decode(data.payload)
    for damaged in (blob[: len(blob) // 2], blob + b"trailing", b"\x00" * len(blob)):
        envelope = data.model_copy(update={"payload": base64.b64encode(damaged).decode()})
        with pytest.raises(CorruptStateError):
            codec.open(envelope, what="damaged")


def test_compression_options_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown compression"):
        EnvelopeCodec(compression="lz4")
    assert EnvelopeCodec(compression=None).codec == "json"


def test_future_and_foreign_envelopes() -> None:
    codec = EnvelopeCodec()
    good = orjson.loads(codec.seal(codec.encode_state(state()), revision=1).raw)
    with pytest.raises(FutureVersionError, match="version 3"):
        codec.parse(dumps({**good, "envelope_version": 3}), what="x")
    with pytest.raises(CorruptStateError, match="invalid envelope_version"):
        codec.parse(dumps({**good, "envelope_version": "1"}), what="x")
    with pytest.raises(CorruptStateError, match="codec"):
        codec.parse(dumps({**good, "codec": "json+ROT13"}), what="x")
    # A well-formed codec naming a compressor this process does not know: the header reads
    # (a store can be listed), the payload is refused.
    foreign = codec.parse(dumps({**good, "codec": "json+rot13", "payload": "AAAA"}), what="x")
    with pytest.raises(CorruptStateError, match=r"compression 'rot13'.*register_compressor"):
        codec.open(foreign, what="x")
    with pytest.raises(CorruptStateError, match=r"(?i)extra inputs"):
        codec.parse(dumps({**good, "surprise": 1}), what="x")
    with pytest.raises(CorruptStateError, match="revision"):
        codec.parse(dumps({**good, "revision": True}), what="x")
    with pytest.raises(CorruptStateError, match="UTC offset"):
        codec.parse(dumps({**good, "created_at": "2024-01-01T00:00:00"}), what="x")
    with pytest.raises(CorruptStateError, match="no 'format'"):
        codec.parse(b'{"hello": "world"}', what="x")


def test_record_whose_payload_names_another_run() -> None:
    codec = EnvelopeCodec()
    data = orjson.loads(codec.seal(codec.encode_state(state()), revision=1).raw)
    data["run_id"] = "someone-else"
    with pytest.raises(CorruptStateError, match="belongs to run 'r-1'"):
        codec.open(codec.parse(dumps(data), what="x"), what="x")


def test_save_time_size_limit() -> None:
    codec = EnvelopeCodec(max_payload_bytes=1000)
    with pytest.raises(PayloadTooLargeError, match="max_payload_bytes=1000"):
        codec.encode_state(state(blob="x" * 2000))


def test_json_io_is_exact() -> None:
    data = {"big": 2**64 + 1, "neg": -(2**80), "f": 1e20, "z": -0.0, "s": "1234567890123456789"}
    assert loads(dumps(data)) == data
    assert isinstance(loads(b"[12345678901234567890123]")[0], int)
    assert list(loads(b'{"b": 1, "a": 2}')) == ["b", "a"]
    for bad in (b"NaN", b"[1e400]", b"{", b"\xff"):
        with pytest.raises(ValueError):
            loads(bad)
    with pytest.raises(ValueError):
        loads(b"[Infinity, 12345678901234567890]")


def test_json_io_reads_long_fractions_with_orjson_and_long_integers_exactly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import flujo.state._jsonio as jsonio

    # A latency the runner writes has 20 digits after the point: orjson reads it exactly,
    # without the stdlib parser (was: every such record took the 2x slower parser).
    assert not jsonio._long_digits(b'{"latency_s":0.00021724999999150896}')
    assert loads(b"[0.00021724999999150896]") == [0.00021724999999150896]
    for text in (b"12345678901234567890", b"[-12345678901234567890123]",
                 b'{"a":1.5,"b":123456789012345678901}', b"[1,99999999999999999999]"):
        assert jsonio._long_digits(text)
        assert loads(text) == json.loads(text)
        assert all(type(v) is not float for v in _numbers(loads(text)) if abs(v) > 2**63)
    seen: list[bytes] = []
    monkeypatch.setattr(jsonio.json, "loads", lambda *a, **k: seen.append(a[0]))
    loads(b"[1.123456789012345678901234, 2]")
    assert seen == []


_RUNS = st.lists(st.tuples(st.sampled_from([b"", b".", b" ", b",", b"-", b"e", b'"', b"[", b"0."]),
                           st.integers(0, 60), st.sampled_from(b"0123456789")), max_size=8)


@example([(b"0.", 40, 0x37)])  # a fraction of 40 digits: more than two runs' length
@example([(b"0.", 25, 0x31), (b",", 19, 0x32)])  # a long fraction, then a long integer
@given(_RUNS)
def test_long_digits_finds_exactly_the_runs_of_19_digits_not_after_a_point(
        runs: list[tuple[bytes, int, int]]) -> None:
    # The reference: any 19 digits in a row, the first of them not after a digit or a "."
    # (fractions, long ones and long ones before a long integer included: see the examples).
    import re

    import flujo.state._jsonio as jsonio

    text = b"".join(sep + bytes([digit]) * length for sep, length, digit in runs)
    expected = re.search(rb"(?<![0-9.])[0-9]{19}", text) is not None
    assert jsonio._long_digits(text) is expected


def _numbers(value: object) -> list[Any]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value]


@given(st.lists(st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False))))
def test_json_io_numbers_round_trip_exactly(numbers: list[Any]) -> None:
    back = loads(dumps(numbers))
    assert [(type(v), v) for v in back] == [(type(v), v) for v in numbers]


def test_header_must_agree_with_the_payload() -> None:
    codec = EnvelopeCodec(encryption=Encryption.single(KEY))
    data = orjson.loads(codec.seal(codec.encode_state(state()), revision=1).raw)
    for field, value in [("status", "completed"), ("pipeline_name", "other")]:
        envelope = codec.parse(dumps({**data, field: value}), what="x")
        with pytest.raises(CorruptStateError, match="altered"):
            codec.open(envelope, what="x")


def test_failing_deserializer_is_reported_as_undecodable() -> None:
    class Opaque:
        pass

    registry = TypeRegistry()
    registry.register_custom_serializer(
        Opaque, lambda o: {"x": 1}, deserializer=lambda v: v["missing"], name="t.Opaque"
    )
    codec = EnvelopeCodec(registry=registry)
    envelope = codec.seal(codec.encode_state(state(o=Opaque())), revision=1).envelope
    with pytest.raises(CorruptStateError, match="KeyError") as info:
        codec.open(envelope, what="run 'r-1'")
    assert "run 'r-1'" in str(info.value)


def test_a_named_store_refuses_records_of_another_store_or_of_none() -> None:
    """A record copied between stores that share a key loads only in the store it was
    written for (the name is bound into its associated data, and written nowhere)."""
    orders = EnvelopeCodec(encryption=Encryption.single(KEY, store="orders-prod"))
    billing = EnvelopeCodec(encryption=Encryption.single(KEY, store="billing-prod"))
    unnamed = EnvelopeCodec(encryption=Encryption.single(KEY))
    sealed = orders.seal(orders.encode_state(state(a=1)), revision=1)
    assert b"orders-prod" not in sealed.raw
    envelope = orders.parse(sealed.raw, what="x")
    assert orders.open(envelope, what="x").pipeline_context == {"a": 1}
    for other in (billing, unnamed):
        with pytest.raises(EncryptionError, match="authentication"):
            other.open(envelope, what="x")
    with pytest.raises(EncryptionError, match=r"another run or store .*'billing-prod'"):
        billing.open(envelope, what="x")
    unbound = unnamed.parse(unnamed.seal(unnamed.encode_state(state(b=2)), revision=1).raw,
                            what="y")
    with pytest.raises(EncryptionError, match="authentication"):
        orders.open(unbound, what="y")


def test_unbound_records_read_only_in_the_accept_unbound_window() -> None:
    unnamed = EnvelopeCodec(encryption=Encryption.single(KEY))
    unbound = unnamed.seal(unnamed.encode_state(state(b=2)), revision=1).envelope
    window = EnvelopeCodec(encryption=Encryption(
        {"default": KEY}, "default", store="orders-prod", accept_unbound=True))
    assert window.open(unbound, what="y").pipeline_context == {"b": 2}
    assert window.outdated(unbound) == ["bound to store 'orders-prod'"]
    bound = window.seal(window.encode_state(state(b=2)), revision=2).envelope
    assert window.outdated(bound) == []
    assert EnvelopeCodec(encryption=Encryption.single(KEY, store="orders-prod")).open(
        bound, what="y").pipeline_context == {"b": 2}
    # the window does not open another store's records
    billing = EnvelopeCodec(encryption=Encryption.single(KEY, store="billing-prod"))
    foreign = billing.seal(billing.encode_state(state(c=3)), revision=1).envelope
    with pytest.raises(EncryptionError, match="authentication"):
        window.open(foreign, what="z")


@pytest.mark.parametrize(("options", "message"), [
    ({"store": ""}, "printable str of 1 to 256"),
    ({"store": "x" * 257}, "printable str of 1 to 256"),
    ({"store": "a\nb"}, "printable str"),
    ({"store": 5}, "printable str"),
    ({"accept_unbound": True}, "needs the store's name"),
])
def test_bad_store_names_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(EncryptionError, match=message):
        Encryption({"a": KEY}, active_key_id="a", **options)
