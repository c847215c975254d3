"""Hostile and malformed stored data (scripts/reliability/hostile_corpus.py), plus open bugs.

The corpus run feeds about 5,000 malicious inputs to flujo in watched worker processes:
every one must end in a flujo error or a correct decode: never another exception, never an
import, exec or process creation (Python audit events), never a file written outside the
store, never a hang past the time limit, never a dead interpreter, never a changed record
after a refused save, never stored text that acts on the terminal `flujo state` prints to.

The tests after the corpus pin bugs that the corpus and the fuzzing found in
``flujo.serialization`` (fixed there): an extra field named ``_fields_set``, hash-flooded
sets and dict keys (also through the typed model form), zone names that made zoneinfo import
tzdata packages, and zones that could be stored but not loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _common import drop_schema, new_schema_name, postgres_dsn, postgres_unavailable
from pydantic import BaseModel, ConfigDict

from flujo.exceptions import DeserializationError, SerializationError
from flujo.serialization import safe_deserialize, safe_serialize

CORPUS = Path(__file__).resolve().parents[2] / "scripts" / "reliability" / "hostile_corpus.py"
P61 = 2**61 - 1  # CPython hashes an int n as n mod P61 (not randomized)


@pytest.mark.slow
def test_hostile_corpus(tmp_path: Path) -> None:
    out = tmp_path / "hostile.json"
    command = [sys.executable, str(CORPUS), "--sweep", "2000", "--bomb-mib", "256",
               "--timeout", "20", "--workdir", str(tmp_path), "--json", str(out)]
    dsn, schema = postgres_dsn(), new_schema_name("flujo_hostile_ci")
    reason = postgres_unavailable(dsn)
    if reason is None:  # hostile run ids on PostgreSQL too
        command += ["--postgres", "--schema", schema]
    elif os.environ.get("FLUJO_REQUIRE_POSTGRES"):
        pytest.fail(f"FLUJO_REQUIRE_POSTGRES is set but {reason}")
    try:
        proc = subprocess.run(command, check=False, capture_output=True, text=True,
                              timeout=600)
    finally:
        if reason is None:
            drop_schema(dsn, schema)
    assert out.exists(), proc.stderr[-3000:]
    report = json.loads(out.read_text())
    summary = json.dumps({k: report[k] for k in ("inputs", "outcomes", "failures",
                                                  "known_issues", "isolated_growth_mb")},
                         indent=1)[:6000]
    assert report["failures"] == [], summary
    assert report["inputs"] >= 5000, summary
    outcomes = report["outcomes"]
    known = len(report["known_issues"])
    assert outcomes.get("typed", 0) + outcomes.get("decoded", 0) >= report["inputs"] - known
    for category in ("dangerous tags", "methods named in the payload", "huge inputs",
                     "deep nesting", "decompression bombs", "encrypted records", "run ids",
                     "refused saves", "process sweep: callables", "hostile terminal text",
                     "references"):
        assert report["by_category"].get(category, 0) > 0, category
    # a bomb that would inflate to 256 MiB costs at most about twice max_payload_bytes
    assert report["isolated_growth_mb"], summary
    assert max(report["isolated_growth_mb"].values()) < 2.5 * 64, summary
    assert proc.returncode == 0 and report["ok"], summary


# -- regressions: bugs the corpus found in flujo.serialization -----------------------------------

class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")
    a: int = 0


def test_an_extra_field_named_fields_set_round_trips() -> None:
    original = Loose.model_validate({"a": 1, "_fields_set": "kept"})
    assert original.model_extra == {"_fields_set": "kept"}
    restored = safe_deserialize(safe_serialize(original))
    assert restored.model_extra == {"_fields_set": "kept"}
    hostile = safe_deserialize({"$t": f"{__name__}:Loose@1", "v": {"_fields_set": 5}})
    assert isinstance(hostile.__pydantic_fields_set__, set)
    hostile.model_dump(exclude_unset=True)


def _flood(n: int) -> list[dict[str, str]]:
    return [{"$t": "int@1", "v": hex(P61 * (i + 2**64))} for i in range(n)]  # all one hash


def _keyed(container: str, keys: list[dict[str, str]]) -> dict[str, Any]:
    return ({"$t": "set@1", "v": keys} if container == "set"
            else {"$t": "dict@1", "v": [[k, 0] for k in keys]})


@pytest.mark.parametrize("container", ["set", "dict"])
def test_colliding_hashes_do_not_make_decoding_quadratic(container: str) -> None:
    # Building a set or dict of n keys of one hash makes n * n / 2 comparisons (20,000 keys
    # took ~1.6 s). The keys are counted by hash before any is inserted: past 64 of one hash
    # the data is refused, so no set or dict compares more than 64 keys of one hash.
    with pytest.raises(DeserializationError, match="more than 64 distinct keys share one"):
        safe_deserialize(_keyed(container, _flood(20_000)))
    with pytest.raises(DeserializationError, match="more than 64 distinct keys share one"):
        safe_deserialize(_keyed(container, _flood(65)))
    assert len(safe_deserialize(_keyed(container, _flood(64)))) == 64  # as many as allowed


def test_an_unknown_zone_name_imports_nothing() -> None:
    script = textwrap.dedent("""
        import sys
        from flujo.serialization import safe_deserialize
        before = set(sys.modules)
        try:
            safe_deserialize({"$t": "datetime@1",
                              "v": "2024-01-01T00:00:00+01:00[Europe/Nowhere]"})
        except Exception as exc:
            print(type(exc).__name__, file=sys.stderr)
        print(",".join(sorted(set(sys.modules) - before)))
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.strip() == "", f"imported: {proc.stdout.strip()}"


# -- more regressions: the typed model form, zone names, (fixed in flujo.serialization) -------

_M64 = 2**64
_X1, _X2, _X5 = 11400714785074694791, 14029467366897019727, 2870177450012600261


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & (_M64 - 1)


def colliding_pairs(n: int) -> list[tuple[int, int]]:
    """``n`` distinct pairs of small ints whose tuples share one hash (CPython's xxHash)."""
    target = 12345
    pre = _rotl(target * pow(_X1, -1, _M64) % _M64, 64 - 31)
    inverse = pow(_X2, -1, _M64)
    pairs: list[tuple[int, int]] = []
    a = 0
    while len(pairs) < n:
        acc = _rotl((_X5 + hash(a) % _M64 * _X2) % _M64, 31) * _X1 % _M64
        lane = (pre - acc) * inverse % _M64
        b = lane - _M64 if lane >= 2**63 else lane
        if -P61 < b < P61 and b != -1:
            pairs.append((a, b))
        a += 1
    return pairs


def test_colliding_pairs_collide() -> None:
    pairs = colliding_pairs(200)
    assert len(set(pairs)) == 200 and len({hash(p) for p in pairs}) == 1
    assert all(abs(x) < 2**63 for pair in pairs for x in pair)  # plain JSON integers
    data = {"$t": "set@1", "v": [{"$t": "tuple@1", "v": list(p)} for p in pairs]}
    with pytest.raises(DeserializationError, match="hash"):
        safe_deserialize(data)  # the generic form is refused (fixed)


class PairSet(BaseModel):
    pairs: set[tuple[int, int]] = set()


def test_the_typed_form_cannot_flood_a_set_field() -> None:
    # was: the typed (list) form was read for any model class by pydantic-core, bypassing
    # the hash-flooding check: 20,000 colliding pairs took ~3 s. A set field is written
    # generically, its typed form refused unread, and its generic form counted by hash.
    assert "$t" in safe_serialize(PairSet(pairs={(1, 2)}))["v"]["pairs"]  # written generically
    pairs = [list(p) for p in colliding_pairs(20_000)]
    with pytest.raises(DeserializationError, match="typed form of the stored data cannot hold"):
        safe_deserialize({"$t": f"{__name__}:PairSet@1", "v": [{"pairs": pairs}]})
    flood = {"$t": "set@1", "v": [{"$t": "tuple@1", "v": pair} for pair in pairs]}
    with pytest.raises(DeserializationError, match="more than 64 distinct keys share one"):
        safe_deserialize({"$t": f"{__name__}:PairSet@1", "v": {"pairs": flood}})


def test_every_storable_zone_loads() -> None:
    # was: posix/... and right/... keys were written but refused when read (CorruptStateError)
    from datetime import datetime
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        zone = ZoneInfo("posix/Europe/Paris")
    except ZoneInfoNotFoundError:
        pytest.skip("no posix/ zones on this system")
    value = datetime(2024, 7, 1, 12, tzinfo=zone)
    try:
        data = safe_serialize(value)
    except SerializationError:
        return  # refused when written: fine
    assert safe_deserialize(data) == value
