"""Runs saved by flujo 0.9's runner (tests/golden/runner/0.9) resume and read with today's:
``step_names``/``failure`` land in the declared fields, StepResult and PipelineResult
version 1 migrate to version 2, nothing is lost."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

from flujo import Flujo, PipelineContext, PipelineResult, Step, StepResult
from flujo.state import FileBackend, migrate_all

GOLDEN = Path(__file__).parent.parent / "golden" / "runner" / "0.9"


class Ctx(PipelineContext):
    total: Decimal = Decimal("0")


def runner(backend: FileBackend, calls: list[str]) -> Flujo[Ctx]:
    def first(x: Any, *, context: Ctx) -> Any:
        calls.append("first")
        return {"n": 1}

    def second(x: Any, *, context: Ctx) -> Any:
        calls.append("second")
        return {"n": 2}

    return Flujo(Step.from_callable(first) >> Step.from_callable(second), context_model=Ctx,
                 state_backend=backend, pipeline_name="golden-runner", pipeline_version="1")


def store(tmp_path: Path) -> FileBackend:
    shutil.copytree(GOLDEN, tmp_path / "runs")
    return FileBackend(tmp_path / "runs")


async def test_a_failed_run_of_0_9_resumes_with_its_failure_declared(tmp_path: Path) -> None:
    backend = store(tmp_path)
    record = await backend.load_record("runner-failed")
    assert record is not None
    state = record.state
    assert state.step_names == ["first", "second"] and not state.model_extra
    assert type(state.failure) is StepResult and state.failure.failed_attempts == []
    assert state.failure.feedback == "RuntimeError: second failed"
    calls: list[str] = []
    result = await runner(backend, calls).run_async(run_id="runner-failed")
    assert result.success and calls == ["second"]
    second = result.step_history[-1]
    assert second.attempts == 2 and second.failed_attempts == []  # 0.9 kept no attempt log
    assert result.final_pipeline_context.total == Decimal("1.50")


async def test_a_completed_run_of_0_9_is_returned_as_it_is(tmp_path: Path) -> None:
    backend = store(tmp_path)
    calls: list[str] = []
    result = await runner(backend, calls).run_async(run_id="runner-completed")
    assert result.success and result.status == "completed" and calls == []
    assert [type(s) for s in result.step_history] == [StepResult, StepResult]


async def test_a_pipeline_result_of_0_9_reads_as_version_2(tmp_path: Path) -> None:
    backend = store(tmp_path)
    loaded = await backend.load_state("pipeline-result")
    assert loaded is not None
    value = loaded["last_step_output"]
    assert type(value) is PipelineResult
    assert (value.status, value.pause, value.success) == ("completed", None, True)
    assert [s.name for s in value.step_history] == ["first", "second"]
    report = await migrate_all(backend)  # rewritten at the current versions
    assert report.ok and len(report.changed) == 3
    again = await backend.read_envelope("pipeline-result")
    assert again is not None and again.manifest["flujo.PipelineResult"] == 2
