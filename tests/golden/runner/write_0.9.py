import asyncio, sys
from decimal import Decimal
from flujo import Flujo, Step, PipelineContext, PipelineResult
from flujo.state import FileBackend

class Ctx(PipelineContext):
    total: Decimal = Decimal("0")

def first(x, *, context: Ctx):
    context.total += Decimal("1.50")
    return {"n": 1}

calls = []
def second(x, *, context: Ctx):
    calls.append(1)
    if len(calls) == 1:
        raise RuntimeError("second failed")
    return {"n": 2}

backend = FileBackend(sys.argv[1])
runner = Flujo(Step.from_callable(first) >> Step.from_callable(second), context_model=Ctx,
               state_backend=backend, pipeline_name="golden-runner", pipeline_version="1")
r = runner.run("in", run_id="runner-failed")
print(r.success)
runner2 = Flujo(Step.from_callable(first) >> Step.from_callable(second), context_model=Ctx,
                state_backend=backend, pipeline_name="golden-runner", pipeline_version="1")
r = runner.run("in", run_id="runner-completed")
print(r.success, r.step_history)
# a PipelineResult stored as a value, as applications do
stored = PipelineResult(run_id=r.run_id, step_history=r.step_history, final_pipeline_context=PipelineContext(run_id=r.run_id, initial_prompt="in"), success=True, output=r.output)
asyncio.run(backend.save_state("pipeline-result", {"run_id": "pipeline-result", "last_step_output": stored}))
