"""Property-based tests (hypothesis): run ids, round trips, compression and tampering."""

from __future__ import annotations

import base64
import os
import posixpath
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flujo.exceptions import (
    CorruptStateError,
    EncryptionError,
    InvalidRunIdError,
    PayloadTooLargeError,
)
from flujo.state import (
    Encryption,
    EnvelopeCodec,
    WorkflowState,
    ZlibCompressor,
    ZstdCompressor,
    validate_run_id,
)
from flujo.testing import assert_identical

KEY = bytes(range(32))
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(max_size=20)
    | st.decimals(allow_nan=False)
    | st.datetimes()
    | st.uuids()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.frozensets(st.integers() | st.text(max_size=5), max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        | st.dictionaries(st.integers(), inner, max_size=3)
    ),
    max_leaves=20,
)


@SETTINGS
@given(st.text(max_size=300))
def test_run_ids_never_escape_the_store(run_id: str) -> None:
    try:
        validate_run_id(run_id)
    except InvalidRunIdError:
        return
    target = posixpath.normpath(posixpath.join("/store", f"{run_id}.json"))
    assert posixpath.dirname(target) == "/store"
    assert os.sep not in run_id and "\x00" not in run_id and not run_id.startswith(".")
    assert len(run_id.encode()) <= 200


@SETTINGS
@given(context=st.dictionaries(st.text(max_size=10), values, max_size=5), output=values)
@pytest.mark.parametrize(
    "options",
    [{}, {"compression": "zlib"}, {"compression": "zstd", "encryption": Encryption.single(KEY)}],
    ids=["plain", "zlib", "zstd+aes"],
)
def test_codec_round_trip(options: dict[str, Any], context: dict[str, Any], output: Any) -> None:
    codec = EnvelopeCodec(**options)
    state = WorkflowState(run_id="r", pipeline_context=context, last_step_output=output)
    sealed = codec.seal(codec.encode_state(state), revision=1)
    back = codec.open(codec.parse(sealed.raw, what="p"), what="p")
    assert_identical(back.pipeline_context, context)
    assert_identical(back.last_step_output, output)


@SETTINGS
@given(data=st.binary(max_size=5000), algorithm=st.sampled_from(["zlib", "zstd"]))
def test_compression_round_trip_and_truncation(data: bytes, algorithm: str) -> None:
    compressor = ZlibCompressor() if algorithm == "zlib" else ZstdCompressor()
    packed = compressor.compress(data)
    assert compressor.decompress(packed, len(data) + 1) == data
    assert compressor.decompress(packed, len(data)) == data
    with pytest.raises(CorruptStateError):
        compressor.decompress(packed[: len(packed) - 1], 10**6)
    if data:
        with pytest.raises(PayloadTooLargeError):
            compressor.decompress(packed, len(data) - 1)


@SETTINGS
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_ciphertext_bit_is_rejected(position: int, bit: int) -> None:
    codec = EnvelopeCodec(encryption=Encryption.single(KEY))
    envelope = codec.seal(
        codec.encode_state(WorkflowState(run_id="r", pipeline_context={"a": 1})), revision=1
    ).envelope
    blob = bytearray(base64.b64decode(envelope.payload))
    blob[position % len(blob)] ^= 1 << bit
    tampered = envelope.model_copy(update={"payload": base64.b64encode(bytes(blob)).decode()})
    with pytest.raises(EncryptionError):
        codec.open(tampered, what="p")
