"""The public API's types, as type checkers see them: ``public_types.py`` passes
``mypy --strict`` and ``pyright --strict`` (every ``assert_type`` holds, and every line marked
``# type: ignore[...]`` is an error; both fail on an ignore that suppresses nothing)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHECKED = HERE / "public_types.py"


def test_mypy_strict_accepts_exactly_what_it_should() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--warn-unused-ignores",
         str(CHECKED)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_pyright_strict_accepts_exactly_what_it_should() -> None:
    pyright = os.environ.get("FLUJO_PYRIGHT") or shutil.which("pyright")
    if pyright is None:
        if os.environ.get("FLUJO_REQUIRE_PYRIGHT") == "1":
            pytest.fail("pyright is required (FLUJO_REQUIRE_PYRIGHT=1) but not found")
        pytest.skip("pyright is not installed (npm install pyright; FLUJO_PYRIGHT=its path)")
    # pyproject.toml's [tool.pyright] checks tests/typecheck in strict mode
    done = subprocess.run([pyright, "--project", str(REPO), "--pythonpath", sys.executable],
                          cwd=REPO,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 errors" in done.stdout
