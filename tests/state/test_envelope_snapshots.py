"""Pin the stored bytes of whole envelopes: plain, compressed and encrypted.

Fixed timestamps, a fixed test key and counter nonces make them reproducible; any change to
the persisted layout fails here until the snapshot is deliberately updated (and
`flujo schema check` agrees the change is compatible).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
import pytest
from syrupy.assertion import SnapshotAssertion

from flujo.state import Encryption, EnvelopeCodec, WorkflowState
from flujo.state._chain import ChainTip

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
TEST_KEY = bytes(range(32))  # a test key, never a real one


def counter_nonces() -> Any:
    counter = itertools.count(1)
    return lambda size: next(counter).to_bytes(size, "big")


def state() -> WorkflowState:
    return WorkflowState(
        run_id="snapshot-run", pipeline_name="orders", pipeline_version="3",
        current_step_index=2, status="running", created_at=AT, updated_at=AT,
        pipeline_context={"total": Decimal("12.50"), "ids": {UUID(int=1), UUID(int=2)},
                          "window": (1, "a"), "at": AT},
        last_step_output={"ok": True}, step_history=[])


@pytest.mark.parametrize(("compression", "encrypted"), [
    (None, False), ("zlib", False), ("zstd", False), (None, True), ("zstd", True)])
def test_stored_envelope_bytes_are_pinned(snapshot: SnapshotAssertion, compression: str | None,
                                          encrypted: bool) -> None:
    encryption = (Encryption(keys={"test-key-1": TEST_KEY}, active_key_id="test-key-1",
                             nonce_source=counter_nonces()) if encrypted else None)
    codec = EnvelopeCodec(compression=compression, encryption=encryption)
    sealed = codec.seal(codec.encode_state(state()), revision=1, created_at=AT, updated_at=AT)
    stored = orjson.loads(sealed.raw)
    assert stored == snapshot
    back = codec.open(codec.parse(sealed.raw, what="snapshot"), what="snapshot")
    assert back.pipeline_context == state().pipeline_context
    assert type(back.pipeline_context["window"]) is tuple


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_delta_record_bytes_are_pinned(snapshot: SnapshotAssertion,
                                       compression: str | None) -> None:
    """A delta: what one step changed (a context value, the status, one history entry)."""
    codec = EnvelopeCodec(compression=compression)
    first = state()
    encoded = codec.encode_state(first)
    whole = codec.seal(encoded, revision=1, created_at=AT, updated_at=AT)
    tip = ChainTip(revision=1, created_at=AT, updated_at=AT, base=1, snapshot_bytes=10**6,
                   chain_bytes=0, chain_length=0, fields_json=encoded.fields_json,
                   history=encoded.history)
    second = state()
    second.pipeline_context["total"] = Decimal("13.00")
    second.current_step_index = 3
    second.step_history = [{"step": "price", "ok": True}]
    later = codec.encode_state(second, tip)
    sealed = codec.seal(later, revision=2, created_at=AT, updated_at=AT,
                        delta=codec.delta(tip, later, 2), base=1)
    assert orjson.loads(sealed.raw) == snapshot
    chain = [codec.parse(record.raw, what="snapshot") for record in (whole, sealed)]
    back, _ = codec.open_chain(chain, what="snapshot")
    assert back.pipeline_context == second.pipeline_context
    assert back.step_history == second.step_history and back.current_step_index == 3
