"""Peak resident memory of one encode or decode, each measured in a fresh process.

tracemalloc sees only the allocations made through Python's allocator, and sees them as
asked for, not as the machine pays for them. Both distort a comparison with pydantic:

* pydantic-core's serializer writes its JSON into a Rust buffer, then copies it into a
  ``bytes`` object: the buffer, as large as the output, is invisible to tracemalloc;
* orjson reserves a large output buffer up front and writes only what it needs: tracemalloc
  counts the reservation (253 MB for a 50 MB output, measured), while the pages never
  written cost no memory.

So the scaling run also measures, for each call, the peak resident set size (``VmHWM``) of a
fresh process that holds only what the call needs: the value to encode, or the bytes to
decode, and the classes. The peak is reset (``/proc/self/clear_refs``) just before the call,
after a collection and ``malloc_trim``, and what the process held then is subtracted. Linux
only; elsewhere the figures are reported as not measured.

``python -m flujo.bench._resident WORKLOAD RECORDS CALL [PATH]`` prints the peak in bytes;
CALL is one of ``CALLS``, PATH the file holding the bytes a decode reads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..exceptions import InvalidArgumentError

__all__ = ["CALLS", "measurable", "resident_peak"]

#: The calls measured: flujo's and pydantic's (told the exact type) encode and decode.
CALLS = ("flujo-encode", "flujo-decode", "pydantic-encode", "pydantic-decode")

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
#: A bound on one child's run, so a stuck child cannot hang the benchmark.
_TIMEOUT_S = 900


def measurable() -> bool:
    """Whether this system can reset and read a process's peak resident set (Linux)."""
    return sys.platform == "linux" and _STATUS.exists() and _CLEAR_REFS.exists()


def resident_peak(workload: str, records: int, call: str, path: Path | None = None) -> int | None:
    """The peak resident memory, in bytes, of ``call`` on ``workload`` at ``records``, in a
    fresh process; None where it cannot be measured. ``path``: the bytes a decode reads."""
    if call not in CALLS:
        raise InvalidArgumentError(f"call must be one of {CALLS}, got {call!r}")
    if not measurable():
        return None
    argv = [sys.executable, "-m", "flujo.bench._resident", workload, str(records), call]
    if path is not None:
        argv.append(str(path))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT_S,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {call} of {workload} at {records:,} records failed"
                           f" (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return int(done.stdout.split()[-1])


def _resident() -> tuple[int, int]:
    """This process's resident set and its peak since the last reset, in bytes."""
    fields = dict(line.split(":", 1) for line in _STATUS.read_text().splitlines()
                  if ":" in line)
    return (int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024)


def _give_back() -> None:
    """Collect, and hand the C allocator's free memory back to the system (glibc), so that
    the call does not reuse memory left over from setting it up."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name is not None:
        trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
        if trim is not None:
            trim(0)


def _prepared(workload: str, records: int, call: str, path: Path | None) -> Callable[[], Any]:
    """The call, ready: its classes loaded, its code paths warmed on a small value."""
    from pydantic import TypeAdapter

    from ..serialization import deserialize_from_json, serialize_to_bytes
    from ._realistic import build_realistic

    small = build_realistic(workload, min(records, 3 if workload == "tree" else 100))
    adapter: TypeAdapter[Any] = TypeAdapter(small.exact_type)
    # the first call of each kind builds plans and guards: not part of the peak
    deserialize_from_json(serialize_to_bytes(small.value))
    adapter.validate_json(adapter.dump_json(small.value))
    if call.endswith("decode"):
        if path is None:
            raise InvalidArgumentError(f"{call} needs the path of the bytes it decodes")
        data = path.read_bytes()
        if call == "flujo-decode":
            return lambda: deserialize_from_json(data)
        return lambda: adapter.validate_json(data)
    value = build_realistic(workload, records).value
    if call == "flujo-encode":
        return lambda: serialize_to_bytes(value)
    return lambda: adapter.dump_json(value)


def _measure(workload: str, records: int, call: str, path: Path | None) -> int:
    run = _prepared(workload, records, call, path)
    _give_back()
    _CLEAR_REFS.write_text("5")  # resets VmHWM to the current resident set
    before, _ = _resident()
    result = run()
    _, peak = _resident()
    del result
    return peak - before


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4) or argv[2] not in CALLS:
        print(f"usage: python -m flujo.bench._resident WORKLOAD RECORDS {{{','.join(CALLS)}}}"
              " [PATH]", file=sys.stderr)
        return 2
    path = Path(argv[3]) if len(argv) == 4 else None
    print(_measure(argv[0], int(argv[1]), argv[2], path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
