"""docs/testing.md: its examples are the code that runs in these tests."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "testing.md"


def example_after(marker: str) -> str:
    text = DOC.read_text("utf-8")
    match = re.search(re.escape(f"<!-- example: {marker} -->") + r"\n```python\n(.*?)```", text,
                      re.DOTALL)
    assert match, f"no python block after the marker {marker!r} in {DOC.name}"
    return match.group(1)


def test_custom_backend_example_is_the_test_that_runs() -> None:
    source = (REPO / "tests" / "testing" / "test_custom_backend_example.py").read_text("utf-8")
    docstring = ast.get_docstring(ast.parse(source), clean=False)
    assert docstring is not None
    body = source.split(f'"""{docstring}"""', 1)[1].lstrip("\n")
    assert example_after("tests/testing/test_custom_backend_example.py") == body


def test_round_trip_example_runs() -> None:
    namespace: dict[str, Any] = {"__name__": "docs_testing_example"}
    exec(compile(example_after("runs in tests/testing/test_testing_docs.py"), str(DOC), "exec"),
         namespace)
    namespace["test_money_round_trips"]()
