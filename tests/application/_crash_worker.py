"""Child process for the crash tests: ``_crash_worker.py KIND LOCATION RUN_ID [SCHEMA]``."""

import sys

from crash_pipeline import build_runner, make_backend

if __name__ == "__main__":
    kind, location, run_id = sys.argv[1:4]
    schema = sys.argv[4] if len(sys.argv) > 4 else None
    result = build_runner(make_backend(kind, location, schema)).run("order", run_id=run_id)
    print("success" if result.success else "failed", flush=True)
