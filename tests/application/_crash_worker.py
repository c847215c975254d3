"""Child process for the crash tests: ``_crash_worker.py KIND LOCATION RUN_ID [SCHEMA]``.

Runs ``build_runner``'s pipeline, or ``build_counting_runner``'s with
``FLUJO_TEST_PIPELINE=counting``.
"""

import os
import sys

from crash_pipeline import build_counting_runner, build_runner, make_backend

if __name__ == "__main__":
    kind, location, run_id = sys.argv[1:4]
    schema = sys.argv[4] if len(sys.argv) > 4 else None
    build = build_counting_runner if os.environ.get("FLUJO_TEST_PIPELINE") == "counting" \
        else build_runner
    result = build(make_backend(kind, location, schema)).run("order", run_id=run_id)
    print("success" if result.success else "failed", flush=True)
