"""Nesting against the calling thread's C stack, in both forms of the codec.

Compiled code (and pure Python where a level goes through C) recurses on the C stack and
crashes the process when it runs out; the codec stops at the depth the calling thread's
stack holds (``_codec.depth_limit``) with NestingTooDeepError. Each case runs in a
subprocess, so that a crash fails the test instead of killing pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from flujo.serialization._build import PURE_PYTHON_ENV
from flujo.serialization._codec import STACK_LEVEL_BYTES, stack_levels

_SCRIPT = """
import dataclasses, sys, threading
from collections import defaultdict
from typing import Any
import warnings
from pydantic import BaseModel
from flujo.exceptions import NestingTooDeepError
from flujo.serialization import TypeRegistry, compiled_modules, safe_deserialize, safe_serialize

class Box(BaseModel):
    payload: Any = None

@dataclasses.dataclass
class Old:
    payload: Any = None

class Wrap:
    def __init__(self, inner):
        self.inner = inner

stack_kib, recursion_limit, deep = (int(arg) for arg in sys.argv[1:])
warnings.simplefilter("ignore")  # Box is __main__'s, which other processes cannot find
if recursion_limit:
    sys.setrecursionlimit(recursion_limit)
registry = TypeRegistry(max_depth=10**6)
registry.register_custom_serializer(Wrap, lambda w: {"inner": w.inner},
                                    deserializer=lambda d: Wrap(d["inner"]), name="Wrap")
registry.register_type(Old, name="Old", version=2, migrations={1: lambda v: v})

# (written, stored) for one level around value
LEVELS = {
    "list": (lambda v: [v], lambda v: [v]),
    "dict": (lambda v: {"k": v}, lambda v: {"k": v}),
    "escaped dict": (lambda v: {1: v}, lambda v: {"$t": "dict@1", "v": [[1, v]]}),
    "tuple": (lambda v: (v,), lambda v: {"$t": "tuple@1", "v": [v]}),
    "frozenset": (lambda v: frozenset([v]), lambda v: {"$t": "frozenset@1", "v": [v]}),
    "defaultdict": (lambda v: defaultdict(list, {1: v}),
                    lambda v: {"$t": "defaultdict@1", "v": {"factory": "list",
                                                            "items": [[1, v]]}}),
    "model": (lambda v: Box(payload=v),
              lambda v: {"$t": "__main__:Box@1", "v": {"payload": v}}),
    "custom type": (lambda v: Wrap(v), lambda v: {"$t": "Wrap@1", "v": {"inner": v}}),
    "migrated dataclass": (lambda v: Old(v), lambda v: {"$t": "Old@1", "v": {"payload": v}}),
}

def nest(wrap, levels):
    value = None
    for _ in range(levels):
        value = wrap(value)
    return value

# Built here, on the main thread's stack: CPython itself frees a deep defaultdict
# recursively, which a small thread's stack does not survive. A migration copies the rest
# of the value at each level (quadratic): 600 levels are past every limit tested.
cases = [(kind, call, nest(LEVELS[kind][index], levels), name)
         for kind in LEVELS
         for index, call in enumerate((safe_serialize, safe_deserialize))
         for name, levels in (("shallow", 3),
                              ("deep", min(deep, 600) if kind.startswith("migrated") else deep))]
results = []

def run():
    for kind, call, value, name in cases:
        try:
            call(value, registry=registry)
            results.append(f"{kind} {call.__name__} {name}: ok")
        except NestingTooDeepError as exc:
            assert exc.path.startswith("$") and "stack ran out" in str(exc), exc
            results.append(f"{kind} {call.__name__} {name}: too deep")

if stack_kib:
    threading.stack_size(stack_kib * 1024)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
else:
    run()
print("compiled" if compiled_modules() else "pure")
print("\\n".join(results))
"""

_KINDS = ("list", "dict", "escaped dict", "tuple", "frozenset", "defaultdict", "model",
          "custom type", "migrated dataclass")


@pytest.mark.parametrize("form", ["compiled", "pure"])
@pytest.mark.parametrize(("stack_kib", "recursion_limit", "deep"), [
    (64, 0, 199),
    (128, 0, 199),
    (256, 0, 1999),
    (1024, 100_000, 1999),  # a raised recursion limit no longer lets compiled code go deeper
    (0, 0, 5000),  # the main thread (RLIMIT_STACK, 8 MiB here)
], ids=["64KiB-thread", "128KiB-thread", "256KiB-thread", "1MiB-thread", "main-thread"])
def test_nesting_stops_where_the_calling_threads_stack_does_never_a_crash(
        form: str, stack_kib: int, recursion_limit: int, deep: int) -> None:
    env = dict(os.environ)
    env.pop(PURE_PYTHON_ENV, None)
    if form == "pure":
        env[PURE_PYTHON_ENV] = "1"
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(stack_kib), str(recursion_limit), str(deep)],
        env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    ran, *lines = result.stdout.splitlines()
    if form == "compiled" and ran == "pure":
        pytest.skip("no compiled build here")
    expected = []
    for kind in _KINDS:
        for call in ("safe_serialize", "safe_deserialize"):
            expected += [f"{kind} {call} shallow: ok", f"{kind} {call} deep: too deep"]
    assert lines == expected


def test_the_stack_of_each_thread_is_measured_for_itself() -> None:
    here = stack_levels()
    found: list[int] = []
    previous = threading.stack_size(256 * 1024)
    try:
        thread = threading.Thread(target=lambda: found.append(stack_levels()))
        thread.start()
        thread.join()
    finally:
        threading.stack_size(previous)
    assert 0 < found[0] < 256 * 1024 // STACK_LEVEL_BYTES
    assert found[0] < here
