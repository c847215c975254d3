"""Write tests/golden/runner/0.9 with flujo 0.9's runner (commit bbced72), never with today's:

    PYTHONPATH=<checkout of bbced72>/src python tests/golden/runner/write_0.9.py DIR
"""

import asyncio
import sys
from decimal import Decimal
from typing import Any

from flujo import Flujo, PipelineContext, PipelineResult, Step
from flujo.state import FileBackend


class Ctx(PipelineContext):
    total: Decimal = Decimal("0")


def first(x: Any, *, context: Ctx) -> Any:
    context.total += Decimal("1.50")
    return {"n": 1}


calls: list[int] = []


def second(x: Any, *, context: Ctx) -> Any:
    calls.append(1)
    if len(calls) == 1:
        raise RuntimeError("second failed")
    return {"n": 2}


def main(directory: str) -> None:
    backend = FileBackend(directory)
    runner = Flujo(Step.from_callable(first) >> Step.from_callable(second), context_model=Ctx,
                   state_backend=backend, pipeline_name="golden-runner", pipeline_version="1")
    runner.run("in", run_id="runner-failed")
    done = runner.run("in", run_id="runner-completed")
    kept = PipelineResult(run_id=done.run_id, step_history=done.step_history,
                          final_pipeline_context=PipelineContext(run_id=done.run_id,
                                                                 initial_prompt="in"),
                          success=True, output=done.output)
    asyncio.run(backend.save_state("pipeline-result", {"run_id": "pipeline-result",
                                                       "last_step_output": kept}))


if __name__ == "__main__":
    main(sys.argv[1])
