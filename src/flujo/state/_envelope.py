"""The versioned envelope every persisted state is stored in.

This module is the single source of truth for the envelope's format name (``FORMAT``) and
format version (``ENVELOPE_VERSION``). ``docs/envelope.md`` describes the format and
``schemas/envelope.v2.schema.json`` is generated from ``Envelope`` by
``envelope_json_schema`` (``flujo schema export`` writes it; a test checks it is current).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

__all__ = [
    "CODECS",
    "ENVELOPE_VERSION",
    "FORMAT",
    "KINDS",
    "Envelope",
    "codec_problem",
    "envelope_json_schema",
    "envelope_schema_text",
    "format_timestamp",
]

#: The ``format`` field of every envelope.
FORMAT = "flujo.state"
#: The envelope format version this code writes. Readers accept every version up to this one.
ENVELOPE_VERSION = 2

#: What a record holds: ``state``, the whole state; ``delta``, the edits that turn the record
#: before it (``revision - 1``) into this one, in a chain that starts at the whole-state
#: record ``base``.
KINDS: tuple[str, ...] = ("state", "delta")

#: The payload codecs of flujo's own stages. ``json`` keeps the tagged payload inline as JSON;
#: the others store it as base64 text of the JSON bytes after the named stages: a compressor,
#: then a cipher (``key_id`` set). Registered compressors and custom ciphers add their names.
CODECS: tuple[str, ...] = (
    "json",
    "json+zlib",
    "json+zstd",
    "json+aesgcm",
    "json+zlib+aesgcm",
    "json+zstd+aesgcm",
)

#: A codec string: ``json``, then up to two stages, each a name joined with ``+``.
CODEC_PATTERN = r"^json(\+[a-z][a-z0-9-]{0,31}){0,2}$"
_CODEC = re.compile(CODEC_PATTERN)
#: flujo's own compressors, which never name a cipher.
_COMPRESSIONS = frozenset({"zlib", "zstd"})

def codec_problem(codec: str, key_id: str | None) -> str | None:
    """Why a record with this ``codec`` string and ``key_id`` cannot be read (None: it
    can): the grammar, then the stages against the key id."""
    return grammar_problem(codec) or stages_problem(codec, key_id)


def grammar_problem(codec: str) -> str | None:
    """Why ``codec`` is no codec string (None: it is one)."""
    if not _CODEC.fullmatch(codec) or "json" in codec.split("+")[1:]:
        return (f"codec must be 'json', then up to a compressor and a cipher, each joined"
                f" with '+' (such as {', '.join(CODECS[1:])})")
    return None


def stages_problem(codec: str, key_id: str | None) -> str | None:
    """Why a record of a well-formed ``codec`` string with ``key_id`` cannot be (None: it
    can): a cipher stage needs a key id, and a key id a cipher stage."""
    stages = codec.split("+")[1:]
    if key_id is None:
        if len(stages) > 1 or stages[:1] == ["aesgcm"]:
            return f"codec {codec!r} names a cipher but key_id is null"
    elif not stages or stages[-1] in _COMPRESSIONS:
        return f"key_id {key_id!r} is set but codec {codec!r} names no cipher"
    return None


_SCHEMA_ID = f"urn:flujo:schema:state-envelope:{ENVELOPE_VERSION}"


def format_timestamp(value: datetime) -> str:
    """Render a timestamp the way envelopes store it: UTC, microseconds, ``+00:00``.

    The fixed width makes the text sort in time order, which the SQLite and file stores rely
    on when listing runs.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


class Envelope(BaseModel):
    """One persisted run: a plaintext header and the (possibly compressed/encrypted) payload.

    The header is what backends index and what tools read without a key. The payload is the
    tagged ``safe_serialize`` form of the ``WorkflowState`` fields.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": _SCHEMA_ID,
        },
        title="FlujoStateEnvelope",
        defer_build=True,
    )

    format: StrictStr = Field(
        json_schema_extra={"const": FORMAT}, description=f"Always {FORMAT!r}."
    )
    envelope_version: StrictInt = Field(
        json_schema_extra={"const": ENVELOPE_VERSION},
        description="Version of this envelope layout. Readers refuse newer versions.",
    )
    run_id: StrictStr = Field(min_length=1, description="The run this record belongs to.")
    revision: StrictInt = Field(
        ge=1, description="Write counter kept by the backend; 1 for the first save."
    )
    state_version: StrictInt = Field(
        ge=1, description="Application state schema version (whole-state migrations)."
    )
    manifest: dict[str, StrictInt] = Field(
        description="Version of every type tag used inside the payload, by tag name."
    )
    pipeline_name: StrictStr = Field(description="Copied from the state, for listing.")
    status: StrictStr = Field(description="Copied from the state, for listing.")
    created_at: datetime = Field(description="When the run was first saved (UTC).")
    updated_at: datetime = Field(description="When this revision was saved (UTC).")
    codec: StrictStr = Field(
        json_schema_extra={"pattern": CODEC_PATTERN, "examples": list(CODECS)},
        description="How the payload is stored: 'json', then the compressor and the cipher"
                    " (when key_id is set) it went through, joined with '+'; see"
                    " docs/envelope.md.",
    )
    key_id: StrictStr | None = Field(
        default=None, description="Id of the encryption key; null when not encrypted."
    )
    kind: StrictStr = Field(
        default="state", json_schema_extra={"enum": list(KINDS)},
        description="'state': the payload holds the whole state. 'delta': it holds the edits"
                    " that turn revision - 1 into this revision.")
    base: StrictInt = Field(
        ge=1, description="The whole-state record this record's chain starts at: its own"
                          " revision for 'state', an earlier one for 'delta'.")
    step: StrictStr | None = Field(
        default=None, description="The step this checkpoint records (the last finished, or"
                                  " the one failing, pausing); null before the first.")
    attempt: StrictInt | None = Field(
        default=None, ge=1, description="That step's attempt count; null when none.")
    steps_done: StrictInt = Field(
        default=0, ge=0, description="How many of the pipeline's steps the state has"
                                     " finished (its current_step_index).")
    payload: Any = Field(
        description=(
            "codec 'json': the tagged payload inline. Otherwise: base64 of the payload bytes."
        )
    )

    # The layout version the record was stored in before it was upgraded in memory
    # (0: a bare state dict written by earlier flujo). Not part of the stored data.
    _stored_envelope_version: int = PrivateAttr(default=ENVELOPE_VERSION)

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value != FORMAT:
            raise ValueError(f"format must be {FORMAT!r}")
        return value

    @field_validator("envelope_version")
    @classmethod
    def _version(cls, value: int) -> int:
        # Older layouts are upgraded (see _upgrade.upgrade_envelope) before this model sees them.
        if value != ENVELOPE_VERSION:
            raise ValueError(f"envelope_version must be {ENVELOPE_VERSION}")
        return value

    @field_validator("codec")
    @classmethod
    def _codec(cls, value: str) -> str:
        problem = grammar_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        return value

    @model_validator(mode="after")
    def _stages(self) -> Envelope:
        problem = stages_problem(self.codec, self.key_id)
        if problem is not None:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _chain(self) -> Envelope:
        if self.kind == "state" and self.base != self.revision:
            raise ValueError(f"a whole-state record is its own base: base {self.base} !="
                             f" revision {self.revision}")
        if self.kind == "delta" and self.base >= self.revision:
            raise ValueError(f"a delta's base {self.base} must be an earlier revision than"
                             f" its own, {self.revision}")
        return self

    @field_validator("created_at", "updated_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamps must carry a UTC offset")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00: before year 1 in UTC
            # A ValueError, which pydantic reports naming the field (an OverflowError
            # would escape the validation as it is).
            raise ValueError(
                f"{value.isoformat()} is outside the years 1 to 9999 in UTC") from None

    @property
    def stored_envelope_version(self) -> int:
        """Envelope format version of the record as stored (0: earlier flujo's bare dict)."""
        return self._stored_envelope_version

    @property
    def encrypted(self) -> bool:
        """Whether the payload is encrypted: its ``key_id`` names the key."""
        return self.key_id is not None

    @property
    def compression(self) -> str | None:
        """The name of the compressor the payload went through, if any."""
        stages = self.codec.split("+")[1:]
        if self.encrypted:
            stages = stages[:-1]
        return stages[0] if stages else None

    @property
    def cipher(self) -> str | None:
        """The name of the cipher the payload is encrypted with, if any."""
        return self.codec.rpartition("+")[2] if self.encrypted else None

    def header(self) -> dict[str, Any]:
        """Every field except ``payload``, as JSON-ready values, in storage order: in the
        layout the record was stored in (a version 1 record's header has no chain fields,
        and its payload is one document, so it is written back as version 1)."""
        if self._stored_envelope_version < 2:
            return {**self._common_header(), "envelope_version": 1}
        return {
            **self._common_header(),
            "kind": self.kind,
            "base": self.base,
            "step": self.step,
            "attempt": self.attempt,
            "steps_done": self.steps_done,
        }

    def _common_header(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "envelope_version": self.envelope_version,
            "run_id": self.run_id,
            "revision": self.revision,
            "state_version": self.state_version,
            "manifest": dict(self.manifest),
            "pipeline_name": self.pipeline_name,
            "status": self.status,
            "created_at": format_timestamp(self.created_at),
            "updated_at": format_timestamp(self.updated_at),
            "codec": self.codec,
            "key_id": self.key_id,
        }


def envelope_json_schema() -> dict[str, Any]:
    """The JSON Schema of the current envelope format (what ``schemas/`` holds)."""
    return Envelope.model_json_schema()


def envelope_schema_text() -> str:
    """The committed text of ``schemas/envelope.v<ENVELOPE_VERSION>.schema.json``: sorted,
    indented, newline."""
    return json.dumps(envelope_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
