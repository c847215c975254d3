"""Child process for the crash tests: ``_crash_worker.py KIND LOCATION RUN_ID [SCHEMA]``.

Runs ``build_runner``'s pipeline, or the one ``FLUJO_TEST_PIPELINE`` names (``counting``,
``hitl``, ``flaky``). ``FLUJO_TEST_ANSWER``: JSON text answering the run's pause.
``FLUJO_TEST_HANG_AFTER``: once the run returns, wait to be killed.
"""

import os
import sys
import time

from crash_pipeline import (
    build_counting_runner,
    build_flaky_runner,
    build_hitl_runner,
    build_runner,
    make_backend,
)

BUILDERS = {"counting": build_counting_runner, "hitl": build_hitl_runner,
            "flaky": build_flaky_runner}

if __name__ == "__main__":
    # as in the parent's tests (conftest.py): these runs' small states make chains of deltas
    from flujo.state import EnvelopeStateBackend

    EnvelopeStateBackend.WHOLE_RECORD_BYTES = 0
    kind, location, run_id = sys.argv[1:4]
    schema = sys.argv[4] if len(sys.argv) > 4 else None
    build = BUILDERS.get(os.environ.get("FLUJO_TEST_PIPELINE", ""), build_runner)
    runner = build(make_backend(kind, location, schema))
    answer = os.environ.get("FLUJO_TEST_ANSWER")
    if answer is not None:
        result = runner.resume(run_id, answer)
    else:
        result = runner.run("order", run_id=run_id)
    print(result.status, flush=True)
    if os.environ.get("FLUJO_TEST_HANG_AFTER"):
        time.sleep(60)
