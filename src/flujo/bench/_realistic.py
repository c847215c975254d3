"""Workloads shaped like what applications keep in a context, each beside pydantic told the
exact type (``TypeAdapter(T).dump_json`` / ``validate_json``).

pydantic told the type is the bar, not the goal: it is lossy where flujo is not (a ZoneInfo
datetime comes back as a fixed offset, an ``Any`` value as its JSON type), so the benchmark
checks every type of flujo's result and reports pydantic's as it is.

- ``agents``: a conversation of chat messages with ``Literal`` roles, optional fields, tool
  calls with ``dict[str, Any]`` arguments and per-message metadata, parsed from the JSON an
  LLM API returns, as SDKs parse it (absent optional fields stay unset);
- ``events``: an event stream with UUIDs, enums, decimals and datetimes in mixed IANA zones;
- ``wide``: records of a 60-field model;
- ``tree``: a recursive model (depth 8, fanout 3: 3,280 nodes);
- ``plain``: JSON types only (about 5 MB at the full size).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, TypeAdapter, create_model

from ..exceptions import InvalidArgumentError

__all__ = ["REALISTIC", "AgainstPydantic", "RealisticWorkload", "Scaling", "against_pydantic",
           "build_realistic", "render_realistic", "scaling"]

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
          "juliet", "kilo", "lima", "mike", "november", "oscar", "papa")
_ZONES = tuple(ZoneInfo(name) for name in ("Europe/Paris", "America/New_York",
                                           "Asia/Tokyo", "Australia/Sydney", "UTC"))


class FunctionCall(BaseModel):
    name: str
    arguments: dict[str, Any]


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    usage: Usage | None = None
    created_at: datetime
    metadata: dict[str, Any] = Field(default_factory=dict)


class Conversation(BaseModel):
    conversation_id: UUID
    model: str
    messages: list[ChatMessage]


class EventKind(Enum):
    CREATED = "created"
    UPDATED = "updated"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"


class Event(BaseModel):
    event_id: UUID
    kind: EventKind
    at: datetime
    actor: str
    amount: Decimal | None
    attributes: dict[str, str]


class EventLog(BaseModel):
    stream: str
    events: list[Event]


_WIDE_TYPES: tuple[tuple[Any, Callable[[random.Random, int], Any]], ...] = (
    (str, lambda rng, i: f"{rng.choice(_WORDS)}-{i}"),
    (int, lambda rng, i: rng.randrange(-10**9, 10**9)),
    (float, lambda rng, i: rng.random() * 1000),
    (bool, lambda rng, i: rng.random() < 0.5),
    (datetime, lambda rng, i: _EPOCH + timedelta(seconds=rng.randrange(10**8))),
    (date, lambda rng, i: date(2026, 1, 1) + timedelta(days=rng.randrange(3000))),
    (Decimal, lambda rng, i: Decimal(rng.randrange(10**8)).scaleb(-2)),
    (UUID, lambda rng, i: UUID(int=rng.getrandbits(128), version=4)),
    (int | None, lambda rng, i: None if rng.random() < 0.3 else rng.randrange(1000)),
    (list[str], lambda rng, i: rng.sample(_WORDS, 3)),
)
Wide: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "Wide", __module__=__name__,
    **{f"field_{n:02d}": (_WIDE_TYPES[n % len(_WIDE_TYPES)][0], ...) for n in range(60)})


class WideBatch(BaseModel):
    rows: list[Wide]


class Node(BaseModel):
    name: str
    weight: float
    children: list[Node]


def _when(rng: random.Random) -> datetime:
    return _EPOCH + timedelta(seconds=rng.randrange(10**7), microseconds=rng.randrange(10**6))


def _message(rng: random.Random, i: int) -> dict[str, Any]:
    """A message as an LLM API returns it: optional fields absent rather than null (so the
    parsed model has them unset, as SDK objects do)."""
    role = ("system", "user", "assistant", "tool")[0 if i == 0 else 1 + i % 3]
    message: dict[str, Any] = {"role": role, "created_at": _when(rng).isoformat(),
                               "metadata": {"trace": f"{rng.getrandbits(64):016x}",
                                            "latency_ms": rng.random() * 900,
                                            "cached": rng.random() < 0.2}}
    if role == "assistant" and rng.random() < 0.6:
        message["content"] = None
        message["tool_calls"] = [
            {"id": f"call_{rng.getrandbits(48):012x}", "type": "function", "function": {
                "name": rng.choice(("search", "lookup_order", "send_email")),
                "arguments": {"query": " ".join(rng.sample(_WORDS, 3)),
                              "limit": rng.randrange(50),
                              "filters": {"region": rng.choice(_WORDS), "strict": True},
                              "ids": [rng.randrange(10**6) for _ in range(3)]}}}
            for _ in range(rng.randrange(1, 3))]
    else:
        message["content"] = " ".join(rng.choices(_WORDS, k=25))
    if role == "assistant":
        message["usage"] = {"prompt_tokens": rng.randrange(4000),
                            "completion_tokens": rng.randrange(800)}
    if role == "tool":
        message["name"] = "lookup"
        message["tool_call_id"] = f"call_{rng.getrandbits(48):012x}"
    return message


def _event(rng: random.Random) -> Event:
    return Event(event_id=UUID(int=rng.getrandbits(128), version=4),
                 kind=rng.choice(list(EventKind)),
                 at=_when(rng).astimezone(rng.choice(_ZONES)), actor=rng.choice(_WORDS),
                 amount=Decimal(rng.randrange(10**7)).scaleb(-2) if rng.random() < 0.7
                 else None,
                 attributes={"source": rng.choice(_WORDS), "region": rng.choice(_WORDS)})


def _wide(rng: random.Random, i: int) -> BaseModel:
    return Wide(**{f"field_{n:02d}": _WIDE_TYPES[n % len(_WIDE_TYPES)][1](rng, i)
                   for n in range(60)})


def _tree(rng: random.Random, depth: int, fanout: int) -> Node:
    children = [] if depth == 1 else [_tree(rng, depth - 1, fanout) for _ in range(fanout)]
    return Node(name=rng.choice(_WORDS), weight=rng.random(), children=children)


def _plain(rng: random.Random, count: int) -> dict[str, Any]:
    return {"version": 3, "items": [
        {"id": i, "title": " ".join(rng.choices(_WORDS, k=6)), "score": rng.random(),
         "flags": [rng.random() < 0.5 for _ in range(3)], "parent": None if i % 5 else i - 1,
         "dims": {"w": rng.randrange(1000), "h": rng.randrange(1000)}}
        for i in range(count)]}


@dataclass(frozen=True)
class RealisticWorkload:
    name: str
    value: Any
    exact_type: Any  # what pydantic is told
    records: int


# name -> (records at full size, records for --quick)
REALISTIC: dict[str, tuple[int, int]] = {
    "agents": (200, 20), "events": (5_000, 200), "wide": (2_000, 50), "tree": (8, 4),
    "plain": (25_000, 500),
}


def build_realistic(name: str, records: int) -> RealisticWorkload:
    """The workload ``name`` with ``records`` records (the tree's depth for ``tree``)."""
    rng = random.Random(11)
    value: Any
    exact: Any
    if name == "agents":
        value = Conversation.model_validate({
            "conversation_id": str(UUID(int=rng.getrandbits(128), version=4)),
            "model": "gpt-test", "messages": [_message(rng, i) for i in range(records)]})
        exact = Conversation
    elif name == "events":
        value = EventLog(stream="orders", events=[_event(rng) for _ in range(records)])
        exact = EventLog
    elif name == "wide":
        value = WideBatch(rows=[_wide(rng, i) for i in range(records)])
        exact = WideBatch
    elif name == "tree":
        value = _tree(rng, records, 3)
        exact = Node
    elif name == "plain":
        value = _plain(rng, records)
        exact = dict[str, Any]
    else:
        raise InvalidArgumentError(
            f"unknown workload {name!r}; choose from {sorted(REALISTIC)}")
    return RealisticWorkload(name, value, exact, records)


@dataclass
class AgainstPydantic:
    """One workload: median seconds per call of flujo and of pydantic told the type."""

    workload: str
    records: int
    flujo_encode_s: float
    flujo_decode_s: float
    pydantic_encode_s: float
    pydantic_decode_s: float
    flujo_lossless: bool
    pydantic_lossless: bool
    flujo_bytes: int
    pydantic_bytes: int

    @property
    def encode_ratio(self) -> float:
        return self.flujo_encode_s / self.pydantic_encode_s

    @property
    def decode_ratio(self) -> float:
        return self.flujo_decode_s / self.pydantic_decode_s


def _interleaved(calls: dict[str, Callable[[], Any]], target_s: float,
                 rounds: int) -> dict[str, float]:
    """Median seconds per call of each of ``calls``, timed in interleaved rounds (a burst of
    load on a shared machine then disturbs every contestant alike)."""
    numbers: dict[str, int] = {}
    for label, call in calls.items():
        started = time.perf_counter()
        call()
        numbers[label] = max(1, int(target_s / rounds / max(time.perf_counter() - started,
                                                             1e-7)))
    samples: dict[str, list[float]] = {label: [] for label in calls}
    for _ in range(rounds):
        for label, call in calls.items():
            number = numbers[label]
            started = time.perf_counter()
            for _ in range(number):
                call()
            samples[label].append((time.perf_counter() - started) / number)
    return {label: statistics.median(times) for label, times in samples.items()}


def against_pydantic(name: str, records: int, *, target_s: float,
                     rounds: int) -> AgainstPydantic:
    """flujo (``serialize_to_bytes``, ``deserialize_from_json``: bytes to objects, as
    pydantic's) beside ``TypeAdapter(T).dump_json`` / ``validate_json`` on the workload
    ``name``."""
    from ..serialization import deserialize_from_json, serialize_to_bytes
    from . import same

    workload = build_realistic(name, records)
    value = workload.value
    adapter: TypeAdapter[Any] = TypeAdapter(workload.exact_type)
    ours = serialize_to_bytes(value)
    theirs = adapter.dump_json(value)
    times = _interleaved({
        "flujo encode": lambda: serialize_to_bytes(value),
        "flujo decode": lambda: deserialize_from_json(ours),
        "pydantic encode": lambda: adapter.dump_json(value),
        "pydantic decode": lambda: adapter.validate_json(theirs),
    }, target_s, rounds)
    return AgainstPydantic(
        name, records, times["flujo encode"], times["flujo decode"], times["pydantic encode"],
        times["pydantic decode"], same(deserialize_from_json(ours), value),
        same(adapter.validate_json(theirs), value), len(ours), len(theirs))


@dataclass
class Scaling:
    """Per-record times at a small and a large size, and peak memory at the large one."""

    workload: str
    small: int
    large: int
    encode_small_s: float
    encode_large_s: float
    decode_small_s: float
    decode_large_s: float
    # pydantic told the type, per record, at the same sizes: the growth no serializer avoids
    # (memory, caches), as a yardstick
    pydantic_encode_small_s: float
    pydantic_encode_large_s: float
    pydantic_decode_small_s: float
    pydantic_decode_large_s: float
    # peak Python heap (tracemalloc, bytes) of one call at the large size
    flujo_encode_peak: int
    flujo_decode_peak: int
    pydantic_encode_peak: int
    pydantic_decode_peak: int
    # peak resident memory (bytes) of one call at the large size, each in a fresh process
    # (``_resident``: what tracemalloc misses or overstates); None where not measurable
    flujo_encode_resident: int | None = None
    flujo_decode_resident: int | None = None
    pydantic_encode_resident: int | None = None
    pydantic_decode_resident: int | None = None


def _per_record(call: Callable[[], Any], records: int, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) / records


def _peak(call: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def scaling(name: str, small: int, large: int) -> Scaling:
    """Per-record encode and decode time of flujo at ``small`` and ``large`` records (the
    garbage collector on, as in an application), and the peak heap of one encode and one
    decode of flujo and of pydantic told the type at ``large``."""
    from ..serialization import deserialize_from_json, serialize_to_bytes

    def calls(records: int) -> tuple[list[Callable[[], Any]], bytes, bytes]:
        """flujo's encode and decode, then pydantic's, of the workload at ``records``; and
        the bytes the two decodes read."""
        workload = build_realistic(name, records)
        value = workload.value
        adapter: TypeAdapter[Any] = TypeAdapter(workload.exact_type)
        ours = serialize_to_bytes(value)
        theirs = adapter.dump_json(value)
        return [lambda: serialize_to_bytes(value), lambda: deserialize_from_json(ours),
                lambda: adapter.dump_json(value), lambda: adapter.validate_json(theirs)], \
            ours, theirs

    at_small = [_per_record(call, small, 5) for call in calls(small)[0]]
    large_calls, ours, theirs = calls(large)  # built once: timed, then its peaks measured
    at_large = [_per_record(call, large, 3) for call in large_calls]
    peaks = [_peak(call) for call in large_calls]
    with tempfile.TemporaryDirectory(prefix="flujo-bench-") as folder:
        inputs = {"flujo-decode": Path(folder, "flujo.json"),
                  "pydantic-decode": Path(folder, "pydantic.json")}
        inputs["flujo-decode"].write_bytes(ours)
        inputs["pydantic-decode"].write_bytes(theirs)
        del large_calls, ours, theirs  # the fresh processes below need the memory more
        resident = _resident_peaks(name, large, inputs)
    return Scaling(
        name, small, large,
        encode_small_s=at_small[0], encode_large_s=at_large[0],
        decode_small_s=at_small[1], decode_large_s=at_large[1],
        pydantic_encode_small_s=at_small[2], pydantic_encode_large_s=at_large[2],
        pydantic_decode_small_s=at_small[3], pydantic_decode_large_s=at_large[3],
        flujo_encode_peak=peaks[0], flujo_decode_peak=peaks[1],
        pydantic_encode_peak=peaks[2], pydantic_decode_peak=peaks[3],
        flujo_encode_resident=resident["flujo-encode"],
        flujo_decode_resident=resident["flujo-decode"],
        pydantic_encode_resident=resident["pydantic-encode"],
        pydantic_decode_resident=resident["pydantic-decode"])


def _resident_peaks(name: str, records: int,
                    inputs: dict[str, Path]) -> dict[str, int | None]:
    """The peak resident memory of each call of the scaling run, each in a fresh process
    (``inputs``: the file of bytes each decode reads)."""
    from ._resident import CALLS, measurable, resident_peak

    if not measurable():
        return dict.fromkeys(CALLS)
    return {call: resident_peak(name, records, call, inputs.get(call)) for call in CALLS}


def render_realistic(rows: list[AgainstPydantic], scaled: Scaling | None) -> str:
    lines = ["### against pydantic told the exact type", "",
             "Each ratio is flujo's time (`serialize_to_bytes` / `deserialize_from_json`, "
             "bytes to objects) over pydantic's (`TypeAdapter(T).dump_json` / "
             "`validate_json`), measured in interleaved rounds; \"types kept\" compares every "
             "value, its type, time zone, `model_fields_set` and extras with the original.", "",
             "| workload | records | flujo encode | flujo decode | pydantic encode | "
             "pydantic decode | encode / pydantic | decode / pydantic | flujo types kept | "
             "pydantic types kept | bytes flujo / pydantic |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r.workload} | {r.records:,} | {_ms(r.flujo_encode_s)} | "
            f"{_ms(r.flujo_decode_s)} | {_ms(r.pydantic_encode_s)} | "
            f"{_ms(r.pydantic_decode_s)} | {r.encode_ratio:.2f}x | {r.decode_ratio:.2f}x | "
            f"{'yes' if r.flujo_lossless else 'no'} | {'yes' if r.pydantic_lossless else 'no'}"
            f" | {r.flujo_bytes:,} / {r.pydantic_bytes:,} |")
    lines.append("")
    if scaled is not None:
        s = scaled
        lines += [f"### scaling and memory ({s.workload})", "",
                  f"| | {s.small:,} records | {s.large:,} records | large / small |",
                  "|---|---|---|---|",
                  f"| flujo encode per record | {s.encode_small_s * 1e6:.2f} µs | "
                  f"{s.encode_large_s * 1e6:.2f} µs | "
                  f"{s.encode_large_s / s.encode_small_s:.2f}x |",
                  f"| flujo decode per record | {s.decode_small_s * 1e6:.2f} µs | "
                  f"{s.decode_large_s * 1e6:.2f} µs | "
                  f"{s.decode_large_s / s.decode_small_s:.2f}x |",
                  f"| pydantic `dump_json` per record | {s.pydantic_encode_small_s * 1e6:.2f}"
                  f" µs | {s.pydantic_encode_large_s * 1e6:.2f} µs | "
                  f"{s.pydantic_encode_large_s / s.pydantic_encode_small_s:.2f}x |",
                  f"| pydantic `validate_json` per record | "
                  f"{s.pydantic_decode_small_s * 1e6:.2f} µs | "
                  f"{s.pydantic_decode_large_s * 1e6:.2f} µs | "
                  f"{s.pydantic_decode_large_s / s.pydantic_decode_small_s:.2f}x |", "",
                  f"Peak heap of one call at {s.large:,} records (tracemalloc): flujo encode "
                  f"{s.flujo_encode_peak / 2**20:.1f} MB against pydantic `dump_json` "
                  f"{s.pydantic_encode_peak / 2**20:.1f} MB "
                  f"({s.flujo_encode_peak / max(s.pydantic_encode_peak, 1):.2f}x); flujo "
                  f"decode {s.flujo_decode_peak / 2**20:.1f} MB against `validate_json` "
                  f"{s.pydantic_decode_peak / 2**20:.1f} MB "
                  f"({s.flujo_decode_peak / max(s.pydantic_decode_peak, 1):.2f}x).", "",
                  _render_resident(s), ""]
    return "\n".join(lines)


def _render_resident(s: Scaling) -> str:
    if s.flujo_encode_resident is None or s.flujo_decode_resident is None or \
            s.pydantic_encode_resident is None or s.pydantic_decode_resident is None:
        return ("Peak resident memory of one call: not measured (it needs Linux's"
                " `/proc/self/clear_refs`).")
    return (f"Peak resident memory of one call at {s.large:,} records, each in a fresh "
            "process (`VmHWM`; it counts pydantic-core's Rust buffers, which tracemalloc "
            "does not see, and not orjson's reserved but unwritten output buffer, which "
            f"tracemalloc counts): flujo encode {s.flujo_encode_resident / 2**20:.1f} MB "
            f"against pydantic `dump_json` {s.pydantic_encode_resident / 2**20:.1f} MB "
            f"({s.flujo_encode_resident / max(s.pydantic_encode_resident, 1):.2f}x); flujo "
            f"decode {s.flujo_decode_resident / 2**20:.1f} MB against `validate_json` "
            f"{s.pydantic_decode_resident / 2**20:.1f} MB "
            f"({s.flujo_decode_resident / max(s.pydantic_decode_resident, 1):.2f}x).")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"
