"""CI run of the concurrency campaign (scripts/reliability/concurrency_campaign.py).

8 worker processes compete for 200 runs on one store; 2 of them SIGKILL themselves inside a
step. Every run must complete with the uninterrupted result, every step must execute exactly
once (plus at most once more for a step whose worker died before saving it), no run may be
executed by two workers at once, and the killed workers' runs must be taken over.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from _common import drop_schema, new_schema_name

pytestmark = pytest.mark.slow

CAMPAIGN = (Path(__file__).resolve().parents[2] / "scripts" / "reliability"
            / "concurrency_campaign.py")
WORKERS, RUNS, KILLS = 8, 200, 2


@pytest.mark.parametrize("kind", ["sqlite", "file", pytest.param("postgres",
                                                                  marks=pytest.mark.postgres)])
def test_workers_compete_for_runs(kind: str, tmp_path: Path, request: pytest.FixtureRequest
                                  ) -> None:
    seed = int(os.environ.get("FLUJO_RELIABILITY_SEED", random.randrange(2**31)))
    out = tmp_path / "report.json"
    command = [sys.executable, str(CAMPAIGN), "--backend", kind, "--workers", str(WORKERS),
               "--runs", str(RUNS), "--kill-workers", str(KILLS), "--seed", str(seed),
               "--workdir", str(tmp_path), "--json", str(out)]
    dsn, schema = "", None
    if kind == "postgres":
        dsn = request.getfixturevalue("postgres_dsn_or_skip")
        schema = new_schema_name("flujo_conc_ci")
        command += ["--dsn", dsn, "--schema", schema]
    try:
        proc = subprocess.run(command, check=False, capture_output=True, text=True,
                              timeout=300)
    finally:
        if schema is not None:
            drop_schema(dsn, schema)
    assert out.exists(), proc.stderr[-3000:]
    report = json.loads(out.read_text())
    context = f"seed {seed}: {json.dumps(report, indent=1)[:4000]}"
    assert report["problems"] == [] and report["worker_errors"] == 0, context
    assert report["runs_completed_exact"] == RUNS, context
    assert report["exactly_once_violations"] == 0, context
    assert report["overlapping_executions"] == 0, context
    assert report["killed_workers"] == KILLS, context
    assert report["extra_executions_after_kills"] <= KILLS, context
    assert report["step_executions"] == RUNS * 3 + report["extra_executions_after_kills"], context
    assert report["runs_taken_over"] >= 1, context
    assert report["saves"] > 0 and report["runs_per_second"] > 0, context
    assert proc.returncode == 0 and report["ok"], context
