"""State <-> envelope: transcode, then compress, then encrypt (and the reverse on read).

:class:`EnvelopeCodec` is shared by every built-in backend, so all of them store the same
bytes for the same state. Backends only move envelopes around; everything about what an
envelope contains lives here.

Writing::

    WorkflowState --encode_with_manifest--> tagged data + manifest --JSON--> bytes
        --compress (zstd|zlib, optional)--> --AES-GCM (optional, AAD = header)--> base64

Reading applies the steps in reverse, then the per-type migrations (inside
``safe_deserialize``) and the whole-state migrations (:mod:`._migrations`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from flujo.exceptions import (
    BackendConfigError,
    CorruptStateError,
    DeserializationError,
    EncryptionError,
    FutureVersionError,
    InvalidStateError,
    MissingMigrationError,
    SerializationError,
    StateError,
)
from flujo.serialization import (
    TypeRegistry,
    default_registry,
    encode_with_manifest,
    safe_deserialize,
)
from flujo.serialization._text import lone_surrogate_error  # the state's own error

from ._compression import compress, decompress, resolve_compression
from ._crypto import Encryption
from ._envelope import ENVELOPE_VERSION, FORMAT, Envelope, format_timestamp
from ._jsonio import JSONError, containers, dumps, loads
from ._migrations import StateMigrations, default_state_migrations
from .models import WorkflowState, utc_now

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "EncodedState",
    "EnvelopeCodec",
    "SealedRecord",
    "associated_data",
    "record_too_large",
]

#: Default cap on a payload's decoded size (64 MiB); see ``max_payload_bytes``.
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024

_HEADER_ALLOWANCE = 1024 * 1024
_MIN_CONTAINERS = 2**20
# An encrypted record is a header and an opaque base64 payload: its only arrays and objects
# are the record and its manifest (and brackets inside names). More means plaintext. Also
# the allowance for a header's own brackets in any record.
_ENCRYPTED_CONTAINERS = 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LEGACY_KEYS = ("pipeline_context", "current_step_index", "step_history", "status")


@dataclass(frozen=True)
class EncodedState:
    """A state serialized for one save: the tagged data, its manifest and its JSON bytes."""

    run_id: str
    pipeline_name: str
    status: str
    state_version: int
    manifest: dict[str, int]
    data: Any
    payload_json: bytes


@dataclass(frozen=True)
class SealedRecord:
    """What a backend stores: the envelope, its exact bytes and (if plaintext) the payload JSON."""

    envelope: Envelope
    raw: bytes
    payload_json: bytes | None


def associated_data(envelope_fields: dict[str, Any], store: str | None = None) -> bytes:
    """The AES-GCM associated data: the header fields that must not change without the key,
    and the name of the store (``Encryption(store=...)``) when it has one.

    Binding ``run_id`` makes a ciphertext copied into another run fail to decrypt; binding the
    manifest, state version, codec and key id makes a doctored header fail as well; binding
    the store's name makes a record copied into another store that shares the key fail. A
    store without a name binds none (the associated data of every record before names).
    """
    bound = {
        "format": envelope_fields["format"],
        "run_id": envelope_fields["run_id"],
        "state_version": envelope_fields["state_version"],
        "manifest": envelope_fields["manifest"],
        "codec": envelope_fields["codec"],
        "key_id": envelope_fields["key_id"],
    }
    if store is not None:
        bound["store"] = store
    return orjson.dumps(bound, option=orjson.OPT_SORT_KEYS)


#: WorkflowState fields the store owns: set when sealing, read back from the header.
STORE_OWNED_FIELDS = frozenset({"created_at", "updated_at"})
#: The payload's copy of the header's timestamps, ``[created_at, updated_at]`` as the header
#: writes them. The payload is what encryption authenticates (the header is not): a reader
#: refuses a record whose header timestamps differ from it. Records before flujo 0.10 lack it.
TIMESTAMPS_KEY = "flujo_timestamps"


def _stored_fields(state: WorkflowState) -> dict[str, Any]:
    """What the payload holds (before the timestamps are added when sealing): every field
    but the store's timestamps."""
    data = state.to_dict()
    for name in STORE_OWNED_FIELDS:
        data.pop(name, None)
    if TIMESTAMPS_KEY in data:
        raise InvalidStateError(
            f"run {state.run_id!r}: {TIMESTAMPS_KEY!r} is the name of flujo's own payload"
            " field; a state cannot carry an extra field of that name")
    return data


def _with_timestamps(payload_json: bytes, created: str, updated: str) -> bytes:
    """``payload_json`` (a JSON object) with the timestamps appended as its last field."""
    stamps = b'"' + TIMESTAMPS_KEY.encode() + b'":["' + created.encode() + b'","' \
        + updated.encode() + b'"]}'
    return payload_json[:-1] + (stamps if payload_json == b"{}" else b"," + stamps)


def _check_timestamps(what: str, envelope: Envelope, stamps: Any) -> None:
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


def record_too_large(what: str, size: int, limit: int) -> str:
    """The message refusing a record of ``size`` bytes, over ``limit``."""
    return (f"{what}: the record holds {size:,} bytes, over this store's limit of {limit:,}"
            " bytes for one record (raise max_payload_bytes to read it); nothing was loaded")


def _too_many(what: str, part: str, count: int, limit: int) -> str:
    return (f"{what}: the {part} holds up to {count:,} JSON arrays and objects, over this"
            f" store's limit of {limit:,} (from max_payload_bytes); refused unparsed")


def _splice(header: dict[str, Any], payload_json: bytes) -> bytes:
    head = dumps(header)
    return head[:-1] + b',"payload":' + payload_json + b"}"


def _timestamp(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return fallback
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    return fallback


LEGACY_CONTEXT_MARKER = "context_is_plain_json"


def _from_legacy(data: dict[str, Any], fallback_time: datetime | None) -> dict[str, Any]:
    """Wrap a bare state dict written by earlier flujo (envelope version 0) in a v1 envelope."""
    fallback = fallback_time or _EPOCH
    created = _timestamp(data.get("created_at"), fallback)
    name = data.get("pipeline_name")
    status = data.get("status")
    return {
        "format": FORMAT,
        "envelope_version": 1,
        "run_id": data["run_id"],
        "revision": 1,
        "state_version": 1,
        "manifest": {},
        "pipeline_name": name if isinstance(name, str) else "",
        "status": status if isinstance(status, str) else "running",
        "created_at": created,
        "updated_at": _timestamp(data.get("updated_at"), created),
        "codec": "json",
        "key_id": None,
        # Earlier flujo stored the context as plain JSON (datetimes as strings...). The
        # marker survives a migration rewrite, so a runner still parses such a context.
        "payload": {**data, LEGACY_CONTEXT_MARKER: True},
    }


def upgrade_envelope(
    data: dict[str, Any], *, what: str, fallback_time: datetime | None = None
) -> tuple[dict[str, Any], int]:
    """Bring a stored envelope dict to the current layout; return it and its stored version.

    Version 0 is a bare state dict from earlier flujo. Future layout changes add a step to
    ``_UPGRADES`` (``n -> n+1``) and bump ``ENVELOPE_VERSION``; golden files under
    ``tests/golden/`` keep every released layout loading.
    """
    if "format" not in data:
        if isinstance(data.get("run_id"), str) and any(k in data for k in _LEGACY_KEYS):
            return _from_legacy(data, fallback_time), 0
        raise CorruptStateError(f"{what}: not a flujo state record (no 'format' field)")
    if data["format"] != FORMAT:
        raise CorruptStateError(
            f"{what}: not a flujo state record (format {data['format']!r}, expected {FORMAT!r})"
        )
    version = data.get("envelope_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CorruptStateError(f"{what}: invalid envelope_version {version!r}")
    stored = version
    if version > ENVELOPE_VERSION:
        raise FutureVersionError(
            f"{what}: written in envelope format version {version}; this flujo reads up to"
            f" version {ENVELOPE_VERSION}. Upgrade flujo to read it",
            path="$.envelope_version",
        )
    while version < ENVELOPE_VERSION:
        step = _UPGRADES.get(version)
        if step is None:
            raise MissingMigrationError(
                f"{what}: no upgrade from envelope format version {version}",
                path="$.envelope_version",
            )
        data = step(data)
        version = data["envelope_version"]
    return data, stored


# Envelope layout upgrades, by the version they upgrade from. Empty: 1 is the first layout.
_UPGRADES: dict[int, Any] = {}


class EnvelopeCodec:
    """Turns states into envelopes and back, with the backend's compression and encryption.

    ``registry`` (default: the global registry, looked up at each use) serializes the values;
    ``migrations`` (default: the global whole-state registry) brings old states up to date;
    ``compression`` is ``None``, ``"zlib"``, ``"zstd"`` or ``"auto"`` (zstd when installed,
    else zlib); ``encryption`` is an :class:`Encryption` or ``None``; ``max_payload_bytes`` caps
    a payload's JSON size, on save (so nothing unreadable is ever written) and when
    decompressing (so a hostile record cannot exhaust memory).
    """

    def __init__(
        self,
        *,
        registry: TypeRegistry | None = None,
        migrations: StateMigrations | None = None,
        compression: str | None = None,
        compression_level: int | None = None,
        encryption: Encryption | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        if encryption is not None and not isinstance(encryption, Encryption):
            raise EncryptionError(f"encryption must be an Encryption, got {encryption!r}")
        if max_payload_bytes < 1:
            raise BackendConfigError("max_payload_bytes must be positive")
        self._registry = registry
        self.migrations = migrations if migrations is not None else default_state_migrations()
        self.compression = resolve_compression(compression)
        self.compression_level = compression_level
        self.encryption = encryption
        self.max_payload_bytes = max_payload_bytes
        parts = ["json"]
        if self.compression:
            parts.append(self.compression)
        if encryption is not None:
            parts.append("aesgcm")
        self.codec = "+".join(parts)

    @property
    def max_record_bytes(self) -> int:
        """The largest stored record this codec reads: a payload of ``max_payload_bytes`` in
        base64 (4/3 of it) and a header of up to 1 MiB. Larger records are refused before
        they are read or parsed."""
        return self.max_payload_bytes * 4 // 3 + _HEADER_ALLOWANCE

    @property
    def max_containers(self) -> int:
        """The most arrays and objects (``[``/``{``, see ``_jsonio.containers``) a record or
        a decompressed payload may hold: 1/16 of ``max_payload_bytes``, at least 2**20.
        This bounds the memory and time a hostile record costs to a small multiple of
        ``max_payload_bytes`` (``[[],[],...]`` would otherwise cost 32 times its size)."""
        return max(_MIN_CONTAINERS, self.max_payload_bytes // 16)

    def _check_size(self, data: bytes, *, what: str) -> int:
        """Refuse a record over ``max_record_bytes`` or ``max_containers`` before parsing;
        return its container count."""
        if len(data) > self.max_record_bytes:
            raise CorruptStateError(record_too_large(what, len(data), self.max_record_bytes))
        count = containers(data)
        limit = self.max_containers + _ENCRYPTED_CONTAINERS  # the payload's and a header's
        if count > limit:
            raise CorruptStateError(_too_many(what, "record", count, limit))
        return count

    @property
    def registry(self) -> TypeRegistry:
        return self._registry if self._registry is not None else default_registry()

    # -- writing -------------------------------------------------------------------------

    def encode_state(self, state: WorkflowState) -> EncodedState:
        """Serialize ``state``; every serialization error surfaces here, at save time."""
        what = f"run {state.run_id!r}"
        try:
            data, manifest = encode_with_manifest(_stored_fields(state), registry=self.registry)
        except SerializationError as exc:
            exc.add_note(f"while saving {what}")
            raise
        try:
            payload_json = dumps(data)
        except JSONError as exc:
            if "surrogates not allowed" in str(exc):
                raise lone_surrogate_error(state.to_dict(), data, what) from exc
            raise SerializationError(
                f"{what}: the encoded state is not JSON-compatible: {exc}"
            ) from exc
        if len(payload_json) > self.max_payload_bytes:
            raise StateError(
                f"{what}: the state encodes to {len(payload_json)} bytes, over"
                f" max_payload_bytes={self.max_payload_bytes}; it could not be loaded back, so"
                " it is not saved"
            )
        count = containers(payload_json)
        if count > self.max_containers:
            raise StateError(
                f"{what}: the state encodes to {count:,} JSON arrays and objects (or '['/'{{'"
                f" in its text), over this store's limit of {self.max_containers:,} (from"
                " max_payload_bytes); it could not be loaded back, so it is not saved")
        return EncodedState(
            run_id=state.run_id,
            pipeline_name=state.pipeline_name,
            status=state.status,
            state_version=self.migrations.current_version,
            manifest=dict(manifest),
            data=data,
            payload_json=payload_json,
        )

    def seal(
        self,
        encoded: EncodedState,
        *,
        revision: int,
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
    ) -> SealedRecord:
        """Build the envelope for ``encoded`` at ``revision``, compressing and encrypting."""
        now = updated_at or utc_now()
        header: dict[str, Any] = {
            "format": FORMAT,
            "envelope_version": ENVELOPE_VERSION,
            "run_id": encoded.run_id,
            "revision": revision,
            "state_version": encoded.state_version,
            "manifest": encoded.manifest,
            "pipeline_name": encoded.pipeline_name,
            "status": encoded.status,
            "created_at": format_timestamp(created_at or now),
            "updated_at": format_timestamp(now),
            "codec": self.codec,
            "key_id": self.encryption.active_key_id if self.encryption else None,
        }
        payload_json = _with_timestamps(encoded.payload_json, header["created_at"],
                                        header["updated_at"])
        if self.codec == "json":
            data = {**encoded.data, TIMESTAMPS_KEY: [header["created_at"], header["updated_at"]]}
            envelope = Envelope.model_validate({**header, "payload": data})
            return SealedRecord(envelope, _splice(header, payload_json), payload_json)
        blob = payload_json
        if self.compression:
            blob = compress(self.compression, blob, self.compression_level)
        if self.encryption is not None:
            blob = self.encryption.encrypt(blob, associated_data(header, self.encryption.store))
        text = base64.b64encode(blob).decode("ascii")
        envelope = Envelope.model_validate({**header, "payload": text})
        plain = None if self.encryption is not None else payload_json
        raw = _splice(header, dumps(text))
        if self.encryption is not None and containers(raw) > _ENCRYPTED_CONTAINERS:
            raise StateError(  # it would read as plaintext (see parse)
                f"run {encoded.run_id!r}: the record's header holds over"
                f" {_ENCRYPTED_CONTAINERS} '['/'{{' (in the pipeline name or type names); an"
                " encrypting store refuses it, so it is not saved")
        return SealedRecord(envelope, raw, plain)

    def to_bytes(self, envelope: Envelope) -> bytes:
        """The exact stored bytes of ``envelope``."""
        try:
            return _splice(envelope.header(), dumps(envelope.payload))
        except JSONError as exc:
            raise CorruptStateError(
                f"run {envelope.run_id!r}: the envelope payload is not JSON: {exc}"
            ) from exc

    # -- reading -------------------------------------------------------------------------

    def parse(
        self, raw: bytes | str, *, what: str, fallback_time: datetime | None = None
    ) -> Envelope:
        """Parse stored bytes into an :class:`Envelope` (upgrading old layouts in memory).

        A record over ``max_record_bytes`` or ``max_containers`` is refused before it is
        parsed, and so is a plaintext record in a store that requires encryption."""
        data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
        count = self._check_size(data, what=what)
        encryption = self.encryption
        if (encryption is not None and not encryption.accept_plaintext
                and count > _ENCRYPTED_CONTAINERS):
            raise EncryptionError(
                f"{what}: the record is not encrypted (its payload is JSON data, not an"
                " opaque string) but this backend requires encryption; refused unread")
        try:
            data = loads(data)
        except JSONError as exc:
            raise CorruptStateError(f"{what}: not valid JSON ({exc})") from exc
        return self.parse_data(data, what=what, fallback_time=fallback_time)

    def parse_data(
        self, data: Any, *, what: str, fallback_time: datetime | None = None
    ) -> Envelope:
        if not isinstance(data, dict):
            raise CorruptStateError(f"{what}: not a flujo state record (not a JSON object)")
        upgraded, stored = upgrade_envelope(data, what=what, fallback_time=fallback_time)
        try:
            envelope = Envelope.model_validate(upgraded)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '$'}: {err['msg']}"
                for err in exc.errors()[:5]
            )
            raise CorruptStateError(f"{what}: not a valid state envelope: {problems}") from exc
        envelope._stored_envelope_version = stored
        return envelope

    def check_versions(self, envelope: Envelope, *, what: str) -> None:
        """Refuse, from the header alone, a record written by newer code."""
        current = self.registry.current_versions()
        for name, version in envelope.manifest.items():
            known = current.get(name)
            if known is not None and version > known:
                raise FutureVersionError(
                    f"{what}: the payload uses type {name!r} at version {version}, but this"
                    f" code knows version {known}; upgrade the application to read it",
                    path="$.manifest",
                )
        if envelope.state_version > self.migrations.current_version:
            raise FutureVersionError(
                f"{what}: written with state schema version {envelope.state_version}, but this"
                f" application is at version {self.migrations.current_version}",
                path="$.state_version",
            )

    def payload_data(self, envelope: Envelope, *, what: str) -> Any:
        """Decrypt and decompress the payload; return the tagged data (not yet decoded)."""
        if envelope.encrypted:
            if self.encryption is None:
                raise EncryptionError(
                    f"{what}: the record is encrypted (key id {envelope.key_id!r}) but this"
                    " backend has no encryption configured"
                )
            blob = self._b64(envelope, what, EncryptionError)
            header = envelope.header()
            store = self.encryption.store
            blob = self.encryption.decrypt(
                envelope.key_id, blob, associated_data(header, store), what=what,
                unbound_aad=associated_data(header) if self.encryption.accept_unbound else None,
            )
        else:
            if self.encryption is not None and not self.encryption.accept_plaintext:
                raise EncryptionError(
                    f"{what}: the record is not encrypted but this backend requires encryption;"
                    " refusing it (pass Encryption(..., accept_plaintext=True) only while"
                    " converting a store with migrate_all)"
                )
            if envelope.codec == "json":
                return envelope.payload
            blob = self._b64(envelope, what, CorruptStateError)
        compression = envelope.compression
        if compression is not None:
            blob = decompress(compression, blob, limit=self.max_payload_bytes, what=what)
        count = containers(blob)
        if count > self.max_containers:
            raise CorruptStateError(_too_many(what, "payload", count, self.max_containers))
        try:
            return loads(blob)
        except JSONError as exc:
            raise CorruptStateError(f"{what}: the payload is not valid JSON ({exc})") from exc

    @staticmethod
    def _b64(envelope: Envelope, what: str, error: type[StateError]) -> bytes:
        if not isinstance(envelope.payload, str):
            raise error(f"{what}: codec {envelope.codec!r} needs a base64 string payload")
        try:
            return base64.b64decode(envelope.payload.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise error(f"{what}: the payload is not valid base64") from exc

    def open(self, envelope: Envelope, *, what: str) -> WorkflowState:
        """Decode ``envelope`` into a current :class:`WorkflowState` (never writes anything).

        Raises FutureVersionError / MissingMigrationError / MigrationError / UnknownTypeError
        when the code cannot bring the record up to date, EncryptionError for key problems
        and CorruptStateError when the record itself is damaged.
        """
        self.check_versions(envelope, what=what)
        data = self.payload_data(envelope, what=what)
        try:
            fields = safe_deserialize(data, registry=self.registry)
        except DeserializationError as exc:
            if type(exc) is DeserializationError:  # malformed data, or a deserializer failed
                raise CorruptStateError(f"{what}: the payload cannot be decoded: {exc}") from exc
            exc.add_note(f"while loading {what}")  # unknown type, migration problems: keep type
            raise
        except SerializationError as exc:
            exc.add_note(f"while loading {what}")
            raise
        if not isinstance(fields, dict):
            raise CorruptStateError(
                f"{what}: the payload decodes to {type(fields).__name__}, expected a dict"
            )
        self.check_header(envelope, fields, what=what)
        # The store owns the timestamps (see WorkflowState): the header's, checked against
        # the payload's copy above; whatever an earlier flujo wrote into the payload's own
        # fields (there, the time of every save) is ignored.
        fields.pop(TIMESTAMPS_KEY, None)
        fields["created_at"] = envelope.created_at
        fields["updated_at"] = envelope.updated_at
        fields = self.migrations.migrate(fields, envelope.state_version, what=what)
        try:
            state = WorkflowState.model_validate(fields)
        except ValidationError as exc:
            raise CorruptStateError(
                f"{what}: the decoded state is not a valid WorkflowState (damaged record or a"
                f" faulty state migration): {exc}"
            ) from exc
        if state.run_id != envelope.run_id:
            raise CorruptStateError(
                f"{what}: the payload belongs to run {state.run_id!r}, not {envelope.run_id!r}"
            )
        return state

    @staticmethod
    def check_header(envelope: Envelope, fields: dict[str, Any], *, what: str) -> None:
        """Refuse a record whose header says what its payload (authenticated when
        encrypted) does not: the pipeline name, the status, the timestamps."""
        for name, default in (("pipeline_name", ""), ("status", "running")):
            if fields.get(name, default) != getattr(envelope, name):
                raise CorruptStateError(
                    f"{what}: the header says {name}={getattr(envelope, name)!r} but the payload"
                    f" says {fields.get(name, default)!r}; the record was altered"
                )
        if TIMESTAMPS_KEY in fields:
            _check_timestamps(what, envelope, fields[TIMESTAMPS_KEY])

    def outdated(self, envelope: Envelope) -> list[str]:
        """Why ``envelope`` differs from what this codec would write now (empty: current)."""
        reasons: list[str] = []
        stored = envelope.stored_envelope_version
        if stored < ENVELOPE_VERSION:
            reasons.append(f"envelope format {stored} -> {ENVELOPE_VERSION}")
        if envelope.state_version < self.migrations.current_version:
            reasons.append(
                f"state schema {envelope.state_version} -> {self.migrations.current_version}"
            )
        current = self.registry.current_versions()
        for name, version in sorted(envelope.manifest.items()):
            known = current.get(name)
            if known is not None and version < known:
                reasons.append(f"type {name} {version} -> {known}")
        if envelope.codec != self.codec:
            reasons.append(f"codec {envelope.codec} -> {self.codec}")
        elif self.encryption is not None and envelope.key_id != self.encryption.active_key_id:
            reasons.append(f"key {envelope.key_id} -> {self.encryption.active_key_id}")
        elif self.encryption is not None and self.encryption.store is not None and \
                envelope.encrypted and not self._bound(envelope, self.encryption):
            reasons.append(f"bound to store {self.encryption.store!r}")
        return reasons

    def _bound(self, envelope: Envelope, encryption: Encryption) -> bool:
        """Whether ``envelope``'s ciphertext is bound to the name of ``encryption``'s store
        (header alone cannot say: the name is only in the associated data)."""
        try:
            blob = self._b64(envelope, "", EncryptionError)
        except EncryptionError:
            return True  # damaged: reading it reports what is wrong, rewriting cannot help
        return encryption.authenticates(envelope.key_id, blob,
                                        associated_data(envelope.header(), encryption.store))
