"""Write the upstream flujo 0.4.35 fixtures with upstream's own backends.

Run it with upstream flujo installed (not this project):

    python -m venv /tmp/upstream && /tmp/upstream/bin/pip install flujo==0.4.35
    /tmp/upstream/bin/python tests/golden/upstream/write_fixtures.py tests/golden/upstream

It writes ``workflow_state.db`` (upstream's ``SQLiteBackend``) and ``files/`` (upstream's
``FileBackend``), each with the same four runs. Never regenerate committed fixtures.
"""

import asyncio
import sys
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from flujo.state.backends.file import FileBackend
from flujo.state.backends.sqlite import SQLiteBackend


class Customer(BaseModel):
    name: str
    tier: str


def state(run_id: str, status: str, index: int, **extra):
    return {
        "run_id": run_id, "pipeline_id": "orders-id", "pipeline_name": "orders",
        "pipeline_version": "1.2", "current_step_index": index,
        "pipeline_context": {
            "run_id": run_id, "initial_prompt": "order 42",
            "scratchpad": {"total": 12.5, "at": datetime(2025, 3, 4, 5, 6, 7)},
            "customer": Customer(name="ACME", tier="gold"), "rows": 42,
        },
        "last_step_output": {"rows": 42, "ok": True},
        "step_history": [{"name": "extract", "output": {"rows": 42}, "success": True,
                          "attempts": 1, "latency_s": 0.25, "feedback": None}][:index],
        "status": status,
        "created_at": datetime(2025, 3, 4, 5, 0, 0),
        "updated_at": datetime(2025, 3, 4, 5, index, 30),
        **extra,
    }


RUNS = [
    state("up-running", "running", 1),
    state("up-failed", "failed", 1, error_message="RuntimeError: price service down"),
    state("up-completed", "completed", 2),
    state("up-paused", "paused", 1),
]


async def main(target: Path) -> None:
    sqlite = SQLiteBackend(target / "workflow_state.db")
    files = FileBackend(target / "files")
    for run in RUNS:
        await sqlite.save_state(run["run_id"], run)
        await files.save_state(run["run_id"], run)
    await sqlite.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
