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


# -- packaging -----------------------------------------------------------------------------------


def _uncompiled_copy(tmp_path: Path) -> Path:
    """flujo's sources without their compiled modules, as a build without a C compiler
    installs them."""
    import shutil

    target = tmp_path / "site" / "flujo"
    shutil.copytree(ROOT / "src" / "flujo", target,
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    return target.parent


@pytest.mark.parametrize("pure_env", ["", "1"])
def test_running_without_the_compiled_core_warns_unless_asked_for(tmp_path: Path,
                                                                  pure_env: str) -> None:
    site = _uncompiled_copy(tmp_path)
    code = ("import warnings\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    import flujo.serialization as s\n"
            "print([type(w.message).__name__ for w in caught], s.compiled_modules())")
    env = {k: v for k, v in __import__("os").environ.items() if k != "FLUJO_PURE_PYTHON"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True, cwd=tmp_path,
                          env={**env, "PYTHONPATH": str(site), "FLUJO_PURE_PYTHON": pure_env})
    warned = "['PurePythonWarning']" in done.stdout
    assert warned == (pure_env != "1"), done.stdout
    assert done.stdout.rstrip().endswith("[]")  # and indeed nothing runs compiled


def test_the_package_metadata_is_complete() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    versions = {c.rsplit(" :: ", 1)[1] for c in project["classifiers"]
                if c.startswith("Programming Language :: Python :: 3.")}
    assert versions == {"3.11", "3.12", "3.13"} and project["requires-python"] == ">=3.11"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {flujo.__version__}" in changelog  # the released version has its entry
    manifest = (ROOT / "MANIFEST.in").read_text()
    for folder in ("tests", "docs", "schemas", "snapshots"):
        assert f"graft {folder}" in manifest  # the sdist can run its own tests


@pytest.mark.slow
def test_a_build_without_a_c_compiler_makes_a_pure_wheel(tmp_path: Path) -> None:
    import os
    import zipfile

    env = {**os.environ, "CC": str(tmp_path / "no-such-cc")}
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v",
         "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600,
        env=env, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "no C compiler found" in done.stdout + done.stderr  # said loudly (pip -v)
    [wheel] = tmp_path.glob("flujo-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")  # tagged as what it is
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "flujo/serialization/_codec.py" in names
    assert not [n for n in names if n.endswith((".so", ".pyd"))]


def test_runtime_type_hints_and_parametrization_of_the_public_classes() -> None:
    import typing

    from flujo import Flujo, Pipeline, PipelineContext, PipelineResult, RunHandle, Step

    assert "func" in typing.get_type_hints(Step)  # dataclass fields resolve
    for cls in (Flujo, Pipeline, RunHandle, Step):
        typing.get_type_hints(cls)
        assert cls.__module__ == "flujo" and repr(cls) == f"<class 'flujo.{cls.__name__}'>"
    assert "return" in typing.get_type_hints(Flujo.run)
    # parametrized for type checkers only: at run time the one stored class
    assert PipelineResult[PipelineContext, int] is PipelineResult
    assert Step[int, str].__origin__ is Step  # type: ignore[attr-defined]


def test_the_pure_python_warning_can_be_filtered_before_flujo_is_imported(
        tmp_path: Path) -> None:
    import os

    site = _uncompiled_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "FLUJO_PURE_PYTHON"}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-W", "ignore::flujo.exceptions.PurePythonWarning",
         "-c", "import flujo.serialization"], capture_output=True, text=True, timeout=120,
        check=False, cwd=tmp_path, env={**env, "PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stderr
    version = subprocess.run(
        [sys.executable, "-m", "flujo.cli", "--version"], capture_output=True, text=True,
        timeout=120, check=True, cwd=tmp_path,
        env={**env, "PYTHONPATH": str(site), "FLUJO_PURE_PYTHON": "1"})
    assert "pure-Python core: FLUJO_PURE_PYTHON=1" in version.stdout
