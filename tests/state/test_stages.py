"""Compressors and ciphers of an application's own: what the codec asks of them, and what it
does when they misbehave (the contract suite runs them on every backend)."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import uuid
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from flujo.exceptions import (
    BackendConfigError,
    BackendUnavailableError,
    CorruptStateError,
    EncryptionError,
    PayloadTooLargeError,
    RecordTooLargeError,
    StateError,
)
from flujo.state import (
    Cipher,
    Compressor,
    Encryption,
    EnvelopeCodec,
    InMemoryBackend,
    WorkflowState,
    ZlibCompressor,
    ZstdCompressor,
    envelope_json_schema,
    register_compressor,
)
from flujo.state._compression import RESERVED, STAGE_NAME
from flujo.state._envelope import CODECS, codec_problem
from flujo.testing import assert_identical, sample_values
from flujo.testing._contract_stages import KeyServiceCipher, LzmaCompressor


def _state(run_id: str = "r", **context: Any) -> WorkflowState:
    return WorkflowState(run_id=run_id, pipeline_name="p", pipeline_context=context)


def _unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:12]}"


def _compressor(name: str, **methods: Any) -> Compressor:
    """A compressor of its own class called ``name``: zlib's, with ``methods`` replaced."""
    base = ZlibCompressor()
    namespace = {"name": name, "compress": lambda self, data: base.compress(data),
                 "decompress": lambda self, data, limit: base.decompress(data, limit)}
    namespace.update(methods)
    compressor: Compressor = type("Custom", (), namespace)()
    return compressor


def test_the_built_in_stages_implement_the_protocols() -> None:
    assert isinstance(ZlibCompressor(), Compressor) and isinstance(ZstdCompressor(), Compressor)
    assert isinstance(LzmaCompressor(), Compressor)
    assert isinstance(KeyServiceCipher({"m": os.urandom(32)}, "m"), Cipher)
    aes = Encryption.single(Encryption.generate_key(), "k")
    assert aes.cipher is None and isinstance(aes._cipher, Cipher)
    assert (aes.name, aes.key_id) == ("aesgcm", "k")
    assert "'k'" in repr(aes) and "key ids" in repr(aes._cipher)


@pytest.mark.parametrize("name", ["", "Zip", "json", "aesgcm", "none", "auto", "a+b",
                                  "1zip", "x" * 33, 7, None])
def test_a_compressor_name_a_record_cannot_hold_is_refused(name: Any) -> None:
    compressor = _compressor(name)
    with pytest.raises(BackendConfigError, match="compressor name"):
        register_compressor(compressor)
    with pytest.raises(BackendConfigError, match="compressor name"):
        EnvelopeCodec(compression=compressor)


def test_flujo_s_own_names_stay_flujo_s() -> None:
    with pytest.raises(BackendConfigError, match="flujo's own ZlibCompressor"):
        register_compressor(_compressor("zlib"))
    with pytest.raises(BackendConfigError, match="flujo's own ZstdCompressor"):
        EnvelopeCodec(compression=_compressor("zstd"))
    register_compressor(ZlibCompressor(level=9))  # the same algorithm at another level


def test_one_name_is_one_algorithm() -> None:
    name = _unique("xz")
    first = _compressor(name)
    register_compressor(first)
    again = type(first)()
    register_compressor(again)  # the same class again: it replaces the first
    with pytest.raises(BackendConfigError, match="registered already"):
        register_compressor(_compressor(name))
    with pytest.raises(BackendConfigError, match="one name is one algorithm"):
        EnvelopeCodec(compression=_compressor(name))
    assert EnvelopeCodec(compression=name).compressor is again  # found by its name


def test_objects_that_are_no_compressor_are_refused() -> None:
    with pytest.raises(BackendConfigError, match=r"flujo\.state\.Compressor"):
        register_compressor(object())  # type: ignore[arg-type]
    with pytest.raises(BackendConfigError, match=r"flujo\.state\.Compressor"):
        EnvelopeCodec(compression=42)  # type: ignore[arg-type]


def test_compression_settings_are_checked() -> None:
    with pytest.raises(BackendConfigError, match=r"unknown compression .lz4.*register"):
        EnvelopeCodec(compression="lz4")
    with pytest.raises(BackendConfigError, match="compression_level needs a compression"):
        EnvelopeCodec(compression_level=3)
    with pytest.raises(BackendConfigError, match="level of your own compressor"):
        EnvelopeCodec(compression=LzmaCompressor(), compression_level=3)
    with pytest.raises(BackendConfigError, match="from -1 to 9"):
        EnvelopeCodec(compression="zlib", compression_level=10)
    with pytest.raises(BackendConfigError, match="up to 22"):
        EnvelopeCodec(compression="zstd", compression_level=23)
    codec = EnvelopeCodec(compression="zlib", compression_level=1)
    assert (codec.codec, codec.compression, repr(codec.compressor)) == (
        "json+zlib", "zlib", "ZlibCompressor(level=1)")


@pytest.mark.parametrize(("method", "result", "error", "message"), [
    ("decompress", RuntimeError("boom"), CorruptStateError,
     r"^r1: compressor '\S+' found the payload damaged: RuntimeError\('boom'\)"),
    ("decompress", "text", CorruptStateError, "returned str, not bytes"),
    ("decompress", b"[" * 5000, PayloadTooLargeError, "more than max_payload_bytes=4000"),
])
def test_a_misbehaving_decompressor_is_a_flujo_error_naming_the_record(
        method: str, result: Any, error: type[Exception], message: str) -> None:
    name = _unique("bad")

    def misbehave(self: Any, data: bytes, limit: int) -> Any:
        if isinstance(result, Exception):
            raise result
        return result

    writer = EnvelopeCodec(compression=_compressor(name), max_payload_bytes=4000)
    reader = EnvelopeCodec(compression=_compressor(name, decompress=misbehave),
                           max_payload_bytes=4000)
    envelope = writer.seal(writer.encode_state(_state("r1", x=1)), revision=1).envelope
    with pytest.raises(error, match=message):
        reader.open(envelope, what="r1")


def test_a_failing_compressor_saves_nothing() -> None:
    def fail(self: Any, data: bytes) -> bytes:
        raise MemoryError("no room")

    async def save_then_load() -> None:
        backend = InMemoryBackend(compression=_compressor(_unique("bad"), compress=fail))
        with pytest.raises(StateError, match=r"run 'r': compressor .* failed: MemoryError"):
            await backend.save_state("r", _state())
        assert await backend.load_state("r") is None

    import asyncio

    asyncio.run(save_then_load())


def test_a_record_names_its_stages_and_reads_back_through_them() -> None:
    values = sample_values()
    cipher = KeyServiceCipher({"m": os.urandom(32)}, "m")
    codec = EnvelopeCodec(compression=LzmaCompressor(), encryption=Encryption(cipher=cipher))
    sealed = codec.seal(codec.encode_state(_state(v=values)), revision=1)
    record = json.loads(sealed.raw)
    assert (record["codec"], record["key_id"]) == ("json+contract-xz+contract-kms", "m")
    envelope = codec.parse(sealed.raw, what="r")
    assert (envelope.compression, envelope.cipher, envelope.encrypted) == (
        "contract-xz", "contract-kms", True)
    assert_identical(codec.open(envelope, what="r").pipeline_context, {"v": values})


def test_cipher_settings_are_checked() -> None:
    cipher = KeyServiceCipher({"m": os.urandom(32)}, "m")
    with pytest.raises(EncryptionError, match="not both"):
        Encryption(keys={"k": Encryption.generate_key()}, active_key_id="k", cipher=cipher)
    with pytest.raises(EncryptionError, match="not both"):
        Encryption()
    with pytest.raises(EncryptionError, match="active_key_id is for keys="):
        Encryption(cipher=cipher, active_key_id="m")
    assert Encryption(cipher=cipher).key_id == "m"
    with pytest.raises(EncryptionError, match=r"flujo\.state\.Cipher"):
        Encryption(cipher=object())  # type: ignore[arg-type]
    for name in ("aesgcm", "zlib", "zstd", "Kms", "json", "none"):
        renamed = type("Renamed", (KeyServiceCipher,), {"name": name})({"m": b"k" * 32}, "m")
        with pytest.raises(EncryptionError, match="cipher name"):
            Encryption(cipher=renamed)
    with pytest.raises(EncryptionError, match="key id"):
        Encryption(cipher=KeyServiceCipher({"": os.urandom(32)}, ""))
    with pytest.raises(EncryptionError, match="key id"):
        Encryption(cipher=KeyServiceCipher({"k" * 257: os.urandom(32)}, "k" * 257))
    arn = "arn:aws:kms:eu-west-1:123456789012:key/" + "0" * 36 + "/" + "x" * 150
    assert Encryption(cipher=KeyServiceCipher({arn: os.urandom(32)}, arn)).key_id == arn

    class Nameless(KeyServiceCipher):
        @property
        def name(self) -> str:
            raise RuntimeError("no name")

    with pytest.raises(EncryptionError, match="cannot be read: RuntimeError"):
        Encryption(cipher=Nameless({"m": os.urandom(32)}, "m"))
    with pytest.raises(EncryptionError, match="needs the active_key_id"):
        Encryption(keys={"k": Encryption.generate_key()})


class _Broken:
    """A cipher whose calls fail or return what a cipher must not."""

    name = "broken"
    active_key_id = "b"

    def __init__(self, encrypted: Any = b"\x00" * 32, decrypted: Any = None) -> None:
        self.encrypted, self.decrypted = encrypted, decrypted

    def encrypt(self, key_id: str, plaintext: bytes, associated_data: bytes) -> Any:
        if isinstance(self.encrypted, Exception):
            raise self.encrypted
        return self.encrypted

    def decrypt(self, key_id: str, ciphertext: bytes, associated_data: bytes) -> Any:
        if isinstance(self.decrypted, Exception):
            raise self.decrypted
        return self.decrypted


@pytest.mark.parametrize(("decrypted", "message"), [
    (None, "failed authentication"),
    (ConnectionError("key service down"), r"failed to decrypt: ConnectionError"),
    (EncryptionError("no such key"), r"^r: no such key$"),
    ("plain", "returned str, not bytes"),
])
def test_a_cipher_that_fails_to_decrypt_is_an_encryption_error(decrypted: Any,
                                                              message: str) -> None:
    writer = EnvelopeCodec(encryption=Encryption(cipher=_Broken()))
    reader = EnvelopeCodec(encryption=Encryption(cipher=_Broken(decrypted=decrypted)))
    envelope = writer.seal(writer.encode_state(_state()), revision=1).envelope
    with pytest.raises(EncryptionError, match=message):
        reader.open(envelope, what="r")


@pytest.mark.parametrize(("encrypted", "message"), [
    (TimeoutError("key service slow"), "failed to encrypt: TimeoutError"),
    ("sealed", "returned str, not bytes"),
])
def test_a_cipher_that_fails_to_encrypt_seals_nothing(encrypted: Any, message: str) -> None:
    codec = EnvelopeCodec(encryption=Encryption(cipher=_Broken(encrypted=encrypted)))
    with pytest.raises(EncryptionError, match=message):
        codec.seal(codec.encode_state(_state()), revision=1)


def test_the_associated_data_reaches_the_cipher() -> None:
    seen: list[bytes] = []

    class Recording(_Broken):
        def encrypt(self, key_id: str, plaintext: bytes, associated_data: bytes) -> Any:
            seen.append(associated_data)
            return base64.b64encode(plaintext)

    codec = EnvelopeCodec(encryption=Encryption(cipher=Recording(), store="orders"))
    codec.seal(codec.encode_state(_state("r7")), revision=1)
    bound = json.loads(seen[0])
    assert (bound["run_id"], bound["store"], bound["codec"], bound["key_id"]) == (
        "r7", "orders", "json+broken", "b")


@pytest.mark.parametrize(("codec", "key_id", "message"), [
    ("json+aesgcm", None, "names a cipher but key_id is null"),
    ("json+zlib+kms", None, "names a cipher but key_id is null"),
    ("json+zlib", "k", "names no cipher"),
    ("json", "k", "names no cipher"),
    ("json+json", None, "codec must be 'json', then"),
    ("json+a+b+c", "k", "codec must be 'json', then"),
    ("xml", None, "codec must be 'json', then"),
    ("json+Zlib", None, "codec must be 'json', then"),
])
def test_a_codec_string_that_cannot_be_is_a_corrupt_record(codec: str, key_id: str | None,
                                                            message: str) -> None:
    writer = EnvelopeCodec()
    record = json.loads(writer.seal(writer.encode_state(_state()), revision=1).raw)
    doctored = json.dumps({**record, "codec": codec, "key_id": key_id}).encode()
    with pytest.raises(CorruptStateError, match=message):
        writer.parse(doctored, what="r")


def test_the_envelope_schema_takes_flujo_s_codec_strings_and_stages_of_your_own() -> None:
    import jsonschema

    pattern = envelope_json_schema()["properties"]["codec"]["pattern"]
    for codec in [*CODECS, "json+contract-xz", "json+contract-xz+contract-kms"]:
        jsonschema.validate(codec, {"type": "string", "pattern": pattern})
    for codec in ("xml", "json+", "json+A", "json+a+b+c"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(codec, {"type": "string", "pattern": pattern})


def test_the_example_of_docs_backends_runs() -> None:
    import asyncio
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "backends.md"
    match = re.search(re.escape("<!-- example: runs in tests/state/test_stages.py -->")
                      + r"\n```python\n(.*?)```", doc.read_text("utf-8"), re.DOTALL)
    assert match, "no example in docs/backends.md"
    namespace: dict[str, Any] = {"__name__": "docs_backends_example"}
    exec(compile(match.group(1), str(doc), "exec"), namespace)
    backend = namespace["backend"]

    async def round_trip() -> None:
        await backend.save_state("o1", _state("o1", total=12))
        record = await backend.load_record("o1")
        assert (record.envelope.codec, record.envelope.key_id) == ("json+xz+kms", "m1")
        assert record.state.pipeline_context == {"total": 12}
        assert b"total" not in base64.b64decode(record.envelope.payload)

    asyncio.run(round_trip())


def test_stage_names_that_start_like_json_write_records_that_read_back() -> None:
    """A name is one token of the codec string: "jsonlz" is a name, not the transcoding."""
    compressor = type("Lz", (LzmaCompressor,), {"name": f"jsonlz{uuid.uuid4().hex[:8]}"})()
    cipher = type("Kms", (KeyServiceCipher,), {"name": "json-kms"})({"m": os.urandom(32)}, "m")
    codec = EnvelopeCodec(compression=compressor, encryption=Encryption(cipher=cipher))
    sealed = codec.seal(codec.encode_state(_state(x=1)), revision=1)
    assert json.loads(sealed.raw)["codec"] == f"json+{compressor.name}+json-kms"
    assert codec.open(codec.parse(sealed.raw, what="r"), what="r").pipeline_context == {"x": 1}


@settings(max_examples=200, deadline=None)
@given(compression=st.from_regex(STAGE_NAME, fullmatch=True),
       cipher=st.from_regex(STAGE_NAME, fullmatch=True))
def test_every_name_a_stage_may_take_makes_a_codec_string_readers_take(
        compression: str, cipher: str) -> None:
    assume(compression not in RESERVED and cipher not in RESERVED | {"zlib", "zstd"})
    for codec, key_id in ((f"json+{compression}", None), (f"json+{cipher}", "k"),
                          (f"json+{compression}+{cipher}", "k")):
        assert codec_problem(codec, key_id) is None, codec


class _Rotating(KeyServiceCipher):
    """A key service whose active key changes while a save is under way."""

    def encrypt(self, key_id: str, plaintext: bytes, associated_data: bytes) -> bytes:
        self.active_key_id = "m2"  # a background refresh, between header and encryption
        return super().encrypt(key_id, plaintext, associated_data)


def test_the_key_a_record_names_is_the_key_it_is_encrypted_with() -> None:
    cipher = _Rotating({"m1": os.urandom(32), "m2": os.urandom(32)}, "m1")
    codec = EnvelopeCodec(encryption=Encryption(cipher=cipher))
    sealed = codec.seal(codec.encode_state(_state(x=1)), revision=1)
    assert json.loads(sealed.raw)["key_id"] == "m1"
    assert codec.open(codec.parse(sealed.raw, what="r"), what="r").pipeline_context == {"x": 1}
    again = codec.seal(codec.encode_state(_state(x=2)), revision=2)
    assert json.loads(again.raw)["key_id"] == "m2"  # the next save uses the new key


def test_an_encryption_is_a_value_that_replace_and_equality_treat_as_such() -> None:
    aes = Encryption.single(Encryption.generate_key(), "k")
    lenient = dataclasses.replace(aes, accept_plaintext=True)
    assert lenient.accept_plaintext and lenient.keys == aes.keys and lenient != aes
    first = KeyServiceCipher({"m": os.urandom(32)}, "m")
    second = KeyServiceCipher({"m": os.urandom(32)}, "m")
    assert Encryption(cipher=first) == Encryption(cipher=first)
    assert Encryption(cipher=first) != Encryption(cipher=second)
    assert dataclasses.replace(Encryption(cipher=first), store="s").cipher is first


def test_headers_are_read_without_the_compressor_a_payload_needs(tmp_path: Any) -> None:
    """Listing a store needs no stage: a record of an unregistered compressor is listed,
    and refused only when its payload is read."""
    import asyncio

    from flujo.state import FileBackend

    compressor = type("Xz", (LzmaCompressor,), {"name": f"xz-{uuid.uuid4().hex[:12]}"})()

    async def scenario() -> None:
        writer = FileBackend(tmp_path, compression=compressor)
        await writer.save_state("r", _state())
        reader = FileBackend(tmp_path)
        assert [run["run_id"] for run in await reader.list_runs()] == ["r"]
        with pytest.raises(CorruptStateError, match=f"{compressor.name}.*register_compressor"):
            await reader.load_state("r")

    asyncio.run(scenario())


def test_a_cipher_may_share_its_name_with_a_compressor() -> None:
    name = f"kms{uuid.uuid4().hex[:8]}"
    register_compressor(_compressor(name))
    cipher = type("Named", (KeyServiceCipher,), {"name": name})({"m": os.urandom(32)}, "m")
    codec = EnvelopeCodec(compression=name, encryption=Encryption(cipher=cipher))
    sealed = codec.seal(codec.encode_state(_state(x=1)), revision=1)
    assert json.loads(sealed.raw)["codec"] == f"json+{name}+{name}"
    assert codec.open(codec.parse(sealed.raw, what="r"), what="r").pipeline_context == {"x": 1}


@pytest.mark.parametrize("error", [BackendUnavailableError("key service down"),
                                   EncryptionError("no such key")])
def test_a_stage_s_flujo_error_keeps_its_type_and_names_the_run(error: Exception) -> None:
    writer = EnvelopeCodec(encryption=Encryption(cipher=_Broken()))
    envelope = writer.seal(writer.encode_state(_state("r9")), revision=1).envelope
    reader = EnvelopeCodec(encryption=Encryption(cipher=_Broken(decrypted=error)))
    with pytest.raises(type(error), match=f"^r9: {error}$") as caught:
        reader.open(envelope, what="r9")
    assert caught.value.__cause__ is error
    failing = EnvelopeCodec(encryption=Encryption(cipher=_Broken(encrypted=error)))
    with pytest.raises(type(error), match=f"^run 'r9': {error}$"):
        failing.seal(failing.encode_state(_state("r9")), revision=1)

    def unreachable(self: Any, data: bytes, limit: int) -> bytes:
        raise BackendUnavailableError("the compression service is down")

    name = _unique("remote")
    packed = EnvelopeCodec(compression=_compressor(name))
    record = packed.seal(packed.encode_state(_state("r9")), revision=1).envelope
    remote = EnvelopeCodec(compression=_compressor(name, decompress=unreachable))
    with pytest.raises(BackendUnavailableError, match=r"^r9: the compression service"):
        remote.open(record, what="r9")


def test_bytes_like_results_are_taken() -> None:
    name = _unique("ba")
    base = ZlibCompressor()
    loose = _compressor(name, compress=lambda self, data: bytearray(base.compress(data)),
                        decompress=lambda self, data, limit: memoryview(
                            base.decompress(data, limit)))
    codec = EnvelopeCodec(compression=loose)
    sealed = codec.seal(codec.encode_state(_state(x=1)), revision=1)
    assert codec.open(codec.parse(sealed.raw, what="r"), what="r").pipeline_context == {"x": 1}


def test_too_large_to_save_is_not_a_damaged_record_too_large_to_read_is() -> None:
    codec = EnvelopeCodec(max_payload_bytes=1000)
    with pytest.raises(PayloadTooLargeError) as saving:
        codec.encode_state(_state(blob="x" * 2000))
    assert not isinstance(saving.value, CorruptStateError)
    big = EnvelopeCodec(compression="zlib")
    envelope = big.seal(big.encode_state(_state(blob="x" * 5000)), revision=1).envelope
    small = EnvelopeCodec(compression="zlib", max_payload_bytes=1000)
    with pytest.raises(RecordTooLargeError) as reading:
        small.open(envelope, what="r")
    assert isinstance(reading.value, CorruptStateError)
    assert isinstance(reading.value, PayloadTooLargeError)


def test_encryption_keeps_its_earlier_methods_and_attributes() -> None:
    """Encryption.encrypt(plaintext, aad) as in 0.16: the active key, unless key_id= says."""
    aes = Encryption({"old": Encryption.generate_key(), "new": Encryption.generate_key()},
                     active_key_id="new")
    blob = aes.encrypt(b"data", b"aad")
    assert aes.decrypt("new", blob, b"aad", what="r") == b"data"
    older = aes.encrypt(b"data", b"aad", key_id="old")
    assert aes.decrypt("old", older, b"aad", what="r") == b"data"
    assert EnvelopeCodec(compression="zlib", compression_level=1).compression_level == 1
