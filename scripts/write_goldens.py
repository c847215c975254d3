"""Write the golden records a new stored format needs, under tests/golden/.

    python scripts/write_goldens.py

Run it once when a release changes what flujo stores (a new envelope version, say), then
commit the new files. It never touches a file that exists: goldens are records a released
flujo wrote, and the tests read every one of them on every run. What is written (values,
registries, states) is defined in tests/state/test_golden.py, next to the tests that read it.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1] / "tests" / "state"


def _tests() -> Any:
    """The test module that defines the goldens (on the path only for this import)."""
    sys.path.insert(0, str(TESTS))
    try:
        return importlib.import_module("test_golden")
    finally:
        sys.path.remove(str(TESTS))


def main() -> int:
    test_golden = _tests()
    written = [*test_golden.write_missing_goldens(),
               *test_golden.write_missing_references_golden(),
               *asyncio.run(test_golden.write_missing_chain_golden())]
    root = TESTS.parents[1]
    for path in written:
        print(f"wrote {path.relative_to(root)}")
    if not written:
        print("every golden exists already: nothing written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
