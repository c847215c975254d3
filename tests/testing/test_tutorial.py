"""docs/tutorial.md runs as written: each of its files, in fresh processes, in order, and
the commands it shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import flujo

DOC = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"
SRC = Path(flujo.__file__).resolve().parents[1]


def _files() -> dict[str, str]:
    found = dict(re.findall(r"<!-- tutorial: (\S+) -->\n```python\n(.*?)```",
                            DOC.read_text("utf-8"), re.DOTALL))
    assert list(found) == ["agent.py", "start.py", "inspect_run.py", "answer.py"]
    return found


def _run(folder: Path, *argv: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, *argv], cwd=folder, capture_output=True, text=True,
                          timeout=120, check=False, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    for name, code in _files().items():
        (tmp_path / name).write_text(code, "utf-8")
    assert _run(tmp_path, "start.py") == "paused approve Refund this order?\n"
    shown = _run(tmp_path, "inspect_run.py").splitlines()
    assert shown[:4] == ["user      Where is my refund for order A-17?",
                         "assistant [ToolCall(name='lookup_order',"
                         " arguments={'order_id': 'A-17'})]",
                         'tool      {"status": "returned", "total_cents": 4990}',
                         "assistant The order was returned: refund it."]
    assert shown[-1] == "4 state 2 paused"
    cli = _run(tmp_path, "-m", "flujo.cli", "state", "show", "ticket-17", "--store",
               "sqlite:///support.db", "--module", "agent")
    assert "Refund(order_id='A-17', cents=4990)" in cli
    assert _run(tmp_path, "-m", "flujo.cli", "state", "history", "ticket-17", "--store",
                "sqlite:///support.db").startswith("REVISION")
    assert _run(tmp_path, "answer.py") == (
        "refused: reviewer String should have at least 1 character\n"
        "completed refunded 4990 cents for A-17, approved by ana\n")
    # a completed run is read back, not run again
    assert _run(tmp_path, "start.py") == "completed refunded 4990 cents for A-17, approved by ana\n"
