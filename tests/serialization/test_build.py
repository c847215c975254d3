"""The compiled build: which modules mypyc compiles, the pure-Python switch, and chaining.

The whole suite runs against whatever is installed (compiled by ``pip install -e .`` when a C
compiler is there); CI runs it compiled (``FLUJO_REQUIRE_COMPILED=1``) and runs the
serialization tests again with ``FLUJO_PURE_PYTHON=1``.
"""

from __future__ import annotations

import ast
import decimal
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flujo.exceptions import DeserializationError, caused
from flujo.serialization import compiled_modules, safe_deserialize
from flujo.serialization._build import COMPILED_MODULES, PURE_PYTHON_ENV

from ._support import Color

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_setup_compiles_exactly_the_modules_the_library_lists() -> None:
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    listed = next(node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id == "COMPILED" for t in node.targets))
    paths = ast.literal_eval(listed)
    assert sorted(Path(p).stem for p in paths) == sorted(COMPILED_MODULES)
    assert all(Path(p).parent == Path("src/flujo/serialization") for p in paths)


def test_every_listed_module_exists_as_source() -> None:
    package = REPO_ROOT / "src" / "flujo" / "serialization"
    assert all((package / f"{name}.py").is_file() for name in COMPILED_MODULES)


@pytest.mark.skipif(os.environ.get("FLUJO_REQUIRE_COMPILED") != "1"
                    or os.environ.get(PURE_PYTHON_ENV) == "1",
                    reason="FLUJO_REQUIRE_COMPILED=1 (CI's main run) asks for the compiled build")
def test_ci_runs_the_compiled_build() -> None:
    assert compiled_modules() == list(COMPILED_MODULES)


@pytest.mark.skipif(os.environ.get(PURE_PYTHON_ENV) != "1",
                    reason="FLUJO_PURE_PYTHON=1 (CI's second run) asks for the sources")
def test_the_pure_python_run_runs_the_sources() -> None:
    assert compiled_modules() == []


def test_the_pure_python_switch_imports_every_compiled_module_from_source() -> None:
    script = (
        "import flujo.utils, sys\n"  # the way users import it, before anything else
        "from flujo.serialization import compiled_modules\n"
        "from flujo.serialization._build import COMPILED_MODULES\n"
        "assert compiled_modules() == [], compiled_modules()\n"
        "for name in COMPILED_MODULES:\n"
        "    assert sys.modules['flujo.serialization.' + name].__file__.endswith('.py')\n"
        "print('ok')\n"
    )
    env = {**os.environ, PURE_PYTHON_ENV: "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_caused_chains_like_raise_from() -> None:
    original = KeyError("k")
    error = caused(DeserializationError("wrapped"), original)
    assert error.__cause__ is original and error.__suppress_context__
    quiet = caused(DeserializationError("quiet"), None)
    assert quiet.__cause__ is None and quiet.__suppress_context__


def test_errors_raised_inside_compiled_modules_keep_their_cause() -> None:
    # mypyc ignores "raise ... from": the modules use caused(), which survives compilation.
    with pytest.raises(DeserializationError, match="cannot decode 'decimal@1'") as info:
        safe_deserialize({"$t": "decimal@1", "v": "not a number"})
    assert isinstance(info.value.__cause__, decimal.InvalidOperation)
    tag = f"{Color.__module__}:{Color.__qualname__}@1"
    with pytest.raises(DeserializationError, match="not a member value") as quiet:
        safe_deserialize({"$t": tag, "v": "nope"})
    assert quiet.value.__cause__ is None and quiet.value.__suppress_context__


_DEEP = """
import sys
from typing import Any
from pydantic import BaseModel
from flujo.exceptions import NestingTooDeepError
from flujo.serialization import TypeRegistry, safe_deserialize, safe_serialize

class Box(BaseModel):
    payload: Any = None

registry = TypeRegistry(max_depth=10**6)
def nest(kind, levels):
    value = None
    for _ in range(levels):
        value = {"list": lambda v: [v], "dict": lambda v: {"k": v},
                 "model": lambda v: Box(payload=v)}[kind](value)
    return value
for kind in ("list", "dict", "model"):
    for call in (safe_serialize, safe_deserialize):
        if kind == "model" and call is safe_deserialize:
            continue
        try:
            call(nest(kind, 50_000), registry=registry)
        except NestingTooDeepError as exc:
            assert "stack ran out before max_depth=1000000" in str(exc), exc
        else:
            raise AssertionError(f"{kind} {call.__name__}: 50,000 levels accepted")
print("ok")
"""


def test_nesting_past_what_the_stack_holds_is_an_error_not_a_crash() -> None:
    # Compiled code recurses on the C stack, which would crash the process if it ran out;
    # it stops where pure Python's stack would run out, with the same error.
    result = subprocess.run([sys.executable, "-c", _DEEP], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.strip() == "ok"
