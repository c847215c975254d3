"""The runner's rules, on every backend: run ids, resume, failures, mismatches, claims."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from crash_pipeline import (
    CRASH_IN_PROCESS,
    STEP_NAMES,
    CountingContext,
    Item,
    SimulatedCrash,
    build_counting_runner,
    build_runner,
)
from pydantic import Field

from flujo import Flujo, Pipeline, PipelineContext, PipelineResult, Step, StepResult
from flujo.exceptions import (
    FlujoError,
    PipelineError,
    PipelineMismatchError,
    RunIdConflictError,
    RunInProgressError,
    RunNotFoundError,
)
from flujo.state import (
    InMemoryBackend,
    SQLiteBackend,
    StateBackend,
    WorkflowState,
    migrate_all,
)


def new_id() -> str:
    return f"run-{uuid.uuid4().hex[:10]}"


class Ctx(PipelineContext):
    calls: list[str] = Field(default_factory=list)


def counting_pipeline(fail_on: set[str] | None = None) -> Pipeline:
    failures = fail_on if fail_on is not None else set()

    def make(name: str) -> Step:
        def step(data: Any, *, context: Ctx) -> Any:
            context.calls.append(name)
            if name in failures:
                raise RuntimeError(f"{name} failed")
            return (data, name)
        return Step.from_callable(step, name=name)

    return make("a") >> make("b") >> make("c")


async def test_run_id_is_set_on_the_context_before_the_first_step(backend: StateBackend) -> None:
    seen: list[str] = []

    def first(data: str, *, context: PipelineContext) -> str:
        seen.append(context.run_id)
        return data

    rid = new_id()
    result = await Flujo(Step.from_callable(first), state_backend=backend).run_async(
        "x", run_id=rid)
    assert seen == [rid]
    assert result.final_pipeline_context.run_id == rid
    assert result.run_id == rid


async def test_a_completed_run_is_returned_without_running_any_step(
        backend: StateBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "steps.log"
    monkeypatch.setenv("FLUJO_TEST_LOG", str(log))
    rid = new_id()
    first = await build_runner(backend).run_async("order", run_id=rid)
    assert first.success
    assert log.read_text().split() == list(STEP_NAMES)
    log.write_text("")
    again = [await build_runner(backend).run_async("other input", run_id=rid) for _ in range(3)]
    assert log.read_text() == ""
    for result in again:
        assert result.output == first.output
        assert [s.name for s in result.step_history] == list(STEP_NAMES)
        assert type(result.output["amount"]) is Decimal


async def test_a_failed_step_is_recorded_and_re_executed_on_resume(backend: StateBackend) -> None:
    rid = new_id()
    failed = await Flujo(counting_pipeline({"b"}), context_model=Ctx,
                         state_backend=backend).run_async("in", run_id=rid)
    assert not failed.success
    assert [(s.name, s.success) for s in failed.step_history] == [("a", True), ("b", False)]
    assert failed.step_history[-1].feedback == "RuntimeError: b failed"
    record = await backend.load_state(rid)
    assert record is not None
    assert record["status"] == "failed"
    assert record["current_step_index"] == 1
    assert "b failed" in record["error"]

    resumed = await Flujo(counting_pipeline(), context_model=Ctx,
                          state_backend=backend).run_async("in", run_id=rid)
    assert resumed.success
    assert [(s.name, s.attempts) for s in resumed.step_history] == [("a", 1), ("b", 2), ("c", 1)]
    # the failed attempt's append to the context was dropped with the rest of its changes
    assert failed.final_pipeline_context.calls == ["a"]
    assert resumed.final_pipeline_context.calls == ["a", "b", "c"]
    assert resumed.output == ((("in", "a"), "b"), "c")


async def test_a_failed_step_saves_the_state_from_before_it_as_a_crash_leaves_it(
        backend: StateBackend) -> None:
    # was: the step's in-place changes were saved with the failure, so they compounded on
    # every retry (counter 1, 2, 3...) while a crash at the same point resumed from 0
    rid, crashed = new_id(), new_id()
    for attempt in range(1, 4):
        result = await build_counting_runner(backend).run_async("order", run_id=rid)
        assert not result.success
        assert result.step_history[-1].feedback == "RuntimeError: bump failed with counter 1"
        assert result.step_history[-1].attempts == attempt
        assert result.final_pipeline_context.counter == 0
    token = CRASH_IN_PROCESS.set("bump")
    try:
        with pytest.raises(SimulatedCrash):
            await build_counting_runner(backend).run_async("order", run_id=crashed)
    finally:
        CRASH_IN_PROCESS.reset(token)
    failed, after_crash = await backend.load_state(rid), await backend.load_state(crashed)
    assert failed is not None and after_crash is not None
    assert failed["pipeline_context"] == {**after_crash["pipeline_context"], "run_id": rid}
    assert failed["pipeline_context"]["counter"] == 0
    assert failed["pipeline_context"]["scratchpad"] == {"order": "order"}
    for field in ("current_step_index", "last_step_output"):
        assert_same(failed[field], after_crash[field])
    assert [s.name for s in failed["step_history"]] == ["start"]
    assert [s.name for s in after_crash["step_history"]] == ["start"]
    assert failed["last_step_output"] == ["order"]  # the input, as the step got it
    assert (failed["status"], failed["failure"].attempts) == ("failed", 3)


async def test_a_step_that_succeeds_after_failing_saves_its_own_changes_once(
        backend: StateBackend) -> None:
    attempts: list[int] = []

    def flaky(data: Any, *, context: CountingContext) -> Any:
        context.counter += 1
        attempts.append(context.counter)
        if len(attempts) < 3:
            raise RuntimeError("not yet")
        return context.counter

    rid = new_id()
    runner = Flujo(Step.from_callable(flaky), context_model=CountingContext,
                   state_backend=backend)
    results = [await runner.run_async(None, run_id=rid) for _ in range(3)]
    assert [r.success for r in results] == [False, False, True]
    assert attempts == [1, 1, 1]
    assert results[-1].output == 1 and results[-1].final_pipeline_context.counter == 1
    saved = await backend.load_state(rid)
    assert saved is not None and saved["pipeline_context"]["counter"] == 1
    assert saved["step_history"][-1].attempts == 3


async def test_a_failure_right_after_a_version_migration_saves_the_migrated_state() -> None:
    backend = InMemoryBackend()
    rid = new_id()
    await build_counting_runner(backend).run_async("order", run_id=rid)

    def from_v1(state: WorkflowState) -> WorkflowState:
        context = {**state.pipeline_context, "counter": 10}
        return state.model_copy(update={"pipeline_context": context})

    pipeline = build_counting_runner(backend).pipeline
    v2 = Flujo(pipeline, context_model=CountingContext, state_backend=backend,
               pipeline_name="counting", pipeline_version="2", version_migrations={"1": from_v1})
    for _ in range(2):  # the second run reads the v2 state the first one saved
        result = await v2.run_async("order", run_id=rid)
        assert result.step_history[-1].feedback == "RuntimeError: bump failed with counter 11"
    saved = await backend.load_state(rid)
    assert saved is not None
    assert (saved["pipeline_version"], saved["pipeline_context"]["counter"]) == ("2", 10)


@pytest.mark.parametrize("crash_at", STEP_NAMES)
async def test_resumed_steps_receive_identical_types(backend: StateBackend, crash_at: str) -> None:
    rid = new_id()
    straight = await build_runner(InMemoryBackend()).run_async("order", run_id=rid)
    token = CRASH_IN_PROCESS.set(crash_at)
    try:
        with pytest.raises(SimulatedCrash):
            await build_runner(backend).run_async("order", run_id=rid)
    finally:
        CRASH_IN_PROCESS.reset(token)
    resumed = await build_runner(backend).run_async("order", run_id=rid)
    assert_same(resumed.output, straight.output)
    assert_same(resumed.final_pipeline_context, straight.final_pipeline_context)
    assert [s.name for s in resumed.step_history] == list(STEP_NAMES)
    assert resumed.final_pipeline_context.items[0].added.tzinfo.key == "Europe/Paris"


def assert_same(a: Any, b: Any) -> None:
    """Equal, with the same type at every level."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, PipelineContext | Item):
        assert_same(dict(a), dict(b))
    else:
        assert a == b


async def test_without_run_id_a_fresh_id_and_no_file(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLUJO_STATE_URI", raising=False)
    runner = Flujo(counting_pipeline(), context_model=Ctx)
    first = await runner.run_async("x")
    second = await runner.run_async("x")
    assert first.run_id != second.run_id
    assert first.run_id.startswith("run_")
    assert list(tmp_path.iterdir()) == []
    assert isinstance(runner.backend, InMemoryBackend)


async def test_in_memory_default_lets_a_failed_run_resume_in_process() -> None:
    rid = new_id()
    runner = Flujo(counting_pipeline({"c"}), context_model=Ctx)
    assert not (await runner.run_async("x", run_id=rid)).success
    runner.pipeline = counting_pipeline()
    assert (await runner.run_async("x", run_id=rid)).success


def test_state_uri_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUJO_STATE_URI", f"sqlite:///{tmp_path / 'env.db'}")
    runner = Flujo(counting_pipeline(), context_model=Ctx)
    assert isinstance(runner.backend, SQLiteBackend)
    assert runner.run("x", run_id="env-run").success
    assert (tmp_path / "env.db").exists()


def test_uri_string_backend(tmp_path: Path) -> None:
    runner = Flujo(counting_pipeline(), context_model=Ctx,
                   state_backend=f"file://{tmp_path / 'files'}")
    assert runner.run("x", run_id="uri-run").success
    assert any((tmp_path / "files").iterdir())


async def test_legacy_initial_context_run_id(backend: StateBackend) -> None:
    rid = new_id()
    runner = Flujo(counting_pipeline(), context_model=Ctx, state_backend=backend)
    with pytest.warns(DeprecationWarning, match=r"pass run_id=") as caught:
        result = await runner.run_async("x", initial_context_data={"run_id": rid})
    assert caught[0].filename == __file__  # the warning points at the caller's line
    assert result.run_id == rid
    assert await backend.load_state(rid) is not None
    with pytest.warns(DeprecationWarning):
        same = await runner.run_async("x", run_id=rid, initial_context_data={"run_id": rid})
    assert same.success


async def test_legacy_constructor_initial_context_data(backend: StateBackend) -> None:
    """Upstream flujo took initial_context_data (run_id included) in the constructor."""
    rid = new_id()
    runner = Flujo(counting_pipeline(), context_model=Ctx, state_backend=backend,
                   initial_context_data={"run_id": rid, "initial_prompt": "from init"})
    with pytest.warns(DeprecationWarning, match=r"pass run_id="):
        result = await runner.run_async("x")
    assert result.run_id == rid and result.final_pipeline_context.run_id == rid
    assert result.final_pipeline_context.initial_prompt == "from init"
    with pytest.warns(DeprecationWarning):  # the per-run argument wins over the constructor's
        other = await runner.run_async("x", initial_context_data={"run_id": rid + "-2"})
    assert other.run_id == rid + "-2"


async def test_conflicting_run_ids_are_refused() -> None:
    runner = Flujo(counting_pipeline(), context_model=Ctx)
    with pytest.raises(RunIdConflictError, match="disagree") as info, \
            pytest.warns(DeprecationWarning):
        await runner.run_async("x", run_id="a", initial_context_data={"run_id": "b"})
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, FlujoError)


@pytest.mark.parametrize("change", ["steps", "version", "name"])
async def test_resuming_with_a_different_pipeline_is_refused(backend: StateBackend,
                                                             change: str) -> None:
    rid = new_id()
    await Flujo(counting_pipeline({"b"}), context_model=Ctx, state_backend=backend,
                pipeline_name="p", pipeline_version="1").run_async("x", run_id=rid)
    other = counting_pipeline()
    options: dict[str, Any] = {"pipeline_name": "p", "pipeline_version": "1"}
    if change == "steps":
        other = Pipeline(other.steps[:2])
    elif change == "version":
        options["pipeline_version"] = "2"
    else:
        options["pipeline_name"] = "q"
    with pytest.raises(PipelineMismatchError):
        await Flujo(other, context_model=Ctx, state_backend=backend, **options).run_async(
            "x", run_id=rid)
    record = await backend.load_state(rid)
    assert record is not None and record["status"] == "failed"  # untouched


async def test_a_version_migration_lets_an_old_run_resume(backend: StateBackend) -> None:
    rid = new_id()
    await Flujo(counting_pipeline({"b"}), context_model=Ctx, state_backend=backend,
                pipeline_version="1").run_async("x", run_id=rid)
    migrated: list[str] = []

    def from_v1(state: WorkflowState) -> WorkflowState:
        migrated.append(state.pipeline_version)
        return state

    result = await Flujo(counting_pipeline(), context_model=Ctx, state_backend=backend,
                         pipeline_version="2", version_migrations={"1": from_v1}).run_async(
        "x", run_id=rid)
    assert result.success and migrated == ["1"]
    stored = await backend.load_state(rid)
    assert stored is not None and stored["pipeline_version"] == "2"


async def test_delete_on_completion(backend: StateBackend) -> None:
    rid = new_id()
    runner = Flujo(counting_pipeline(), context_model=Ctx, state_backend=backend,
                   delete_on_completion=True)
    assert (await runner.run_async("x", run_id=rid)).success
    assert await backend.load_state(rid) is None


async def test_async_iteration_yields_each_step_then_the_result(backend: StateBackend) -> None:
    handle = Flujo(counting_pipeline(), context_model=Ctx, state_backend=backend).run_async(
        "x", run_id=new_id())
    names = [step.name async for step in handle]
    assert names == ["a", "b", "c"]
    assert isinstance(handle.result, PipelineResult) and handle.result.success
    assert all(isinstance(s, StepResult) for s in handle.result.step_history)


async def test_two_workers_on_one_run_exactly_one_executes(backend: StateBackend) -> None:
    rid = new_id()
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(data: str) -> str:
        started.set()
        await release.wait()
        return data

    runner = Flujo(Step.from_callable(slow), state_backend=backend)
    first = asyncio.ensure_future(runner.run_async("x", run_id=rid))
    await started.wait()
    with pytest.raises(RunInProgressError):
        await Flujo(Step.from_callable(slow), state_backend=backend).run_async("x", run_id=rid)
    release.set()
    assert (await first).success


async def test_claim_timeout_waits_for_the_other_worker() -> None:
    backend = InMemoryBackend()
    rid = new_id()
    release = asyncio.Event()

    async def slow(data: str) -> str:
        await release.wait()
        return data

    first = asyncio.ensure_future(
        Flujo(Step.from_callable(slow), state_backend=backend).run_async("x", run_id=rid))
    await asyncio.sleep(0.01)
    waiter = asyncio.ensure_future(
        Flujo(Step.from_callable(slow), state_backend=backend, claim_timeout=5).run_async(
            "x", run_id=rid))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    release.set()
    assert (await first).success
    assert (await waiter).success  # found the run completed


async def test_unserializable_output_fails_the_save_and_keeps_the_previous_state(
        backend: StateBackend) -> None:
    class Opaque:
        pass

    def bad(data: str) -> Opaque:
        return Opaque()

    rid = new_id()
    runner = Flujo(counting_pipeline() >> Step.from_callable(bad), context_model=Ctx,
                   state_backend=backend)
    with pytest.raises(TypeError, match="Opaque"):
        await runner.run_async("x", run_id=rid)
    stored = await backend.load_state(rid)
    assert stored is not None and stored["current_step_index"] == 3


def test_sync_run_inside_an_event_loop_is_refused() -> None:
    async def inside() -> None:
        with pytest.raises(PipelineError, match="run_async"):
            Flujo(counting_pipeline(), context_model=Ctx).run("x")

    asyncio.run(inside())


def test_pipeline_definition_errors() -> None:
    def same(data: Any) -> Any:
        return data

    with pytest.raises(PipelineError, match="unique"):
        Step.from_callable(same) >> Step.from_callable(same)
    with pytest.raises(PipelineError, match="name"):
        Step.from_callable(lambda data: data)
    with pytest.raises(PipelineError, match="PipelineContext"):
        Flujo(Step.from_callable(same), context_model=dict)  # type: ignore[arg-type]
    assert os.environ.get("FLUJO_TEST_CRASH_AT") is None


def test_pipelines_built_with_rshift_are_independent_values() -> None:
    steps = [Step(f"s{i}", lambda data: data) for i in range(6)]
    base = steps[0] >> steps[1]
    longer = base >> steps[2]  # appends to the line base belongs to
    branch = base >> steps[3]  # base is no longer the longest: a copy
    both = longer >> (steps[4] >> steps[5])
    assert base.step_names == ["s0", "s1"] and len(base) == 2
    assert longer.step_names == ["s0", "s1", "s2"]
    assert branch.step_names == ["s0", "s1", "s3"]
    assert [s.name for s in both] == ["s0", "s1", "s2", "s4", "s5"] and len(both) == 5
    assert longer.steps == (steps[0], steps[1], steps[2])
    again = longer >> steps[3]  # s3 is in a branch, not in this line: allowed
    assert again.step_names == ["s0", "s1", "s2", "s3"]
    # refused on the appending path (again is the longest of its line) and on the copying
    # one (longer is not), for a step, a pipeline, and a pipeline made from a list
    for head in (again, longer):
        for repeat in (steps[1], steps[5] >> steps[0], Pipeline([steps[5], steps[2]])):
            with pytest.raises(PipelineError, match="repeated"):
                head >> repeat
    assert again.step_names == ["s0", "s1", "s2", "s3"]  # a refused >> changed nothing
    assert (again >> steps[4]).step_names == ["s0", "s1", "s2", "s3", "s4"]


def test_a_long_pipeline_built_step_by_step_keeps_every_step() -> None:
    steps = [Step(f"s{i}", lambda data: data) for i in range(3000)]
    pipeline = steps[0]
    for step in steps[1:]:
        pipeline = pipeline >> step  # linear: this loop was quadratic (0.3 s at 2,000)
    assert isinstance(pipeline, Pipeline) and pipeline.steps == tuple(steps)


class LegacyCtx(PipelineContext):
    client: str = ""
    rows: int = 0
    since: datetime | None = None


@pytest.mark.parametrize("migrated_first", [False, True])
async def test_a_run_saved_by_earlier_flujo_resumes_with_parsed_context(
        migrated_first: bool) -> None:
    backend = InMemoryBackend()
    legacy = {
        "run_id": "old-run", "pipeline_name": "golden", "pipeline_version": "0.9.2",
        "current_step_index": 1,
        "pipeline_context": {"client": "ACME", "rows": 42, "since": "2023-11-02T09:15:00+00:00"},
        "last_step_output": {"rows": 42},
        "step_history": [{"name": "extract", "success": True, "output": {"rows": 42}}],
        "status": "paused", "created_at": "2023-11-02T09:15:00",
        "updated_at": "2023-11-02T09:16:30", "error_message": None,
    }
    backend.put_raw("old-run", orjson.dumps(legacy))
    if migrated_first:  # rewritten as a current envelope: the context is still plain JSON
        report = await migrate_all(backend)
        assert [change.run_id for change in report.changed] == ["old-run"]
    seen: list[Any] = []

    def extract(data: Any, *, context: LegacyCtx) -> Any:
        raise AssertionError("a finished step must not run again")

    def load(data: Any, *, context: LegacyCtx) -> int:
        seen.append(context.since)
        return data["rows"] + context.rows

    runner = Flujo(Step.from_callable(extract) >> Step.from_callable(load),
                   context_model=LegacyCtx, state_backend=backend, pipeline_name="golden",
                   pipeline_version="0.9.2")
    result = await runner.run_async(None, run_id="old-run")
    assert result.success and result.output == 84
    assert seen == [datetime(2023, 11, 2, 9, 15, tzinfo=UTC)]
    assert [s.name for s in result.step_history] == ["extract", "load"]


@pytest.mark.parametrize("bad", ["", 42])
async def test_a_run_id_that_is_not_a_non_empty_str_is_refused(bad: Any) -> None:
    from flujo.exceptions import InvalidRunIdError

    with pytest.raises(InvalidRunIdError, match="non-empty str"):
        await Flujo(counting_pipeline(), context_model=Ctx).run_async("x", run_id=bad)


async def test_leaving_an_iteration_early_releases_the_claim(backend: StateBackend) -> None:
    rid = new_id()
    async with Flujo(counting_pipeline(), context_model=Ctx,
                     state_backend=backend).run_async("x", run_id=rid) as run:
        async for step in run:
            assert step.name == "a"
            break
    # Released at once: another worker resumes right away, after the saved step.
    resumed = await Flujo(counting_pipeline(), context_model=Ctx,
                          state_backend=backend).run_async("x", run_id=rid)
    assert resumed.success
    assert resumed.final_pipeline_context.calls == ["a", "b", "c"]


async def test_saves_pass_the_claim_only_to_a_save_state_that_takes_it() -> None:
    # A wrapper written for earlier flujo (no claim=) keeps working; the built-in save_state
    # gets the run's claim.
    backend = InMemoryBackend()
    seen: list[object] = []
    save_state = backend.save_state

    async def old_style(run_id: str, state: Any, *, expected_revision: int | None = None) -> int:
        return await save_state(run_id, state, expected_revision=expected_revision)

    async def new_style(run_id: str, state: Any, **options: Any) -> int:
        seen.append(options.get("claim"))
        return await save_state(run_id, state, **options)

    step = Step.from_callable(lambda data: f"{data}!", name="shout")
    for wrapper in (old_style, new_style):
        backend.save_state = wrapper  # type: ignore[method-assign]
        result = await Flujo(step, state_backend=backend).run_async("x", run_id=new_id())
        assert result.success and result.output == "x!"
    assert len(seen) == 2 and all(getattr(c, "run_id", None) for c in seen)


class SharedCtx(PipelineContext):
    a: list[str] = Field(default_factory=list)
    b: Any = None


async def test_objects_the_context_shares_stay_shared_on_resume(backend: StateBackend) -> None:
    """Two fields holding one list: after a failure and a resume from the store, a step that
    appends to one sees it in the other (docs/format.md, "Shared references and cycles")."""
    def alias(data: str, *, context: SharedCtx) -> str:
        context.b = {"same": context.a}
        context.a.append("x")
        return data

    def check(fail: bool) -> Step:
        def step(data: str, *, context: SharedCtx) -> Any:
            if fail:
                raise RuntimeError("not yet")
            context.a.append("y")
            return context.b["same"] is context.a, list(context.b["same"])
        return Step.from_callable(step, name="check")

    rid = new_id()
    first = await Flujo(Step.from_callable(alias, name="alias") >> check(True),
                        context_model=SharedCtx, state_backend=backend).run_async("in", run_id=rid)
    assert not first.success
    resumed = await Flujo(Step.from_callable(alias, name="alias") >> check(False),
                          context_model=SharedCtx, state_backend=backend).run_async("in",
                                                                                   run_id=rid)
    assert resumed.success
    assert resumed.output == (True, ["x", "y"])


# -- runs saved for another worker: create_run, run(create=False), unattended_runs ---------

async def test_a_created_run_is_executed_by_a_later_run_with_its_saved_input(
        backend: StateBackend) -> None:
    rid = await Flujo(counting_pipeline(), context_model=Ctx,
                      state_backend=backend).create_run_async(
        Decimal("1.50"), run_id=new_id(), initial_context_data={"calls": ["given"]})
    saved = await backend.load_state(rid)
    assert saved is not None
    assert (saved["status"], saved["current_step_index"]) == ("running", 0)
    assert type(saved["last_step_output"]) is Decimal
    result = await Flujo(counting_pipeline(), context_model=Ctx,
                         state_backend=backend).run_async(run_id=rid, create=False)
    assert result.success
    assert result.final_pipeline_context.calls == ["given", "a", "b", "c"]
    assert result.output == (((Decimal("1.50"), "a"), "b"), "c")


async def test_creating_an_existing_run_leaves_it_as_it_is(backend: StateBackend) -> None:
    runner = Flujo(counting_pipeline(), context_model=Ctx, state_backend=backend)
    rid = new_id()
    first = await runner.run_async("first", run_id=rid)
    before = await backend.load_record(rid)
    assert await runner.create_run_async("second", run_id=rid) == rid
    after = await backend.load_record(rid)
    assert before is not None and after is not None
    assert after.revision == before.revision
    assert (await runner.run_async(run_id=rid)).output == first.output


async def test_run_with_create_false_saves_nothing_for_an_unknown_run(
        backend: StateBackend) -> None:
    rid = new_id()
    with pytest.raises(RunNotFoundError, match="create=False"):
        await Flujo(counting_pipeline(), state_backend=backend).run_async(run_id=rid,
                                                                          create=False)
    assert await backend.load_state(rid) is None


async def test_unattended_runs_are_the_running_ones_nobody_holds(
        backend: StateBackend) -> None:
    runner = Flujo(counting_pipeline(), context_model=Ctx, state_backend=backend,
                   pipeline_name=f"p-{uuid.uuid4().hex[:8]}")
    waiting, held = new_id(), new_id()
    for rid in (waiting, held):
        await runner.create_run_async("x", run_id=rid)
    finished = (await runner.run_async("x")).run_id
    async with backend.claim(held):
        found = await runner.unattended_runs_async(older_than=timedelta(0))
    assert [rid for rid, _ in found] == [waiting]
    assert finished not in [rid for rid, _ in found]
    assert await runner.unattended_runs_async(older_than=timedelta(hours=1)) == []
