"""The compiled and the pure-Python forms of flujo give identical bytes and identical errors.

One process of each form (``FLUJO_PURE_PYTHON=1`` or not, at import) encodes one corpus, the
snapshot corpus, the pydantic feature matrix and, when installed, the SDK zoo; reads back
what it wrote and writes it again; and reads a set of damaged records. Every outcome (the
JSON text, or the error's type, message and path) must be the same in both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flujo.serialization import serialize_to_json
from flujo.serialization._build import PURE_PYTHON_ENV

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"

SCRIPT = r'''
import json, sys, warnings
warnings.simplefilter("ignore")
from flujo.exceptions import FlujoError
from flujo.serialization import (
    TypeRegistry, compiled_modules, deserialize_from_json, safe_deserialize, serialize_to_json)
from serialization import test_pydantic_matrix, test_snapshots

def outcome(action):
    try:
        return {"ok": action()}
    except FlujoError as exc:
        return {"error": type(exc).__name__, "message": str(exc),
                "path": getattr(exc, "path", None)}

def both_ways(value, registry=None):
    text = serialize_to_json(value, registry=registry)
    again = serialize_to_json(deserialize_from_json(text, registry=registry), registry=registry)
    return [text, again]

corpus = {f"snapshot:{k}": (v, test_snapshots.REGISTRY) for k, v in test_snapshots.CORPUS.items()}
for typed in (True, False):
    registry = TypeRegistry(typed_models=typed)
    corpus.update({f"matrix:{k}:{typed}": ([build(), build()], registry)
                   for k, build in test_pydantic_matrix.CASES.items()})
if sys.argv[1:]:  # the zoo, as one process wrote it (SDK objects carry fresh ids and times)
    from zoo import objects
    from flujo.serialization import trust_modules
    trust_modules("openai", "anthropic", "langchain_core", "pydantic_ai", "mcp", "mcp_types",
                  "google.genai", "zoo")
    stored = deserialize_from_json(open(sys.argv[1], "rb").read())
    corpus.update({f"zoo:{k}": (v, None) for k, v in stored.items()})
    corpus.update({f"zoo-refused:{k}": (v[0], None) for k, v in objects.refused().items()})
from serialization import test_numpy
corpus.update({f"numpy:{k}": ({"a": v, "again": v, "scalars": test_numpy.SCALARS}, None)
               for k, v in test_numpy.ARRAYS.items()})
corpus["unserializable"] = ({"a": [1, object()]}, None)
corpus["lone-surrogate"] = ({"a": ["ok", "\ud800"]}, None)
corpus["cycle"] = ((lambda l: (l.append(l), l)[1])([]), None)
corpus["cycle-refused"] = (corpus["cycle"][0], TypeRegistry(references=False))
from serialization import test_references
corpus.update({f"references:{k}": (v, test_references.REGISTRY)
               for k, v in test_references.graphs().items()})
results = {case: outcome(lambda: both_ways(value, registry))
           for case, (value, registry) in corpus.items()}

Item = "serialization._support:Item@1"
damaged = {
    "malformed-tag": {"$t": "no-version", "v": 1},
    "unknown": {"$t": "nowhere.at.all:Thing@1", "v": {}},
    "future": {"$t": "datetime@9", "v": "x"},
    "bad-datetime": {"$t": "datetime@1", "v": "yesterday"},
    "bad-decimal": {"$t": "decimal@1", "v": 5},
    "state-wrong-type": {"$t": Item, "v": {"name": "a", "price": {"$t": "decimal@1", "v": "1"},
                                           "at": {"$t": "datetime@1", "v": "2024-01-01T00:00:00"}},
                         "s": 1},
    "typed-wrong-leaf": {"$t": Item, "v": [{"name": 1, "price": "1", "at": "2024-01-01T00:00:00"}]},
    "typed-missing-field": {"$t": Item, "v": [{"name": "a"}]},
    "rows-short": {"$t": "rows@1", "v": [Item, ["name", "price", "at"], [["a", "1"]]]},
    "deep": json.loads("[" * 250 + "]" * 250),
    "set-of-list": {"$t": "set@1", "v": [[1]]},
    **{f"reference:{k}": v for k, v in test_references.HOSTILE.items()},
}
import serialization._support  # the models the damaged records name
results.update({f"damaged:{k}": outcome(lambda: repr(safe_deserialize(v)))
                for k, v in damaged.items()})
print(json.dumps({"compiled": compiled_modules(), "results": results}))
'''


def _run(pure: bool, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != PURE_PYTHON_ENV}
    if pure:
        env[PURE_PYTHON_ENV] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(SRC)])
    done = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_compiled_and_pure_python_forms_give_identical_bytes_and_errors(tmp_path: Path) -> None:
    args: list[str] = []
    try:
        from zoo import objects
    except ImportError:  # the zoo extra is not installed (tests/zoo/conftest.py says so)
        pass
    else:
        (tmp_path / "zoo.json").write_text(serialize_to_json(objects.stored()))
        args.append(str(tmp_path / "zoo.json"))
    compiled = _run(False, *args)
    if not compiled["compiled"]:
        pytest.skip("flujo is not compiled here (no C compiler at install): one form only")
    pure = _run(True, *args)
    assert pure["compiled"] == []
    assert compiled["results"].keys() == pure["results"].keys()
    differing = [case for case in compiled["results"]
                 if compiled["results"][case] != pure["results"][case]]
    assert not differing, {case: (compiled["results"][case], pure["results"][case])
                           for case in differing[:3]}
    outcomes = compiled["results"].values()
    # the corpus exercises both successes and each kind of refusal
    assert sum("ok" in o for o in outcomes) > 80
    assert {o.get("error") for o in outcomes} >= {
        "UnserializableTypeError", "CircularReferenceError", "DeserializationError",
        "UnknownTypeError", "FutureVersionError", "NestingTooDeepError"}
