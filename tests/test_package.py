"""The top-level package: its names, and what ``import flujo`` loads (PEP 562 lazy names)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import flujo

ROOT = Path(__file__).resolve().parent.parent


def _fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout


def test_import_flujo_loads_neither_pydantic_nor_the_runner() -> None:
    loaded = json.loads(_fresh(
        "import json, sys, flujo; print(json.dumps(sorted(sys.modules)))"))
    assert "flujo.exceptions" in loaded
    for heavy in ("pydantic", "flujo.application", "flujo.serialization", "flujo.state",
                  "asyncio"):
        assert heavy not in loaded, heavy


def test_a_lazy_name_is_its_home_modules_object_and_stays_bound() -> None:
    out = _fresh(
        "import flujo\n"
        "before = 'Step' in vars(flujo)\n"
        "step = flujo.Step\n"
        "import flujo.application as app\n"
        "print(before, step is app.Step, 'Step' in vars(flujo))")
    assert out.split() == ["False", "True", "True"]


@pytest.mark.parametrize("name", sorted(set(flujo.__all__) - {"__version__"}))
def test_every_exported_name_resolves_to_its_definition(name: str) -> None:
    value = getattr(flujo, name)
    home = importlib.import_module(value.__module__)
    assert getattr(home, name) is value
    assert name in dir(flujo)


def test_star_import_gives_every_exported_name() -> None:
    names: dict[str, object] = {}
    exec("from flujo import *", names)
    assert set(flujo.__all__) <= set(names)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Flow'"):
        flujo.Flow  # noqa: B018
    with pytest.raises(ImportError):
        exec("from flujo import Flow", {})


def test_version_is_the_projects() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert flujo.__version__ == project["version"]
    assert sorted(flujo.__all__) == flujo.__all__
