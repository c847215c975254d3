"""Human-in-the-loop pauses, on every backend: what is stored, answers, refusals, restarts."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field, RootModel, field_validator

from conftest import Store
from flujo import Flujo, PauseForInput, PipelineContext, Step
from flujo.exceptions import (
    FlujoError,
    InvalidInputError,
    PipelineError,
    PipelineMismatchError,
    RunNotFoundError,
    RunNotPausedError,
)
from flujo.serialization import TypeRegistry, register_type
from flujo.state import InMemoryBackend, PauseRequest, StateBackend


class Approval(BaseModel):
    approved: bool
    reviewer: str = Field(min_length=1)
    limit: Decimal | None = None


register_type(Approval, name="tests.approval")


class Ctx(PipelineContext):
    calls: list[str] = Field(default_factory=list)
    draft: str = ""


def new_id() -> str:
    return f"hitl-{uuid.uuid4().hex[:10]}"


def approval_pipeline() -> Any:
    def draft(order: str, *, context: Ctx) -> str:
        context.calls.append("draft")
        context.draft = f"ship {order}"
        return context.draft

    def apply(answer: Approval, *, context: Ctx) -> dict[str, Any]:
        context.calls.append("apply")
        assert type(answer) is Approval  # handed over with its exact type
        return {"approved": answer.approved, "by": answer.reviewer, "limit": answer.limit}

    return (Step.from_callable(draft)
            >> Step.human("approve", input_model=Approval, prompt="Approve the shipment?")
            >> Step.from_callable(apply))


def runner_on(backend: StateBackend) -> Flujo[Ctx]:
    return Flujo(approval_pipeline(), context_model=Ctx, state_backend=backend,
                 pipeline_name="approvals")


async def test_a_human_step_pauses_and_stores_what_it_waits_for(backend: StateBackend) -> None:
    rid = new_id()
    result = await runner_on(backend).run_async("o-1", run_id=rid)
    assert (result.status, result.success, result.output) == ("paused", False, None)
    pause = result.pause
    assert isinstance(pause, PauseRequest)
    assert (pause.step, pause.message, pause.input_type, pause.input_version) == (
        "approve", "Approve the shipment?", "tests.approval", 1)
    assert pause.input_schema == Approval.model_json_schema()
    assert [s.name for s in result.step_history] == ["draft"]

    stored = await backend.load_state(rid)
    assert stored is not None
    assert stored["status"] == "paused" and stored["pause"] == pause
    assert stored["current_step_index"] == 1
    assert stored["pipeline_context"]["draft"] == "ship o-1"
    paused = [r["run_id"] for r in await backend.list_runs(status="paused")]
    assert rid in paused
    assert rid not in [r["run_id"] for r in await backend.list_runs(status="running")]


async def test_running_a_paused_run_without_an_answer_returns_the_pause(
        backend: StateBackend) -> None:
    rid = new_id()
    runner = runner_on(backend)
    first = await runner.run_async("o-1", run_id=rid)
    record = await backend.load_record(rid)
    again = await runner.run_async("o-1", run_id=rid)
    assert again.status == "paused" and again.pause == first.pause
    assert again.final_pipeline_context.calls == ["draft"]  # nothing ran again
    after = await backend.load_record(rid)
    assert record is not None and after is not None and after.revision == record.revision


async def test_a_valid_answer_is_typed_in_the_history_and_handed_on(durable_store: Store) -> None:
    store = durable_store
    rid = new_id()
    backend = store.open()
    try:
        await runner_on(backend).run_async("o-1", run_id=rid)
    finally:
        await backend.close()
    reopened = store.open()  # another runner, another backend object: as after a restart
    try:
        result = await runner_on(reopened).run_async(
            run_id=rid, resume_input={"approved": True, "reviewer": "ana", "limit": "12.50"})
        assert result.success and result.status == "completed"
        assert result.output == {"approved": True, "by": "ana", "limit": Decimal("12.50")}
        answer = result.step_history[1]
        assert answer.name == "approve" and type(answer.output) is Approval
        assert answer.output.limit == Decimal("12.50")
        assert result.final_pipeline_context.calls == ["draft", "apply"]
        stored = await reopened.load_state(rid)
        assert stored is not None and stored["pause"] is None
        assert type(stored["step_history"][1].output) is Approval
    finally:
        await reopened.close()


@pytest.mark.parametrize("form", ["instance", "json-text", "json-bytes"])
async def test_answers_as_an_instance_or_json_text(form: str) -> None:
    backend = InMemoryBackend()
    rid = new_id()
    runner = runner_on(backend)
    await runner.run_async("o-2", run_id=rid)
    answer: Any = {
        "instance": Approval(approved=False, reviewer="bo"),
        "json-text": '{"approved": false, "reviewer": "bo"}',
        "json-bytes": b'{"approved": false, "reviewer": "bo"}',
    }[form]
    result = await runner.run_async(run_id=rid, resume_input=answer)
    assert result.output == {"approved": False, "by": "bo", "limit": None}


@pytest.mark.parametrize(("answer", "names"), [
    ({"approved": True}, "reviewer"),
    ({"approved": "perhaps", "reviewer": "x"}, "approved"),
    ({"approved": True, "reviewer": ""}, "reviewer"),
    ('{"approved": tru', "not JSON"),
    ('{"approved": true, "reviewer": "\\ud800"}', "not JSON"),  # an escaped lone surrogate
    (b'{"approved": true, "reviewer": "\xed\xa0\x80"}', "not JSON"),  # an encoded one
    ('{"approved": true, "reviewer": "x", "limit": 1e999}', "not JSON"),
    ('{"approved": NaN, "reviewer": "x"}', "not JSON"),
    ("[1, 2]", "JSON list"),
    (42, "got int"),
])
async def test_an_invalid_answer_is_refused_and_the_run_stays_paused(
        backend: StateBackend, answer: Any, names: str) -> None:
    rid = new_id()
    runner = runner_on(backend)
    await runner.run_async("o-3", run_id=rid)
    before = await backend.load_record(rid)
    with pytest.raises(InvalidInputError, match=names) as info:
        await runner.run_async(run_id=rid, resume_input=answer)
    assert isinstance(info.value, FlujoError) and isinstance(info.value, ValueError)
    assert rid in str(info.value)
    after = await backend.load_record(rid)
    assert before is not None and after is not None
    assert (after.revision, after.state.status) == (before.revision, "paused")
    # Nothing was consumed: a valid answer still goes through.
    result = await runner.run_async(run_id=rid, resume_input={"approved": True, "reviewer": "c"})
    assert result.success


async def test_the_errors_of_an_invalid_answer_are_kept_for_callers() -> None:
    backend = InMemoryBackend()
    rid = new_id()
    runner = runner_on(backend)
    await runner.run_async("o", run_id=rid)
    with pytest.raises(InvalidInputError) as info:
        await runner.run_async(run_id=rid, resume_input={"approved": "x"})
    assert sorted(e["loc"][0] for e in info.value.errors) == ["approved", "reviewer"]


async def test_an_answer_for_a_run_that_awaits_none_is_refused(backend: StateBackend) -> None:
    rid = new_id()
    runner = runner_on(backend)
    with pytest.raises(RunNotFoundError):
        await runner.run_async(run_id=rid, resume_input={"approved": True, "reviewer": "a"})
    await runner.run_async("o", run_id=rid)
    done = await runner.run_async(run_id=rid, resume_input={"approved": True, "reviewer": "a"})
    assert done.success
    record = await backend.load_record(rid)
    with pytest.raises(RunNotPausedError, match="completed"):
        await runner.run_async(run_id=rid, resume_input={"approved": True, "reviewer": "a"})
    after = await backend.load_record(rid)
    assert record is not None and after is not None and after.revision == record.revision
    # The answer was applied once: one "approve" entry in the history.
    assert [s.name for s in after.state.step_history] == ["draft", "approve", "apply"]


def test_resume_is_the_blocking_form(tmp_path: Any) -> None:
    runner = runner_on(InMemoryBackend())
    rid = new_id()
    assert runner.run("o", run_id=rid).status == "paused"
    result = runner.resume(rid, Approval(approved=True, reviewer="z"))
    assert result.success and result.output["by"] == "z"


class Review(BaseModel):
    verdict: Literal["accept", "reject"]


register_type(Review, name="tests.review")


async def test_pause_for_input_keeps_the_steps_context_and_the_answer_is_its_output(
        backend: StateBackend) -> None:
    def review(text: str, *, context: Ctx) -> Any:
        context.calls.append("review")
        context.draft = text.upper()
        raise PauseForInput(Review, message=f"Review {text!r}")

    def publish(verdict: Review, *, context: Ctx) -> str:
        context.calls.append("publish")
        return f"{verdict.verdict}: {context.draft}"

    runner = Flujo(Step.from_callable(review) >> Step.from_callable(publish),
                   context_model=Ctx, state_backend=backend, pipeline_name="reviews")
    rid = new_id()
    paused = await runner.run_async("draft", run_id=rid)
    assert paused.status == "paused" and paused.pause is not None
    assert (paused.pause.step, paused.pause.message, paused.pause.input_type) == (
        "review", "Review 'draft'", "tests.review")
    assert paused.final_pipeline_context.draft == "DRAFT"  # the context as the step left it
    done = await runner.run_async(run_id=rid, resume_input={"verdict": "accept"})
    assert done.output == "accept: DRAFT"
    assert done.final_pipeline_context.calls == ["review", "publish"]  # review not re-run
    assert type(done.step_history[0].output) is Review


async def test_a_paused_run_survives_a_pipeline_version_migration() -> None:
    backend = InMemoryBackend()
    rid = new_id()
    await runner_on(backend).run_async("o", run_id=rid)

    def to_v2(state: Any) -> Any:
        state.pipeline_context["draft"] = state.pipeline_context["draft"] + " (v2)"
        return state

    v2 = Flujo(approval_pipeline(), context_model=Ctx, state_backend=backend,
               pipeline_name="approvals", pipeline_version="2", version_migrations={"1": to_v2})
    still = await v2.run_async(run_id=rid)
    assert still.status == "paused"
    result = await v2.run_async(run_id=rid, resume_input={"approved": True, "reviewer": "v"})
    assert result.success and result.final_pipeline_context.draft == "ship o (v2)"


async def test_an_answer_written_for_an_older_input_model_is_migrated() -> None:
    """The pause declared version 1 of the model; the deployment that answers has version 2
    (``reviewer`` renamed ``approver``): an answer written for version 1 is migrated first."""

    class ApprovalV1(BaseModel):
        approved: bool
        reviewer: str

    class ApprovalV2(BaseModel):
        approved: bool
        approver: str

    old_registry, new_registry = TypeRegistry(), TypeRegistry()
    old_registry.register_type(ApprovalV1, name="tests.versioned-approval")

    def rename(data: dict[str, Any]) -> dict[str, Any]:
        data = dict(data)
        data["approver"] = data.pop("reviewer")
        return data

    new_registry.register_type(ApprovalV2, name="tests.versioned-approval", version=2,
                               migrations={1: rename})

    def build(model: type[BaseModel], registry: TypeRegistry,
              backend: InMemoryBackend | None = None) -> tuple[Flujo[Ctx], InMemoryBackend]:
        store = backend or InMemoryBackend(registry=registry)
        pipeline = (Step.from_callable(lambda x: x, name="start")
                    >> Step.human("approve", input_model=model)
                    >> Step.from_callable(lambda a: a, name="done"))
        return Flujo(pipeline, context_model=Ctx, state_backend=store,
                     pipeline_name="versioned"), store

    old_runner, old_store = build(ApprovalV1, old_registry)
    rid = new_id()
    paused = await old_runner.run_async("x", run_id=rid)
    assert paused.pause is not None and paused.pause.input_version == 1
    new_store = InMemoryBackend(registry=new_registry)
    new_store.put_raw(rid, old_store.raw_records()[rid])
    # the head may be a delta of the records before it: the whole chain moves (as
    # test_contract's put_kept_raw stores kept records)
    new_store._history[rid] = dict(old_store._history.get(rid, {}))
    new_runner, _ = build(ApprovalV2, new_registry, new_store)
    result = await new_runner.run_async(run_id=rid,
                                        resume_input={"approved": True, "reviewer": "old"})
    assert result.output == ApprovalV2(approved=True, approver="old")


async def test_a_pause_for_a_model_this_process_does_not_know_is_refused_clearly() -> None:
    backend = InMemoryBackend()
    rid = new_id()

    class Unknown(BaseModel):
        ok: bool

    registry_name = "tests.unknown-approval"
    backend.codec.registry.register_type(Unknown, name=registry_name)

    def ask(x: Any) -> Any:
        raise PauseForInput(Unknown)

    runner = Flujo(Step.from_callable(ask) >> Step.from_callable(lambda a: a, name="after"),
                   state_backend=backend, pipeline_name="p")
    await runner.run_async("x", run_id=rid)
    record = await backend.load_record(rid)
    assert record is not None and record.state.pause is not None
    moved = record.state.pause.model_copy(update={"input_type": "tests.gone"})
    await backend.save_state(rid, record.state.model_copy(update={"pause": moved}))
    with pytest.raises(PipelineMismatchError, match=r"tests\.gone"):
        await runner.run_async(run_id=rid, resume_input={"ok": True})


async def test_pausing_for_something_that_is_not_a_model_fails_the_step_clearly() -> None:
    def ask(x: Any) -> Any:
        raise PauseForInput(dict, message="?")  # type: ignore[arg-type]

    backend = InMemoryBackend()
    runner = Flujo(Step.from_callable(ask), state_backend=backend)
    result = await runner.run_async("x", run_id="not-a-model")
    assert result.status == "failed"  # recorded as the step's error, not left "running"
    assert "pydantic model class" in (result.step_history[-1].feedback or "")
    stored = await backend.load_state("not-a-model")
    assert stored is not None and stored["status"] == "failed"


class Opaque:
    pass


class NoSchema(BaseModel):
    model_config = {"arbitrary_types_allowed": True}
    thing: Opaque | None = None


async def test_a_model_without_a_json_schema_cannot_be_asked_for() -> None:
    with pytest.raises(PipelineError, match="JSON Schema cannot be generated"):
        Step.human("ask", input_model=NoSchema)

    def ask(x: Any) -> Any:
        raise PauseForInput(NoSchema)

    backend = InMemoryBackend()
    result = await Flujo(Step.from_callable(ask), state_backend=backend).run_async(
        "x", run_id="no-schema")
    assert result.status == "failed"
    assert "JSON Schema cannot be generated" in (result.step_history[-1].feedback or "")


class Capped(BaseModel):
    approved: bool
    cap: float = float("inf")


def test_a_model_with_an_infinite_default_can_be_asked_for() -> None:
    """Its JSON Schema holds inf (pydantic writes it so); it is describable all the same."""
    step = Step.human("ask", input_model=Capped)
    assert step.name == "ask"


class Secret(BaseModel):
    approved: bool
    token: str = Field(exclude=True)


class Shout(BaseModel):
    word: str

    @field_validator("word")
    @classmethod
    def _bang(cls, value: str) -> str:
        return value + "!"


register_type(Secret, name="tests.secret-answer")
register_type(Shout, name="tests.shout-answer")


@pytest.mark.parametrize("answer", [Secret(approved=True, token="t"), Shout(word="hi")])
async def test_an_instance_answer_is_taken_as_it_is(answer: BaseModel) -> None:
    backend = InMemoryBackend()
    runner = Flujo(Step.human("ask", input_model=type(answer)), state_backend=backend)
    await runner.run_async(run_id="inst")
    result = await runner.run_async(run_id="inst", resume_input=answer)
    assert result.success and result.output == answer  # "hi!" stays "hi!", token kept
    stored = await backend.load_state("inst")
    assert stored is not None and stored["step_history"][0].output == answer


class Tags(RootModel[list[str]]):
    pass


register_type(Tags, name="tests.tags-answer")


@pytest.mark.parametrize("answer", ['["a", "b"]', ["a", "b"], Tags(["a", "b"])])
async def test_a_root_model_is_answered_with_its_value(answer: Any) -> None:
    runner = Flujo(Step.human("tags", input_model=Tags), state_backend=InMemoryBackend())
    await runner.run_async(run_id="tags")
    result = await runner.run_async(run_id="tags", resume_input=answer)
    assert result.output == Tags(["a", "b"])


async def test_failed_attempts_before_a_pause_stay_in_the_answers_record() -> None:
    calls: list[int] = []

    def flaky_then_ask(x: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("down")
        raise PauseForInput(Review, message="?")

    backend = InMemoryBackend()
    runner = Flujo(Step.from_callable(flaky_then_ask, retries=2), state_backend=backend)
    assert (await runner.run_async("x", run_id="p-retry")).status == "paused"
    result = await runner.run_async(run_id="p-retry", resume_input={"verdict": "accept"})
    [answered] = result.step_history
    assert answered.attempts == 2
    assert [f.error for f in answered.failed_attempts] == ["ConnectionError: down"]


def test_human_steps_are_checked_when_defined() -> None:
    with pytest.raises(PipelineError, match="input_model must be a pydantic model"):
        Step.human("ask", input_model=dict)  # type: ignore[arg-type]
    with pytest.raises(PipelineError, match="a human step needs a name"):
        Step.human("", input_model=Approval)
