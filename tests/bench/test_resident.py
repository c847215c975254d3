"""The bench's peak resident memory of one call, in a fresh process (Linux only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from flujo.bench._realistic import build_realistic
from flujo.bench._resident import CALLS, measurable, resident_peak
from flujo.exceptions import InvalidArgumentError
from flujo.serialization import serialize_to_bytes

linux = pytest.mark.skipif(not measurable(), reason="needs /proc/self/clear_refs (Linux)")


@linux
@pytest.mark.slow
def test_each_peak_holds_at_least_what_the_call_returns(tmp_path: Path) -> None:
    workload = build_realistic("events", 20_000)
    adapter: TypeAdapter[Any] = TypeAdapter(workload.exact_type)
    ours, theirs = serialize_to_bytes(workload.value), adapter.dump_json(workload.value)
    (tmp_path / "ours").write_bytes(ours)
    (tmp_path / "theirs").write_bytes(theirs)
    peaks = {call: resident_peak("events", 20_000, call,
                                 tmp_path / ("ours" if call.startswith("flujo") else "theirs"))
             for call in CALLS}
    # an encode's result is resident when it returns; a decode's objects are larger than the
    # text they came from
    assert peaks["flujo-encode"] is not None and peaks["flujo-encode"] >= len(ours)
    assert peaks["pydantic-encode"] is not None and peaks["pydantic-encode"] >= len(theirs)
    assert peaks["flujo-decode"] is not None and peaks["flujo-decode"] >= len(ours)
    assert peaks["pydantic-decode"] is not None and peaks["pydantic-decode"] >= len(theirs)
    # and the peak is the call's, not the process's: ten times the records, more memory
    small = resident_peak("events", 2_000, "flujo-encode")
    assert small is not None and small < peaks["flujo-encode"]


def test_a_call_it_does_not_know_or_a_decode_without_bytes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="call must be one of"):
        resident_peak("events", 1_000, "msgspec-encode")
    script = [sys.executable, "-m", "flujo.bench._resident"]
    done = subprocess.run([*script, "events", "1000", "flujo-decode"], capture_output=True,
                          text=True, check=False)
    assert done.returncode != 0 and "needs the path of the bytes it decodes" in done.stderr
    done = subprocess.run([*script, "events"], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "usage:" in done.stderr


@linux
def test_a_failing_child_is_reported_with_its_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"measuring flujo-decode of events .* failed"):
        resident_peak("events", 1_000, "flujo-decode", tmp_path / "missing.json")
