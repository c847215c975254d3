"""CI run of the crash campaign (scripts/reliability/crash_campaign.py): real SIGKILLs.

For each durable backend: at least 200 kills of workers running pipelines (inside steps,
during save_state, anywhere at random), 50 kills during migrate_all rewrites and 40 while
finished runs' histories are compacted. Every kill must be survived: every record the dead
worker touched, and every checkpoint kept in its history (whole states and deltas), loads
and equals what an uninterrupted run saved at the same step, every run finishes with
exactly the result of an uninterrupted run, and no finished step ever runs again. The three
campaigns run in parallel child processes (each forks its own workers), so they share the
machine's cores.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _common import drop_schema, new_schema_name, postgres_dsn, postgres_unavailable

pytestmark = pytest.mark.slow

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "reliability"
CAMPAIGN = SCRIPTS / "crash_campaign.py"
KILLS = 200
MIGRATION_KILLS = 50
COMPACTION_KILLS = 40
TIMEOUT = 600
BACKENDS = ("file", "sqlite", "postgres")
SCHEMA = new_schema_name("flujo_crash_ci")  # dropped by the fixture, even after a timeout


def _launch(kind: str, workdir: Path, seed: int, *extra: str) -> tuple[subprocess.Popen[str],
                                                                      Path]:
    out = workdir / f"report-{kind}.json"
    command = [sys.executable, str(CAMPAIGN), "--backend", kind, "--seed", str(seed),
               "--workdir", str(workdir / kind), "--json", str(out), *extra]
    if kind == "postgres":
        command += ["--dsn", postgres_dsn(), "--schema", SCHEMA]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, out


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Start the three campaigns at once; each test waits for its own."""
    workdir = tmp_path_factory.mktemp("crash")
    seed = int(os.environ.get("FLUJO_RELIABILITY_SEED", random.randrange(2**31)))
    running: dict[str, Any] = {}
    for kind in BACKENDS:
        if kind == "postgres":
            reason = postgres_unavailable(postgres_dsn())
            if reason is not None:
                running[kind] = reason
                continue
        running[kind] = _launch(kind, workdir, seed, "--kills", str(KILLS),
                                "--migration-kills", str(MIGRATION_KILLS),
                                "--compaction-kills", str(COMPACTION_KILLS))
    running["seed"] = seed
    yield running
    for value in running.values():
        if isinstance(value, tuple) and value[0].poll() is None:
            value[0].kill()
            value[0].wait()
    if isinstance(running.get("postgres"), tuple):
        drop_schema(postgres_dsn(), SCHEMA)


def _result(proc: subprocess.Popen[str], out: Path) -> dict[str, Any]:
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the campaign did not finish in {TIMEOUT}s: {err[-2000:]}")
    assert out.exists(), f"no report (exit {proc.returncode}): {err[-3000:]}"
    report: dict[str, Any] = json.loads(out.read_text())
    return report


@pytest.mark.parametrize("kind", BACKENDS)
def test_every_kill_is_survived(kind: str, campaigns: dict[str, Any]) -> None:
    running = campaigns[kind]
    if isinstance(running, str):
        if os.environ.get("FLUJO_REQUIRE_POSTGRES"):
            pytest.fail(f"FLUJO_REQUIRE_POSTGRES is set but {running}")
        pytest.skip(running)
    report = _result(*running)
    context = f"seed {campaigns['seed']}: {json.dumps(report, indent=1)[:4000]}"
    assert report["problems"] == [], context
    assert report["kills_made"] >= KILLS, context
    assert report["kills_survived"] == report["kills_made"], context
    assert report["migration_kills_made"] >= MIGRATION_KILLS, context
    assert report["migration_kills_survived"] == report["migration_kills_made"], context
    assert report["migration_final_ok"], context
    assert report["compaction_kills_made"] >= COMPACTION_KILLS, context
    assert report["compaction_kills_survived"] == report["compaction_kills_made"], context
    assert report["compaction_by_phase"].get("compaction: the backend's write", 0) > 0, context
    assert report["delta_checkpoints"] > 0, context  # the kills hit chains of deltas
    assert report["unreadable_records"] == 0 and report["inconsistent_records"] == 0, context
    assert report["runs"] > 0 and report["runs_exact"] == report["runs"], context
    assert report["effect_log_violations"] == 0 and report["worker_errors"] == 0, context
    assert report["hangs"] == 0, context
    # the kills really landed where they were aimed
    phases = report["by_phase"]
    assert phases.get("inside a step", 0) >= KILLS // 10, context
    assert phases.get("save_state: the backend's write", 0) >= KILLS // 10, context
    assert report["ok"], context


def test_the_campaign_sees_torn_writes(tmp_path: Path) -> None:
    """Self-test: with a FileBackend that writes in place, the campaign must fail loudly."""
    started = time.monotonic()
    proc, out = _launch("file", tmp_path, 1, "--kills", "40", "--migration-kills", "0",
                        "--compaction-kills", "0", "--fault", "torn-write")
    report = _result(proc, out)
    assert proc.returncode == 1
    assert not report["ok"]
    assert report["unreadable_records"] > 0
    assert any("unreadable" in problem for problem in report["problems"])
    assert time.monotonic() - started < 60
