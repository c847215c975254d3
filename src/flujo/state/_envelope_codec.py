"""State <-> envelope: transcode, then compress, then encrypt (and the reverse on read).

``EnvelopeCodec`` is shared by every built-in backend, so all of them store the same
bytes for the same state. Backends only move envelopes around; everything about what an
envelope contains lives here.

Writing::

    WorkflowState --encode_with_manifest--> tagged data + manifest --JSON--> bytes
        --compress (zstd|zlib, optional)--> --AES-GCM (optional, AAD = header)--> base64

Reading applies the steps in reverse, then the per-type migrations (inside
``safe_deserialize``) and the whole-state migrations (``._migrations``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
from dataclasses import dataclass, field, replace
from datetime import datetime
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
    PayloadTooLargeError,
    RecordTooLargeError,
    SerializationError,
    StateError,
)
from flujo.serialization import (
    EncodingMemo,
    TypeRegistry,
    collector_paused,
    default_registry,
    encode_with_manifest,
    lone_surrogate_error,
    merge_manifests,
    safe_deserialize,
)

from ._chain import (
    UNKNOWN,
    ChainTip,
    Delta,
    History,
    HistoryEntry,
    Link,
    checkpoint_label,
    delta_payload,
    encode_history,
    rebuild,
    state_data,
    state_payload,
)
from ._compression import (
    Compressor,
    compress,
    compressor_named,
    decompress,
    resolve_compression,
)
from ._crypto import Encryption
from ._envelope import ENVELOPE_VERSION, FORMAT, Envelope, format_timestamp
from ._jsonio import JSONError, containers, dumps, loads
from ._migrations import StateMigrations, default_state_migrations
from ._sealing import (
    LABEL_KEY,
    TIMESTAMPS_KEY,
    check_chain,
    check_label,
    check_timestamps,
    stamps_of,
    with_timestamps,
)
from ._upgrade import upgrade_envelope
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


@dataclass(frozen=True)
class EncodedState:
    """A state serialized for one save: its fields document, its history entries, the
    manifest of both and the label of the checkpoint (step, attempt, steps done).

    ``data`` and ``payload_json`` are the whole-state payload; a delta is built from the
    parts instead (see ``._chain``)."""

    run_id: str
    pipeline_name: str
    status: str
    state_version: int
    manifest: dict[str, int]
    fields: Any
    fields_json: bytes
    history: History
    step: str | None = None
    attempt: int | None = None
    steps_done: int = 0
    memo: EncodingMemo | None = None  # for the next save's encoding (see ChainTip.memo)
    fields_manifest: dict[str, int] = field(default_factory=dict)  # the fields' part

    @property
    def data(self) -> dict[str, Any]:
        return state_data(self.fields, self.history)

    @functools.cached_property
    def payload_json(self) -> bytes:
        return state_payload(self.fields_json, self.history)


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


def record_too_large(what: str, size: int, limit: int) -> RecordTooLargeError:
    """The error refusing a stored record of ``size`` bytes, over ``limit``."""
    return RecordTooLargeError(
        f"{what}: the record holds {size:,} bytes, over this store's limit of {limit:,}"
        " bytes for one record (raise max_payload_bytes to read it); nothing was loaded")


def _too_many(what: str, part: str, count: int, limit: int) -> str:
    return (f"{what}: the {part} holds up to {count:,} JSON arrays and objects, over this"
            f" store's limit of {limit:,} (from max_payload_bytes); refused unparsed")


def _built(header: dict[str, Any], payload: Any) -> Envelope:
    """The envelope of a record being sealed, from the header ``seal`` made and checked
    (timestamps formatted from aware datetimes, a revision from check_revision, a chain base
    before it): built without validating it again, its timestamps read back from their
    stored text, as a reader gets them. Records read from a store are validated in full."""
    return Envelope.model_construct(
        **{**header, "created_at": datetime.fromisoformat(header["created_at"]),
           "updated_at": datetime.fromisoformat(header["updated_at"])},
        payload=payload)


def _splice(header: dict[str, Any], payload_json: bytes) -> bytes:
    head = dumps(header)
    return head[:-1] + b',"payload":' + payload_json + b"}"


class EnvelopeCodec:
    """Turns states into envelopes and back, with the backend's compression and encryption.

    ``registry`` (default: the global registry, looked up at each use) serializes the values;
    ``migrations`` (default: the global whole-state registry) brings old states up to date;
    ``compression`` is ``None``, ``"zlib"``, ``"zstd"``, ``"auto"`` (zstd when installed,
    else zlib), the name of a registered compressor or a ``Compressor``; ``compression_level``
    is zlib's or zstd's level; ``encryption`` is an ``Encryption`` or ``None``;
    ``max_payload_bytes`` caps
    a payload's JSON size, on save (so nothing unreadable is ever written) and when
    decompressing (so a hostile record cannot exhaust memory).
    """

    def __init__(
        self,
        *,
        registry: TypeRegistry | None = None,
        migrations: StateMigrations | None = None,
        compression: str | Compressor | None = None,
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
        #: The compressor records are written with (None: uncompressed).
        self.compressor = resolve_compression(compression, compression_level)
        #: Its name, as records name it.
        self.compression = None if self.compressor is None else self.compressor.name
        self.compression_level = compression_level
        self.encryption = encryption
        self.max_payload_bytes = max_payload_bytes
        parts = ["json"]
        if self.compression:
            parts.append(self.compression)
        if encryption is not None:
            parts.append(encryption.name)
        #: The codec string of the records written: the transcoding, then the stages.
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
            raise record_too_large(what, len(data), self.max_record_bytes)
        count = containers(data)
        limit = self.max_containers + _ENCRYPTED_CONTAINERS  # the payload's and a header's
        if count > limit:
            raise RecordTooLargeError(_too_many(what, "record", count, limit))
        return count

    @property
    def registry(self) -> TypeRegistry:
        return self._registry if self._registry is not None else default_registry()

    # -- writing -------------------------------------------------------------------------

    def encode_state(self, state: WorkflowState, tip: ChainTip | None = None, *,
                     memo: bool = False) -> EncodedState:
        """Serialize ``state``; every serialization error surfaces here, at save time.

        History entries that are the very objects ``tip`` encoded, at the same positions,
        are not encoded again (see ``._chain``); with ``memo``, neither are the records
        of the context's lists unchanged since (``tip.memo``), and the result carries the
        memo for the next save."""
        what = f"run {state.run_id!r}"
        stored = _stored_fields(state)
        entries = stored.pop("step_history", [])
        encoding = EncodingMemo(tip.memo if tip is not None else None) if memo else None
        try:
            fields, fields_manifest = encode_with_manifest(stored, registry=self.registry,
                                                           memo=encoding)
        except SerializationError as exc:
            exc.add_note(f"while saving {what}")
            raise
        history = encode_history(entries, tip, self.registry, what)
        try:
            fields_json = dumps(fields)
        except JSONError as exc:
            if "surrogates not allowed" in str(exc):
                raise lone_surrogate_error(state.to_dict(), state_data(fields, history),
                                           what) from exc
            raise SerializationError(
                f"{what}: the encoded state is not JSON-compatible: {exc}"
            ) from exc
        step, attempt = checkpoint_label(state.__dict__)
        return EncodedState(
            run_id=state.run_id,
            pipeline_name=state.pipeline_name,
            status=state.status,
            state_version=self.migrations.current_version,
            manifest=self._loadable(fields_json, fields_manifest, history, what),
            fields=fields,
            fields_json=fields_json,
            history=history,
            step=step,
            attempt=attempt,
            steps_done=state.current_step_index,
            memo=encoding,
            fields_manifest=fields_manifest,
        )

    def with_fresh_history(self, encoded: EncodedState, entries: list[Any]) -> EncodedState:
        """``encoded`` with its step history ``entries`` encoded anew, none of the encodings
        a tip remembered reused: for a save whose remembered record is no longer the stored
        head (another writer may have stored those entries otherwise). The fields document
        is kept: it was encoded when the save was asked for."""
        what = f"run {encoded.run_id!r}"
        history = encode_history(entries, None, self.registry, what)
        manifest = self._loadable(encoded.fields_json, encoded.fields_manifest, history, what)
        return replace(encoded, history=history, manifest=manifest)

    def _loadable(self, fields_json: bytes, fields_manifest: dict[str, int], history: History,
                  what: str) -> dict[str, int]:
        """The manifest of a state made of these fields and history, once the whole is known
        to be loadable back (the store's size and container limits)."""
        size = len(fields_json) + history.size
        if size > self.max_payload_bytes:
            raise PayloadTooLargeError(
                f"{what}: the state encodes to {size} bytes, over"
                f" max_payload_bytes={self.max_payload_bytes}; it could not be loaded back, so"
                " it is not saved"
            )
        count = containers(fields_json) + history.containers + 2
        if count > self.max_containers:
            raise PayloadTooLargeError(
                f"{what}: the state encodes to {count:,} JSON arrays and objects (or '['/'{{'"
                f" in its text), over this store's limit of {self.max_containers:,} (from"
                " max_payload_bytes); it could not be loaded back, so it is not saved")
        return merge_manifests(fields_manifest, history.manifest)

    @staticmethod
    def delta(tip: ChainTip, encoded: EncodedState, revision: int) -> Delta:
        """The payload of ``encoded`` as a delta of ``tip`` (the record at ``revision - 1``)."""
        return delta_payload(tip, encoded.fields, encoded.history, revision,
                             encoded.fields_json)

    def seal(
        self,
        encoded: EncodedState,
        *,
        revision: int,
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
        delta: Delta | None = None,
        base: int | None = None,
    ) -> SealedRecord:
        """Build the envelope for ``encoded`` at ``revision``, compressing and encrypting:
        a whole-state record, or, given ``delta`` (from ``delta``), a delta record in the
        chain starting at ``base``."""
        header = {
            **self._header(encoded, ENVELOPE_VERSION, revision, created_at, updated_at),
            "kind": "state" if delta is None else "delta",
            "base": revision if delta is None or base is None else base,
            "step": encoded.step,
            "attempt": encoded.attempt,
            "steps_done": encoded.steps_done,
        }
        body = encoded.payload_json if delta is None else delta.json
        label = (encoded.step, encoded.attempt, encoded.steps_done)
        payload_json = with_timestamps(body, header["created_at"], header["updated_at"], label)
        if self.codec == "json":
            data = {**(encoded.data if delta is None else delta.data),
                    TIMESTAMPS_KEY: [header["created_at"], header["updated_at"]],
                    LABEL_KEY: list(label)}
            envelope = _built(header, data)
            return SealedRecord(envelope, _splice(header, payload_json), payload_json)
        return self._sealed(header, payload_json)

    def fits(self, delta: Delta, room: int, tip: ChainTip) -> bool:
        """Whether sealing ``delta`` is likely to give a record of at most ``room`` bytes,
        its header about as long as the tip's record's (``ChainTip.overhead``). Only for a
        codec that stores the payload as it is (what a compressing codec makes of it is
        known once it is sealed). A wrong guess writes a whole state where a delta would
        have fitted: the chain is as valid, only shorter."""
        return self.codec != "json" or len(delta.json) + tip.overhead <= room

    def seal_version1(self, encoded: EncodedState, *, revision: int,
                      created_at: datetime) -> SealedRecord:
        """A record of envelope version 1 (one document, ``encoded.fields``, holding every
        field): what an operator's status change writes over a version 1 record, whose
        document cannot be split without decoding it."""
        header = self._header(encoded, 1, revision, created_at, None)
        payload_json = with_timestamps(encoded.fields_json, header["created_at"],
                                       header["updated_at"])
        if self.codec == "json":
            raw = _splice(header, payload_json)
        else:
            raw = _splice(header, dumps(self._protect(header, payload_json)))
        envelope = self.parse(raw, what=f"run {encoded.run_id!r}")
        return SealedRecord(envelope, raw, None if self.encryption else payload_json)

    def _header(self, encoded: EncodedState, layout: int, revision: int,
                created_at: datetime | None, updated_at: datetime | None) -> dict[str, Any]:
        """The header fields every envelope layout has, in storage order."""
        now = updated_at or utc_now()
        return {
            "format": FORMAT,
            "envelope_version": layout,
            "run_id": encoded.run_id,
            "revision": revision,
            "state_version": encoded.state_version,
            "manifest": encoded.manifest,
            "pipeline_name": encoded.pipeline_name,
            "status": encoded.status,
            "created_at": format_timestamp(created_at or now),
            "updated_at": format_timestamp(now),
            "codec": self.codec,
            "key_id": self.encryption.key_id if self.encryption else None,
        }

    def _protect(self, header: dict[str, Any], payload_json: bytes) -> str:
        """The payload as stored by a compressing or encrypting codec: base64 text."""
        blob = payload_json
        what = f"run {header['run_id']!r}"
        if self.compressor is not None:
            blob = compress(self.compressor, blob, what=what)
        if self.encryption is not None:
            # The key the header names (read once, when the header was made): the cipher
            # encrypts with it, whatever its active key has become since.
            blob = self.encryption.encrypt(
                blob, associated_data(header, self.encryption.store), key_id=header["key_id"],
                what=what)
        return base64.b64encode(blob).decode("ascii")

    def _sealed(self, header: dict[str, Any], payload_json: bytes) -> SealedRecord:
        text = self._protect(header, payload_json)
        envelope = _built(header, text)
        plain = None if self.encryption is not None else payload_json
        raw = _splice(header, dumps(text))
        if self.encryption is not None and containers(raw) > _ENCRYPTED_CONTAINERS:
            raise PayloadTooLargeError(  # it would read as plaintext (see parse)
                f"run {header['run_id']!r}: the record's header holds over"
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
        """Parse stored bytes into an ``Envelope`` (upgrading old layouts in memory).

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
        with collector_paused(len(data)):  # a large record: see flujo.serialization
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
            if envelope.cipher != self.encryption.name:
                raise EncryptionError(
                    f"{what}: the record is encrypted with cipher {envelope.cipher!r} but this"
                    f" backend's is {self.encryption.name!r}")
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
            blob = decompress(self._compressor_named(compression, what=what), blob,
                              limit=self.max_payload_bytes, what=what)
        count = containers(blob)
        if count > self.max_containers:
            raise RecordTooLargeError(
                _too_many(what, "payload", count, self.max_containers))
        try:
            return loads(blob)
        except JSONError as exc:
            raise CorruptStateError(f"{what}: the payload is not valid JSON ({exc})") from exc

    def _compressor_named(self, name: str, *, what: str) -> Compressor:
        """The compressor that reads a payload compressed by ``name``: this codec's own,
        else the one registered under that name."""
        if self.compressor is not None and self.compressor.name == name:
            return self.compressor
        found = compressor_named(name)
        if found is None:
            raise CorruptStateError(
                f"{what}: the record's codec names compression {name!r}, which this process"
                " does not know (a compressor of your own is found by its name: register it"
                " with flujo.state.register_compressor where the records are read)")
        return found

    @staticmethod
    def _b64(envelope: Envelope, what: str, error: type[StateError]) -> bytes:
        if not isinstance(envelope.payload, str):
            raise error(f"{what}: codec {envelope.codec!r} needs a base64 string payload")
        try:
            return base64.b64decode(envelope.payload.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise error(f"{what}: the payload is not valid base64") from exc

    def open(self, envelope: Envelope, *, what: str) -> WorkflowState:
        """Decode a whole-state ``envelope`` into a current ``WorkflowState`` (never
        writes anything); a delta needs its chain (``open_chain``).

        Raises FutureVersionError / MissingMigrationError / MigrationError / UnknownTypeError
        when the code cannot bring the record up to date, EncryptionError for key problems
        and CorruptStateError when the record itself is damaged.
        """
        return self.open_chain([envelope], what=what)[0]

    def open_chain(self, chain: list[Envelope], *,
                   what: str) -> tuple[WorkflowState, ChainTip | None]:
        """Decode the state at the last record of ``chain``: a whole-state record followed by
        the deltas after it, in revision order. Returns the state and the tip to write the
        next save as a delta of it (None for a record of envelope version 1, which starts
        no chain)."""
        head, first = chain[-1], chain[0]
        self.check_versions(head, what=what)
        payload, history_docs = self._documents(chain, what=what)
        tip: ChainTip | None = None
        # Documents parsed from the records' bytes for this call alone are decoded without
        # copies; a "json" record's payload is the envelope's own data (the caller holds the
        # head envelope), and the history documents are kept by the tip: those are copied.
        parsed = not any(envelope.codec == "json" for envelope in chain)
        if history_docs is None:  # a version 1 record: one document
            fields = self._decode(payload, what=what, copy=not parsed)
            if not isinstance(fields, dict):
                raise CorruptStateError(
                    f"{what}: the payload decodes to {type(fields).__name__}, expected a dict")
            stamps = fields.pop(TIMESTAMPS_KEY, None)
            if stamps is not None:
                check_timestamps(what, first, stamps)
        else:
            fields_doc = payload
            fields_json = dumps(fields_doc)  # before decoding, which may share its lists
            fields = self._decode(fields_doc, what=what, copy=not parsed)
            if not isinstance(fields, dict):
                raise CorruptStateError(
                    f"{what}: the fields decode to {type(fields).__name__}, expected a dict")
            fields["step_history"] = [self._decode(doc, what=f"{what}, step_history[{i}]")
                                      for i, doc in enumerate(history_docs)]
            tip = ChainTip(
                revision=head.revision, created_at=head.created_at,
                updated_at=head.updated_at, base=first.revision,
                snapshot_bytes=0, chain_bytes=0,  # the backend knows the stored sizes
                chain_length=len(chain) - 1, fields_json=fields_json,
                history=History([HistoryEntry(doc, {}) for doc in history_docs],
                                [UNKNOWN] * len(history_docs)))
        self.check_header(head, fields, what=what)
        # The store owns the timestamps (see WorkflowState): the header's, checked against
        # the payload's copy above; whatever an earlier flujo wrote into the payload's own
        # fields (there, the time of every save) is ignored.
        fields["created_at"] = head.created_at
        fields["updated_at"] = head.updated_at
        fields = self.migrations.migrate(fields, head.state_version, what=what)
        try:
            state = WorkflowState.model_validate(fields)
        except ValidationError as exc:
            raise CorruptStateError(
                f"{what}: the decoded state is not a valid WorkflowState (damaged record or a"
                f" faulty state migration): {exc}"
            ) from exc
        if state.run_id != head.run_id:
            raise CorruptStateError(
                f"{what}: the payload belongs to run {state.run_id!r}, not {head.run_id!r}"
            )
        return state, tip

    def _decode(self, data: Any, *, what: str, copy: bool = True) -> Any:
        """``safe_deserialize`` of ``data``, its errors as the state's; ``copy=False`` for
        documents nothing else holds (the result is built from them)."""
        try:
            # decoding builds the whole state at once (not decrypting, nor migrating: those
            # run code of the application's, without a pause)
            with collector_paused():
                return safe_deserialize(data, registry=self.registry, copy=copy)
        except DeserializationError as exc:
            if type(exc) is DeserializationError:  # malformed data, or a deserializer failed
                raise CorruptStateError(f"{what}: the payload cannot be decoded: {exc}") from exc
            exc.add_note(f"while loading {what}")  # unknown type, migration problems: keep type
            raise
        except SerializationError as exc:
            exc.add_note(f"while loading {what}")
            raise

    def plain_chain(self, chain: list[Envelope], *, what: str) -> dict[str, Any]:
        """The whole-state payload at the last record of ``chain`` as JSON data, no value
        decoded (for tools: an operator's status change, a listing, an export); every
        record's sealed copies of its header are checked. A version 1 record gives its one
        document of fields."""
        head = chain[-1]
        fields, history = self._documents(chain, what=what)
        if history is None:  # a version 1 record: one document
            if not isinstance(fields, dict):
                raise CorruptStateError(f"{what}: the payload is not an object of state fields")
            self.check_header(head, fields, what=what)
            return fields
        if not isinstance(fields, dict):
            raise CorruptStateError(f"{what}: the fields document is not an object")
        self.check_header(head, fields, what=what)
        return {"fields": fields, "history": history,
                TIMESTAMPS_KEY: [format_timestamp(head.created_at),
                                 format_timestamp(head.updated_at)],
                LABEL_KEY: [head.step, head.attempt, head.steps_done]}

    def _documents(self, chain: list[Envelope], *,
                   what: str) -> tuple[Any, list[Any] | None]:
        """The fields document and the history documents at the last record of ``chain``,
        nothing decoded, every record's sealed header copies checked; for a version 1
        record, its one document and None."""
        check_chain(chain, what=what)
        first = chain[0]
        payload = self.payload_data(first, what=what)
        if first.stored_envelope_version < 2:
            return payload, None
        self._check_sealed(first, payload, what=what)
        return rebuild(payload, self._links(chain, what=what), base=first.revision, what=what)

    def _links(self, chain: list[Envelope], *, what: str) -> list[Link]:
        """The deltas of ``chain`` (after its first record), payloads read and checked."""
        return [Link(envelope.revision, envelope.base, format_timestamp(parent.updated_at),
                     self._checked_payload(envelope, what=f"{what}, revision"
                                                     f" {envelope.revision}"))
                for parent, envelope in itertools.pairwise(chain)]

    def _checked_payload(self, envelope: Envelope, *, what: str) -> Any:
        payload = self.payload_data(envelope, what=what)
        self._check_sealed(envelope, payload, what=what)
        return payload

    @staticmethod
    def _check_sealed(envelope: Envelope, payload: Any, *, what: str) -> None:
        """The timestamps and label a version 2 record's payload was sealed with (encryption
        authenticates them) must be its header's."""
        check_timestamps(what, envelope, stamps_of(payload))
        check_label(what, envelope, payload)

    def reseal(self, head: Envelope, payload: dict[str, Any]) -> Envelope:
        """A whole-state envelope with ``head``'s header and ``payload`` (from
        ``plain_chain`` of ``head``'s chain), stored the way this codec stores records."""
        if head.stored_envelope_version < 2:
            return head  # a version 1 record is a whole state already
        header = {**head.header(), "kind": "state", "base": head.revision,
                  "codec": self.codec,
                  "key_id": self.encryption.key_id if self.encryption else None}
        payload_json = dumps(payload)
        if self.codec == "json":
            return Envelope.model_validate({**header, "payload": payload})
        return self._sealed(header, payload_json).envelope

    @staticmethod
    def check_header(envelope: Envelope, fields: dict[str, Any], *, what: str) -> None:
        """Refuse a record whose header says what its payload (authenticated when
        encrypted) does not: the pipeline name, the status (and, for records of version 1
        that carry them, the timestamps)."""
        for name, default in (("pipeline_name", ""), ("status", "running")):
            if fields.get(name, default) != getattr(envelope, name):
                raise CorruptStateError(
                    f"{what}: the header says {name}={getattr(envelope, name)!r} but the payload"
                    f" says {fields.get(name, default)!r}; the record was altered"
                )
        if TIMESTAMPS_KEY in fields:
            check_timestamps(what, envelope, fields[TIMESTAMPS_KEY])

    def chain_outdated(self, chain: list[Envelope]) -> list[str]:
        """Why the records of a chain (its head last) differ from what this codec would write
        now: the head's versions, and how every record of the chain is stored (a record
        under an old key or codec is needed to read the head)."""
        reasons = self.outdated(chain[-1])
        for envelope in chain[:-1]:
            for reason in self.outdated(envelope, storage_only=True):
                if reason not in reasons:
                    reasons.append(reason)
        return reasons

    def outdated(self, envelope: Envelope, *, storage_only: bool = False) -> list[str]:
        """Why ``envelope`` differs from what this codec would write now (empty: current);
        ``storage_only``: only how it is stored (layout, codec, key), not its versions."""
        reasons: list[str] = []
        stored = envelope.stored_envelope_version
        if stored < ENVELOPE_VERSION:
            reasons.append(f"envelope format {stored} -> {ENVELOPE_VERSION}")
        if not storage_only and envelope.state_version < self.migrations.current_version:
            reasons.append(
                f"state schema {envelope.state_version} -> {self.migrations.current_version}"
            )
        current = {} if storage_only else self.registry.current_versions()
        written = {} if storage_only else self.registry.oldest_written_versions()
        for name, version in sorted(envelope.manifest.items()):
            known = current.get(name)
            if known is not None and version < written[name]:
                reasons.append(f"type {name} {version} -> {known}")
        if envelope.codec != self.codec:
            reasons.append(f"codec {envelope.codec} -> {self.codec}")
        elif self.encryption is not None and envelope.key_id != self.encryption.key_id:
            reasons.append(f"key {envelope.key_id} -> {self.encryption.key_id}")
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
