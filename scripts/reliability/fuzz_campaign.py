"""Fuzz campaign: the property tests of tests/reliability/test_fuzz.py with many examples.

    python scripts/reliability/fuzz_campaign.py --examples 20000 --json fuzz.json

Runs pytest on that file with ``FLUJO_FUZZ_EXAMPLES`` set (the model round-trip properties
run a third as many) and hypothesis statistics on, and reports, per property, the examples
run and whether it passed. A failure prints hypothesis's minimal failing example.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, write_json

TESTS = REPO / "tests" / "reliability" / "test_fuzz.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed")
    parser.add_argument("--json", help="write the report here (default: stdout)")
    args = parser.parse_args(argv)
    env = {**os.environ, "FLUJO_FUZZ_EXAMPLES": str(args.examples)}
    command = [sys.executable, "-m", "pytest", str(TESTS), "-q", "-p", "no:cacheprovider",
               "--hypothesis-show-statistics", "-k", "not keeps_its_fold"]  # (not a property)
    if args.seed is not None:
        command.append(f"--hypothesis-seed={args.seed}")
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          check=False)
    seconds = round(time.perf_counter() - started, 1)
    properties: dict[str, dict[str, int]] = {}
    current = None
    for line in proc.stdout.splitlines():
        name = re.match(r".*::(test_\w+)(?:\[.*\])?:$", line.strip())
        if name:
            current = name.group(1)
            properties[current] = {"passing": 0, "failing": 0}
            continue
        counts = re.search(r"(\d+) passing, (\d+) failing, and (\d+) invalid", line)
        if counts and current:
            properties[current]["passing"] = int(counts.group(1))
            properties[current]["failing"] = int(counts.group(2))
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    report: dict[str, object] = {"examples_setting": args.examples, "properties": properties,
              "examples_run": sum(p["passing"] for p in properties.values()),
              "pytest": summary, "seconds": seconds, "ok": proc.returncode == 0}
    if proc.returncode != 0:
        report["output"] = proc.stdout[-6000:] + proc.stderr[-2000:]
    write_json(args.json, report)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
