"""Checkpoint chains: a whole-state record, then deltas, each holding what one save changed.

The payload of a current (envelope version 2) whole-state record is::

    {"fields": <one tagged document: every WorkflowState field but the step history>,
     "history": [<one tagged document per step history entry>, ...]}

A history entry is its own document: it is encoded once, when it is first saved, and a later
save of the same run reuses that encoding (the entry object, the same one, is a record of
what its step produced, not a live value). So a save costs the encoding of the fields (the
context, the last output) and of the new entries, not of the whole history.

A delta's payload is::

    {"delta": {"base": b, "parent": r - 1, "fields": [edits], "keep": k,
               "history": [<documents of the entries after the first k>]}}

``fields`` are the edits (``._delta``) that turn the parent's fields document into this
one; the history is the parent's first ``k`` entries followed by the ones listed. ``base`` and
``parent`` repeat the header inside the payload, which encryption authenticates: a record
moved to another place of the chain is refused.

``ChainTip`` is what a backend remembers of the last record it wrote or read for a run,
to write the next save as a delta of it; only a tip that is still the stored head is used
(the backend checks inside its write's critical section), so a stale one costs a whole-state
record, never a wrong delta.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from flujo.exceptions import CorruptStateError, SerializationError
from flujo.serialization import (
    EncodingMemo,
    TypeRegistry,
    encode_with_manifest,
    merge_manifests,
)

from ._delta import apply_edits, diff
from ._envelope import format_timestamp
from ._jsonio import containers, dumps, loads

__all__ = [
    "MAX_CHAIN",
    "UNKNOWN",
    "ChainTip",
    "Delta",
    "History",
    "HistoryEntry",
    "Link",
    "checkpoint_label",
    "delta_payload",
    "encode_history",
    "rebuild",
    "state_data",
    "state_payload",
]

#: The source of a history entry read from the store: no object is the very one it was
#: encoded from (None is a value a history can hold, so it cannot say "unknown").
UNKNOWN: object = object()

#: The most deltas after one whole-state record: a save writes a whole-state record once the
#: deltas since the last one reach this many, or hold as many bytes as it does, so loading
#: the latest state reads at most about twice its size.
MAX_CHAIN = 1000


@dataclass
class HistoryEntry:
    """One step history entry as stored: its document and, lazily, that document's JSON.

    ``source`` is the object it was encoded from (``UNKNOWN`` for one read from the
    store): a later save finding the very same object at the same position reuses the
    encoding."""

    doc: Any
    manifest: dict[str, int]
    source: object = UNKNOWN
    _json: bytes | None = None
    _containers: int = -1

    @property
    def json(self) -> bytes:
        if self._json is None:
            self._json = dumps(self.doc)
        return self._json

    @property
    def containers(self) -> int:
        if self._containers < 0:
            self._containers = containers(self.json)
        return self._containers


@dataclass
class History:
    """A step history as encoded: its entries, the objects they were encoded from
    (``UNKNOWN`` where not known), and their total JSON size, container count and
    manifest."""

    entries: list[HistoryEntry] = field(default_factory=list)
    sources: list[object] = field(default_factory=list)
    size: int = 0
    containers: int = 0
    manifest: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: list[HistoryEntry], sources: list[object]) -> History:
        return cls(entries, sources, sum(len(entry.json) + 1 for entry in entries),
                   sum(entry.containers for entry in entries),
                   merge_manifests(*(entry.manifest for entry in entries)))

    def extended(self, entries: list[HistoryEntry], sources: list[object]) -> History:
        """This history with ``entries`` appended (only the new ones are looked at)."""
        added = History.of(entries, sources)
        return History(self.entries + entries, self.sources + sources,
                       self.size + added.size, self.containers + added.containers,
                       merge_manifests(self.manifest, added.manifest))


@dataclass
class ChainTip:
    """The last record a backend wrote or read for a run: enough to write the next save as
    a delta of it. It matches the stored head when revision and both timestamps agree."""

    revision: int
    created_at: datetime
    updated_at: datetime
    base: int
    snapshot_bytes: int
    chain_bytes: int
    chain_length: int
    #: The fields document as JSON: the encoder's output can share lists and dicts with the
    #: live context (which the next step changes in place), so the tip keeps the text.
    fields_json: bytes
    history: History = field(default_factory=History)
    #: What encoding that record wrote for the run's lists of records, for the next save to
    #: reuse (only the records changed since are written again).
    memo: EncodingMemo | None = None
    #: The fields document as data, once known: parsed from ``fields_json``, or made
    #: from the last tip's by the delta's edits (``Delta.after``). Never changed in place:
    #: tips one after the other share what the edits between them left alone.
    parsed: Any = None
    #: The bytes of its record beside the payload (its header, mostly); 0 when not known
    #: (an encrypted record) or when compression makes the record shorter than its payload.
    overhead: int = 0

    @property
    def fields(self) -> Any:
        """The fields document (see ``parsed``), parsed when first needed."""
        if self.parsed is None:
            self.parsed = loads(self.fields_json)
        return self.parsed

    def matches(self, revision: int, created_at: datetime, updated_at: datetime | None) -> bool:
        return (self.revision == revision and self.created_at == created_at
                and self.updated_at == updated_at)


def _common_prefix(first: list[Any], second: list[Any]) -> int:
    """How many leading elements of the two lists are the same objects (at C speed: this
    runs at every save, over the whole history)."""
    same = list(map(operator.is_, first, second))
    try:
        return same.index(False)
    except ValueError:
        return len(same)


def encode_history(entries: list[Any], tip: ChainTip | None, registry: TypeRegistry,
                   what: str) -> History:
    """Encode the step history, reusing the tip's encoding of every leading entry that is
    the very object it was encoded from."""
    known = tip.history if tip is not None else History()
    reused = _common_prefix(entries, known.sources)
    added: list[HistoryEntry] = []
    for position in range(reused, len(entries)):
        entry = entries[position]
        try:
            doc, manifest = encode_with_manifest(entry, registry=registry)
        except SerializationError as exc:
            exc.add_note(f"in step_history[{position}], while saving {what}")
            raise
        added.append(HistoryEntry(doc, manifest, source=entry))
    sources = list(entries[reused:])
    if reused == len(known.entries):
        return known.extended(added, sources)
    return History.of(known.entries[:reused] + added, known.sources[:reused] + sources)


def state_data(fields: Any, history: History) -> dict[str, Any]:
    """A whole-state payload as data (for a store that keeps payloads inline)."""
    return {"fields": fields, "history": [entry.doc for entry in history.entries]}


def state_payload(fields_json: bytes, history: History) -> bytes:
    """The JSON of a whole-state payload from its parts (already JSON)."""
    return b"".join((b'{"fields":', fields_json, b',"history":[',
                     b",".join(entry.json for entry in history.entries), b"]}"))


@dataclass(frozen=True)
class Delta:
    """A delta's payload (before the sealed copies of the header are added): its JSON and,
    for a store that keeps payloads inline, the same as data."""

    json: bytes
    data: dict[str, Any]
    tip: ChainTip | None = None  # the record it edits, and its edits as JSON (for after)
    edits_json: bytes = b""

    @functools.cached_property
    def after(self) -> Any:
        """The fields document after the edits, sharing what they left alone with the tip's
        (None when the tip's was never parsed and nothing changed): the next tip's. The
        edits are parsed from their JSON (the encoder's output may share lists and dicts with
        the live context), applied to copies of what they change."""
        if self.tip is None or not self.edits_json:
            return None if self.tip is None else self.tip.parsed
        return apply_edits(self.tip.fields, loads(self.edits_json)["fields"],
                           what="the delta being written", copying=True)


def delta_payload(tip: ChainTip, fields: Any, history: History, revision: int,
                  fields_json: bytes | None = None) -> Delta:
    """The delta that turns the tip's record into ``fields`` + ``history``; ``fields_json``
    (``fields`` as JSON) when known: the same bytes as the tip's are the same document, and
    the tip's is then not parsed to be compared."""
    known, now = tip.history.entries, history.entries
    keep = _common_prefix(known, now)
    while keep < len(known) and keep < len(now) and known[keep].json == now[keep].json:
        keep += 1
    edits = [] if fields_json == tip.fields_json else diff(tip.fields, fields)
    body = {"base": tip.base, "parent": revision - 1,
            "parent_at": format_timestamp(tip.updated_at), "keep": keep, "fields": edits}
    head = dumps(body)
    added = now[keep:]
    body["history"] = [entry.doc for entry in added]
    text = b'{"delta":' + head[:-1] + b',"history":[' + b",".join(
        entry.json for entry in added) + b"]}}"
    return Delta(text, {"delta": body}, tip, head if edits else b"")


def checkpoint_label(fields: dict[str, Any]) -> tuple[str | None, int | None]:
    """The step a state records and its attempt count, for the record's header: the step
    failing or retrying (``failure``), else the one the run waits on (``pause``), else the
    last one finished. Read from the models' ``__dict__`` (no user code runs: no property,
    no ``__getattr__``)."""
    failure = fields.get("failure")
    if isinstance(failure, BaseModel):
        name, attempts = failure.__dict__.get("name"), failure.__dict__.get("attempts")
        if type(name) is str:
            return name, attempts if type(attempts) is int and attempts >= 1 else None
    pause = fields.get("pause")
    if isinstance(pause, BaseModel) and type(pause.__dict__.get("step")) is str:
        return pause.__dict__["step"], None
    history = fields.get("step_history")
    if isinstance(history, list) and history and isinstance(history[-1], BaseModel):
        last = history[-1].__dict__
        name, attempts = last.get("name"), last.get("attempts")
        if type(name) is str:
            return name, attempts if type(attempts) is int and attempts >= 1 else None
    return None, None


@dataclass(frozen=True)
class Link:
    """A delta of a chain as read: its revision and base (from its header), the time its
    parent was saved (the header of the record before it) and its payload."""

    revision: int
    base: int
    parent_at: str
    payload: Any


def rebuild(first: Any, deltas: list[Link], *, base: int, what: str) -> tuple[Any, list[Any]]:
    """The fields document and history documents after applying ``deltas`` to the
    whole-state payload ``first`` (revision ``base``), in revision order. The payloads are
    owned: they are changed in place.

    Each delta names, inside its payload (authenticated when encrypted), its chain's base,
    its parent's revision and its parent's save time: a record moved within or between
    chains, or another record put in its parent's place, is refused."""
    fields, history = split_state(first, what=f"{what}, revision {base}")
    for link in deltas:
        where = f"{what}, revision {link.revision}"
        payload = link.payload
        body = payload.get("delta") if isinstance(payload, dict) else None
        if not isinstance(body, dict):
            raise CorruptStateError(f"{where}: the header says 'delta' but the payload holds"
                                    " no delta")
        expected = {"base": link.base, "parent": link.revision - 1,
                    "parent_at": link.parent_at}
        found = {key: body.get(key) for key in expected}
        if found != expected or link.base != base:
            raise CorruptStateError(
                f"{where}: the delta was written as {found}, but it is stored at"
                f" {expected} of a chain starting at revision {base}; a record was moved or"
                " replaced")
        keep, added = body.get("keep"), body.get("history")
        if type(keep) is not int or not 0 <= keep <= len(history) or type(added) is not list:
            raise CorruptStateError(f"{where}: the delta's history part is damaged")
        fields = apply_edits(fields, body.get("fields"), what=where)
        del history[keep:]
        history.extend(added)
    return fields, history


_STATE_KEYS = frozenset({"fields", "history", "flujo_timestamps", "flujo_label"})


def split_state(payload: Any, *, what: str) -> tuple[Any, list[Any]]:
    """The fields document and the history documents of a current whole-state payload."""
    if not isinstance(payload, dict) or not isinstance(payload.get("fields"), dict) \
            or not isinstance(payload.get("history"), list):
        raise CorruptStateError(f"{what}: the payload is not a whole state (an object with"
                                " 'fields' and 'history')")
    unknown = sorted(set(payload) - _STATE_KEYS)
    if unknown:
        raise CorruptStateError(f"{what}: the payload holds keys a whole state has not:"
                                f" {str(unknown)[:120]}")
    return payload["fields"], payload["history"]
