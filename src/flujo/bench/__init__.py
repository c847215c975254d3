"""flujo's own benchmark: ``python -m flujo.bench [--quick] [--out results.md]``.

Measures serialize / deserialize (validation on and off) / save / load on the small, medium,
large and custom payloads; (``--realistic``) workloads shaped like application data against
pydantic told the exact type, with (``--scale``) per-record time and peak memory as the
records grow; (``--savers``) saves and loads against LangGraph's checkpoint savers; and
(``--steps``) the N-step append pipeline of checkpoint history
(bytes and time per step as a run grows, see ``_steps``), beside the orjson limit line (the
same data pre-reduced to JSON types), the ``mode="json"`` path of earlier flujo releases,
stdlib ``json`` and pydantic's ``dump_json``. Reports median time per call, ratio to the limit
line, output size, peak memory (large payload) and whether every type came back, as Markdown
tables.

Times on a shared machine are noisy: compare ratios from one run, not absolute numbers
across runs. The benchmark is not a test; CI runs ``--quick`` only to prove it completes and
that the flujo rows are lossless.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter

from ..serialization import (
    TypeRegistry,
    compiled_modules,
    safe_deserialize,
    safe_serialize,
    serialize_to_bytes,
)
from ._workloads import SIZES, BenchContext, Money, build, register_bench_types, to_native

__all__ = ["Row", "main", "run"]


@dataclass
class Row:
    workload: str
    contestant: str
    encode_s: float
    decode_s: float | None
    size: int
    lossless: bool
    encode_ratio: float = 0.0
    decode_ratio: float | None = None


def _median_time(call: Callable[[], Any], target_s: float, rounds: int) -> float:
    started = time.perf_counter()
    call()
    single = max(time.perf_counter() - started, 1e-7)
    number = max(1, int(target_s / rounds / single))
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(number):
            call()
        samples.append((time.perf_counter() - started) / number)
    return statistics.median(samples)


def same(a: Any, b: Any) -> bool:
    """Equal with identical types at every level."""
    if type(a) is not type(b):
        return False
    if isinstance(a, BaseModel):
        return a.model_fields_set == b.model_fields_set and same(
            a.model_extra, b.model_extra) and all(
            same(getattr(a, k), getattr(b, k)) for k in type(a).__pydantic_fields__)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, datetime):  # the same instant in another zone is another value
        return a == b and a.fold == b.fold and _same_zone(a.tzinfo, b.tzinfo)
    return bool(a == b)


def _same_zone(a: tzinfo | None, b: tzinfo | None) -> bool:
    # flujo reads pydantic's fixed-offset TzInfo back as the datetime.timezone of the same
    # offset (docs/format.md); a ZoneInfo must come back as itself
    fixed = (timezone, *(type(z) for z in (a, b) if type(z).__module__.startswith("pydantic")))
    if a is not None and b is not None and isinstance(a, fixed) and isinstance(b, fixed):
        return a.utcoffset(None) == b.utcoffset(None)
    return type(a) is type(b) and a == b


def _contestants(obj: BenchContext, native: Any, registry: TypeRegistry,
                 custom: bool) -> list[tuple[str, Callable[[], bytes], Callable[[bytes], Any],
                                             bool]]:
    """(label, encode, decode, reversible) for one workload."""
    rows: list[tuple[str, Callable[[], bytes], Callable[[bytes], Any], bool]] = [
        ("orjson limit line (pre-converted JSON)", lambda: orjson.dumps(native), orjson.loads,
         False),
        ("flujo safe_serialize + orjson", lambda: orjson.dumps(safe_serialize(
            obj, registry=registry)), lambda b: safe_deserialize(orjson.loads(b),
                                                                 registry=registry), True),
        ("flujo serialize_to_bytes", lambda: serialize_to_bytes(obj, registry=registry),
         lambda b: safe_deserialize(orjson.loads(b), registry=registry), True),
    ]
    if custom:
        rows.append(("flujo, validate=False", lambda: orjson.dumps(safe_serialize(
            obj, registry=registry, validate=False)),
            lambda b: safe_deserialize(orjson.loads(b), registry=registry), True))
    adapter = TypeAdapter(BenchContext)

    def fallback(value: Any) -> Any:
        return {"amount": str(value.amount), "currency": value.currency} \
            if isinstance(value, Money) else str(value)

    rows += [
        ('flujo mode="json" (earlier flujo)', lambda: orjson.dumps(safe_serialize(
            obj, mode="json", registry=registry)), orjson.loads, False),
        ("stdlib json (pre-converted)", lambda: json.dumps(native).encode(), json.loads, False),
        ("pydantic TypeAdapter dump_json", lambda: adapter.dump_json(obj, fallback=fallback),
         adapter.validate_json, False),
    ]
    return rows


def bench_workload(name: str, *, records: int | None, target_s: float,
                   rounds: int) -> list[Row]:
    registry = TypeRegistry()
    register_bench_types(registry)
    obj = build(name, records)
    native = to_native(obj)
    rows: list[Row] = []
    for label, encode, decode, reversible in _contestants(obj, native, registry,
                                                          name == "custom"):
        payload = encode()
        decoded = decode(payload)
        rows.append(Row(name, label, _median_time(encode, target_s, rounds),
                        _median_time(functools.partial(decode, payload), target_s, rounds),
                        len(payload), reversible and same(decoded, obj)))
    limit = rows[0]
    for row in rows:
        row.encode_ratio = row.encode_s / limit.encode_s
        if row.decode_s is not None and limit.decode_s:
            row.decode_ratio = row.decode_s / limit.decode_s
    return rows


def peak_memory(records: int) -> dict[str, tuple[float, float]]:
    """Peak Python heap (MB) of one encode and one decode, flujo and the limit line."""
    registry = TypeRegistry()
    obj = build("large", records)
    native = to_native(obj)
    result: dict[str, tuple[float, float]] = {}
    contestants: list[tuple[str, Callable[[], bytes], Callable[[bytes], Any]]] = [
        ("orjson limit line", lambda: orjson.dumps(native), orjson.loads),
        ("flujo", lambda: orjson.dumps(safe_serialize(obj, registry=registry)),
         lambda b: safe_deserialize(orjson.loads(b), registry=registry)),
    ]
    for label, encode, decode in contestants:
        tracemalloc.start()
        payload = encode()
        encode_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        decode(payload)
        decode_peak = tracemalloc.get_traced_memory()[1] - before
        tracemalloc.stop()
        result[label] = (encode_peak / 2**20, decode_peak / 2**20)
    return result


def bench_backends(kinds: Sequence[str], *, records: int, target_s: float,
                   rounds: int) -> list[tuple[str, str, float, float]]:
    """(backend, workload, saves/s, loads/s)."""
    from ..state import FileBackend, InMemoryBackend, PostgresBackend, SQLiteBackend

    results = []
    with tempfile.TemporaryDirectory() as folder:
        for kind in kinds:
            for workload in ("small", "medium"):
                state = {"run_id": "bench", "pipeline_name": "bench",
                         "pipeline_context": dict(build(workload, records if workload ==
                                                        "medium" else None).scratchpad)}
                cleanup: Callable[[], None] | None = None
                if kind == "memory":
                    backend: Any = InMemoryBackend()
                elif kind == "file":
                    backend = FileBackend(Path(folder) / f"files-{workload}")
                elif kind == "sqlite":
                    backend = SQLiteBackend(Path(folder) / f"{workload}.db")
                else:
                    dsn = os.environ.get("FLUJO_BENCH_POSTGRES_DSN",
                                         "postgresql://postgres@127.0.0.1:5432/test")
                    schema = f"flujo_bench_{uuid.uuid4().hex[:10]}"
                    backend = PostgresBackend(dsn, schema=schema)
                    cleanup = _dropper(dsn, schema)
                try:
                    save, load = _time_backend(backend, state, target_s, rounds)
                finally:
                    if cleanup is not None:
                        cleanup()
                results.append((kind, workload, 1 / save, 1 / load))
    return results


def _time_backend(backend: Any, state: dict[str, Any], target_s: float,
                  rounds: int) -> tuple[float, float]:
    loop = asyncio.new_event_loop()
    try:
        save = _median_time(lambda: loop.run_until_complete(backend.save_state("bench", state)),
                            target_s, rounds)
        load = _median_time(lambda: loop.run_until_complete(backend.load_state("bench")),
                            target_s, rounds)
        loop.run_until_complete(backend.close())
    finally:
        loop.close()
    return save, load


def _dropper(dsn: str, schema: str) -> Callable[[], None]:
    def drop() -> None:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return drop


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def render(rows: list[Row], memory: dict[str, tuple[float, float]] | None,
           backends: list[tuple[str, str, float, float]], sizes: dict[str, int]) -> str:
    compiled = compiled_modules()
    lines = [f"Python {platform.python_version()} on {platform.machine()}, "
             f"{os.cpu_count()} CPUs; serialization core "
             f"{'compiled (mypyc)' if compiled else 'pure Python'}; records: "
             + ", ".join(f"{k} {v}" for k, v in sizes.items()), ""]
    for workload in dict.fromkeys(r.workload for r in rows):
        lines += [f"### {workload}", "",
                  "| contestant | encode | decode | enc / limit | dec / limit | bytes | "
                  "types kept |", "|---|---|---|---|---|---|---|"]
        for r in (r for r in rows if r.workload == workload):
            decode_ratio = f"{r.decode_ratio:.1f}x" if r.decode_ratio is not None else "-"
            lines.append(f"| {r.contestant} | {_fmt_time(r.encode_s)} | "
                         f"{_fmt_time(r.decode_s)} | {r.encode_ratio:.1f}x | {decode_ratio} | "
                         f"{r.size:,} | {'yes' if r.lossless else 'no'} |")
        lines.append("")
    if memory:
        lines += ["### peak memory, large payload (tracemalloc, MB)", "",
                  "| contestant | encode | decode |", "|---|---|---|"]
        lines += [f"| {k} | {e:.1f} | {d:.1f} |" for k, (e, d) in memory.items()]
        lines.append("")
    if backends:
        lines += ["### backends", "", "| backend | state | saves/s | loads/s |",
                  "|---|---|---|---|"]
        lines += [f"| {k} | {w} | {s:,.0f} | {lo:,.0f} |" for k, w, s, lo in backends]
        lines.append("")
    return "\n".join(lines)


def run(workloads: Sequence[str], backends: Sequence[str], *, quick: bool,
        steps: Sequence[str] = (), realistic: Sequence[str] = (),
        scale: int = 0, savers: Sequence[str] = ()) -> tuple[str, bool]:
    """Run the benchmark; returns the Markdown report and whether the flujo rows were lossless.
    ``steps``: the backends to run the N-step append pipeline on (see ``_steps``);
    ``realistic``: the workloads measured against pydantic told the type (``_realistic``);
    ``scale``: the records of the scaling and memory run of the events workload (0: none);
    ``savers``: the stores (sqlite, postgres) to measure against LangGraph's savers on."""
    sizes = {w: (min(SIZES[w], 50) if quick else SIZES[w]) for w in workloads}
    target_s, rounds = (0.02, 3) if quick else (0.5, 7)
    rows: list[Row] = []
    for workload in workloads:
        rows += bench_workload(workload, records=sizes[workload], target_s=target_s,
                               rounds=rounds)
    memory = peak_memory(sizes["large"]) if "large" in workloads else None
    backend_rows = bench_backends(backends, records=sizes.get("medium", 1000) if not quick
                                  else 50, target_s=target_s, rounds=rounds) if backends else []
    lossless = all(r.lossless for r in rows if r.contestant.startswith("flujo safe"))
    report = render(rows, memory, backend_rows, sizes)
    if realistic:
        from ._realistic import REALISTIC, against_pydantic, render_realistic, scaling

        against = [against_pydantic(name, REALISTIC[name][1 if quick else 0],
                                    target_s=target_s, rounds=rounds) for name in realistic]
        lossless = lossless and all(r.flujo_lossless for r in against)
        scaled = scaling("events", 1_000, scale) if scale else None
        report += "\n" + render_realistic(against, scaled)
    if savers:
        from ._savers import bench_savers, render_savers

        report += "\n" + render_savers(*bench_savers(list(savers), quick=quick))
    if steps:
        from ._steps import bench_steps, render_steps

        report += "\n" + render_steps(*bench_steps(steps, quick=quick))
    return report, lossless


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flujo.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny payloads, few rounds")
    parser.add_argument("--workloads", default="small,medium,large,custom")
    parser.add_argument("--backends", default="memory,file,sqlite,postgres",
                        help="comma-separated; empty for none")
    parser.add_argument("--steps", default="file,sqlite,postgres",
                        help="backends to run the N-step append pipeline on (checkpoint"
                             " history: bytes and time per step as a run grows); empty for"
                             " none")
    parser.add_argument("--realistic", default="agents,events,wide,tree,plain",
                        help="workloads shaped like application data, each measured against"
                             " pydantic told the exact type; empty for none")
    parser.add_argument("--scale", type=int, default=None,
                        help="records of the events workload's scaling and memory run"
                             " (per-record time against 1,000 records; peak heap and peak"
                             " resident memory against pydantic); default 300000, 5000 with"
                             " --quick, 0 for none")
    parser.add_argument("--savers", default="sqlite,postgres",
                        help="stores on which flujo's saves and loads are measured against"
                             " LangGraph's checkpoint savers (pip install 'flujo[bench]');"
                             " empty for none")
    parser.add_argument("--out", help="also write the Markdown report to this file")
    args = parser.parse_args(argv)
    workloads = [w for w in args.workloads.split(",") if w]
    unknown = set(workloads) - set(SIZES)
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}; choose from {sorted(SIZES)}")
    steps = [b for b in args.steps.split(",") if b]
    unknown = set(steps) - {"file", "sqlite", "postgres"}
    if unknown:
        parser.error(f"--steps: unknown backends {sorted(unknown)}; choose from file, sqlite,"
                     " postgres")
    from ._realistic import REALISTIC

    realistic = [w for w in args.realistic.split(",") if w]
    unknown = set(realistic) - set(REALISTIC)
    if unknown:
        parser.error(f"--realistic: unknown workloads {sorted(unknown)}; choose from"
                     f" {sorted(REALISTIC)}")
    scale = args.scale if args.scale is not None else (5_000 if args.quick else 300_000)
    if scale < 0 or 0 < scale < 1_000:
        parser.error(f"--scale must be 0 or at least 1000, got {scale}")
    savers = [b for b in args.savers.split(",") if b]
    unknown = set(savers) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"--savers: unknown stores {sorted(unknown)}; choose from sqlite,"
                     " postgres")
    report, lossless = run(workloads, [b for b in args.backends.split(",") if b],
                           quick=args.quick, steps=steps, realistic=realistic, scale=scale,
                           savers=savers)
    print(report)
    if args.out:
        Path(args.out).write_text(report, encoding="utf-8")
    if not lossless:
        print("a flujo row lost types", file=sys.stderr)
    return 0 if lossless else 1
