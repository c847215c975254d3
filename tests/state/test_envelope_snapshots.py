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
