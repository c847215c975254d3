"""The copies of a record's header sealed into its payload, and the checks that they agree.

The payload is what encryption authenticates; the header is not. So the header fields a
reader relies on (the timestamps, the checkpoint label) are repeated in the payload, and a
record whose header differs from them was altered. The chain check refuses records that do
not follow each other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flujo.exceptions import CorruptStateError

from ._envelope import Envelope, format_timestamp
from ._jsonio import dumps

__all__ = ["LABEL_KEY", "TIMESTAMPS_KEY", "check_chain", "check_label", "check_timestamps",
           "stamps_of", "with_timestamps"]

#: The payload's copy of the header's timestamps, ``[created_at, updated_at]`` as the header
#: writes them. The payload is what encryption authenticates (the header is not): a reader
#: refuses a record whose header timestamps differ from it. Records before flujo 0.10 lack it.
TIMESTAMPS_KEY = "flujo_timestamps"
#: The payload's copy of the header's checkpoint label, ``[step, attempt, steps_done]``
#: (version 2 on).
LABEL_KEY = "flujo_label"


def with_timestamps(payload_json: bytes, created: str, updated: str,
                     label: tuple[str | None, int | None, int] | None = None) -> bytes:
    """``payload_json`` (a JSON object) with the timestamps (and the label) appended as its
    last fields."""
    stamps = b'"' + TIMESTAMPS_KEY.encode() + b'":["' + created.encode() + b'","' \
        + updated.encode() + b'"]'
    if label is not None:
        stamps += b',"' + LABEL_KEY.encode() + b'":' + dumps(list(label))
    stamps += b"}"
    return payload_json[:-1] + (stamps if payload_json == b"{}" else b"," + stamps)


def check_label(what: str, envelope: Envelope, payload: Any) -> None:
    found = payload.get(LABEL_KEY) if isinstance(payload, dict) else None
    if found != [envelope.step, envelope.attempt, envelope.steps_done]:
        raise CorruptStateError(
            f"{what}: the header says step={envelope.step!r}, attempt={envelope.attempt!r},"
            f" steps_done={envelope.steps_done!r} but"
            f" the payload was sealed with {repr(found)[:120]}; the record was altered")


def check_timestamps(what: str, envelope: Envelope, stamps: Any) -> None:
    """Refuse a record whose header timestamps are not the ones its payload was sealed with."""
    expected = [envelope.created_at, envelope.updated_at]
    found: list[datetime | None] = []
    if isinstance(stamps, list) and len(stamps) == 2:
        for text in stamps:
            try:
                found.append(datetime.fromisoformat(text) if isinstance(text, str) else None)
            except ValueError:
                found.append(None)
    if found != expected:
        raise CorruptStateError(
            f"{what}: the header says created_at={format_timestamp(envelope.created_at)},"
            f" updated_at={format_timestamp(envelope.updated_at)} but the payload was sealed"
            f" with {repr(stamps)[:120]}; the record was altered")


def stamps_of(payload: Any) -> Any:
    return payload.get(TIMESTAMPS_KEY) if isinstance(payload, dict) else None


def check_chain(chain: list[Envelope], *, what: str) -> None:
    """Refuse records that do not form one chain: a whole-state record, then deltas of it at
    consecutive revisions."""
    first = chain[0]
    if first.kind != "state":
        raise CorruptStateError(
            f"{what}: revision {first.revision} is a delta of revision {first.base}, which is"
            " missing; the chain is damaged")
    previous = first
    for envelope in chain[1:]:
        if envelope.kind != "delta" or envelope.base != first.revision \
                or envelope.revision != previous.revision + 1 \
                or envelope.run_id != first.run_id:
            raise CorruptStateError(
                f"{what}: revision {envelope.revision} ({envelope.kind} of revision"
                f" {envelope.base}) does not follow revision {previous.revision} in the chain"
                f" starting at revision {first.revision}; the chain is damaged")
        previous = envelope
