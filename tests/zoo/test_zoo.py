"""Objects of real SDKs, built the way applications get them, come back exactly (type at
every node, extras, ``model_fields_set``, private and plain attributes, as pickle brings
them back) through ``safe_serialize``, JSON text, every backend and a fresh process; the few
flujo cannot store are refused when saved, naming the class and the path."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from flujo.exceptions import UnserializableTypeError
from flujo.serialization import (
    TRUSTED_MODULES_ENV,
    deserialize_from_json,
    safe_deserialize,
    safe_serialize,
    serialize_to_bytes,
    serialize_to_json,
)
from flujo.state import FileBackend, InMemoryBackend, PostgresBackend, SQLiteBackend
from flujo.state.backends import StateBackend
from flujo.state.models import WorkflowState
from flujo.testing import assert_identical, assert_round_trip

from . import objects

STORED = objects.stored()
REFUSED = objects.refused()
TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"


@pytest.mark.parametrize("case", sorted(STORED))
def test_an_sdk_object_comes_back_exactly_as_pickle_brings_it_back(case: str) -> None:
    value = STORED[case]
    back = assert_round_trip(value)  # strict: type identity at every node, the whole state
    if objects.unpicklable(value):
        with pytest.raises(pickle.PicklingError):
            pickle.dumps(value)
    else:
        assert_identical(back, pickle.loads(pickle.dumps(value)))
    text = serialize_to_json(value)  # the typed parts as pydantic-core's own JSON text
    assert text.encode() == orjson.dumps(safe_serialize(value))  # the same as the data's
    assert_identical(deserialize_from_json(text), value)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_flujo_cannot_store_is_refused_when_saved_naming_class_and_path(case: str) -> None:
    value, class_name, path = REFUSED[case]
    for encode in (safe_serialize, serialize_to_bytes):
        with pytest.raises(UnserializableTypeError) as info:
            encode({"kept": value})
        assert info.value.path == "$.kept" + path[1:]
        assert class_name in str(info.value)


BACKENDS: dict[str, Callable[[Path, Any], StateBackend]] = {
    "memory": lambda tmp, pg: InMemoryBackend(),
    "file": lambda tmp, pg: FileBackend(tmp / "store"),
    "sqlite": lambda tmp, pg: SQLiteBackend(tmp / "state.db"),
    "postgres": lambda tmp, pg: PostgresBackend(pg[0], schema=pg[1], table="zoo",
                                                min_size=1, max_size=2),
}


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateBackend]:
    target = (request.getfixturevalue("postgres_schemas")("flujo_zoo")
              if request.param == "postgres" else None)
    made = BACKENDS[request.param](tmp_path, target)
    try:
        yield made
    finally:
        await made.close()


async def test_every_backend_gives_every_sdk_object_back_exactly(backend: StateBackend) -> None:
    run_id = f"zoo-{uuid.uuid4().hex[:8]}"
    state = WorkflowState(run_id=run_id, pipeline_name="zoo", pipeline_context=dict(STORED),
                          last_step_output=STORED["openai.parsed"],
                          step_history=[STORED["langchain.chunks"]])
    await backend.save_state(run_id, state)
    record = await backend.load_record(run_id)
    assert record is not None
    loaded = record.state
    for case, value in STORED.items():
        assert_identical(loaded.pipeline_context[case], value)
    assert_identical(loaded.last_step_output, STORED["openai.parsed"])
    assert_identical(loaded.step_history, [STORED["langchain.chunks"]])


def test_a_restored_openai_message_sent_back_makes_the_same_request() -> None:
    import openai

    bodies: list[bytes] = []

    def reply(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return objects._openai_reply(request)

    client = openai.OpenAI(api_key="sk-test", base_url="http://test/v1",
                           http_client=httpx.Client(transport=httpx.MockTransport(reply)))
    message = STORED["openai.message"]
    restored = safe_deserialize(json.loads(serialize_to_json(message)))
    for sent in (message, restored):
        client.chat.completions.create(model="gpt-4o", messages=[
            {"role": "user", "content": "hi"}, sent.model_dump(exclude_unset=True)])
    assert bodies[0] == bodies[1]
    completion = safe_deserialize(safe_serialize(STORED["openai.completion"]))
    assert completion._request_id == "req_123"
    assert completion.to_dict() == STORED["openai.completion"].to_dict()


def test_a_pydantic_ai_agent_continues_from_restored_history_as_from_the_original() -> None:
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelResponse, TextPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    seen: list[Any] = []

    def model(messages: list[Any], info: AgentInfo) -> ModelResponse:
        seen.append(messages)
        return ModelResponse(parts=[TextPart(f"{len(messages)} messages")])

    agent = Agent(FunctionModel(model))
    history = STORED["pydantic_ai.history"]
    restored = safe_deserialize(json.loads(serialize_to_json(history)))
    outputs = [agent.run_sync("again", message_history=h).output for h in (history, restored)]
    assert outputs[0] == outputs[1]
    assert_identical(seen[1][:len(history)], seen[0][:len(history)])


READER = """
import json, pickle, sys
import anthropic, google.genai, langchain_core.messages, mcp.types, openai, pydantic_ai
import pydantic_settings
import zoo.apps
from flujo.serialization import deserialize_from_json, serialize_to_json
from flujo.testing import assert_identical

before = set(sys.modules)
lazy = [m for m in ("langchain_core.messages.ai", "langchain_core.messages.tool") if m in before]
parsed = [c.__qualname__ for c in openai.types.chat.ParsedChatCompletion.__subclasses__()]
try:
    values = deserialize_from_json(open(sys.argv[1], "rb").read())
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    raise SystemExit(0)
expected = pickle.loads(open(sys.argv[2], "rb").read())
for case in expected:
    assert_identical(values[case], expected[case])
# and every value, pickle's or not, is written again exactly as it was read
assert serialize_to_json(values).encode() == open(sys.argv[1], "rb").read()
watched = ("langchain_core.messages", "openai.types.chat")
imported = sorted(m for m in set(sys.modules) - before if m.startswith(watched))
print(json.dumps({"cases": sorted(values), "lazy_before": lazy, "parsed_before": parsed,
                  "imported": imported}))
"""
WRITER = """
import pickle, sys
from zoo import objects
from flujo.serialization import serialize_to_json
values = objects.stored()
open(sys.argv[1], "w").write(serialize_to_json(values))
open(sys.argv[2], "wb").write(pickle.dumps(objects.picklable(values)))
"""


def _python(code: str, *args: str, env: dict[str, str]) -> dict[str, Any]:
    environment = {k: v for k, v in os.environ.items() if k != TRUSTED_MODULES_ENV}
    environment.update(PYTHONPATH=os.pathsep.join([str(TESTS), str(SRC)]), **env)
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=environment, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    if not done.stdout.strip():
        return {}
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_a_fresh_process_that_trusts_the_sdks_reads_every_object(tmp_path: Path) -> None:
    data, pickled = str(tmp_path / "zoo.json"), str(tmp_path / "zoo.pickle")
    _python(WRITER, data, pickled, env={})
    untrusted = _python(READER, data, pickled, env={})
    assert untrusted["error"] == "UnknownTypeError", untrusted
    trusted = _python(READER, data, pickled, env={
        # every SDK, as an application using them all would (their type variables share names)
        TRUSTED_MODULES_ENV: "langchain_core,openai,anthropic,pydantic_ai,mcp,google.genai"})
    assert trusted.get("cases") == sorted(STORED), trusted
    # what the reader had to import or create: lazily loaded langchain submodules, and the
    # parametrization openai makes only inside parse()
    assert trusted["parsed_before"] == []
    assert "langchain_core.messages.ai" not in trusted["lazy_before"]
    assert "langchain_core.messages.ai" in trusted["imported"]


STORE_WRITER = """
import asyncio, sys
from zoo import objects
from flujo.state import SQLiteBackend, WorkflowState

values = objects.stored()  # pydantic-ai's run_sync runs its own event loop: outside main()

async def main():
    backend = SQLiteBackend(sys.argv[1])
    state = WorkflowState(run_id="zoo-run", pipeline_name="zoo", pipeline_context={
        "parsed": values["openai.parsed"], "chunks": values["langchain.chunks"],
        "history": values["pydantic_ai.history"]})
    await backend.save_state("zoo-run", state)
    await backend.close()

asyncio.run(main())
"""


def test_flujo_state_show_reads_sdk_objects_with_trusted_modules_from_pyproject(
        tmp_path: Path) -> None:
    store = tmp_path / "state.db"
    _python(STORE_WRITER, str(store), env={})
    flujo = Path(sys.executable).with_name("flujo")
    environment = {k: v for k, v in os.environ.items() if k != TRUSTED_MODULES_ENV}
    environment["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(SRC)])

    def show() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(flujo), "state", "show", "zoo-run", "--store", f"sqlite:///{store}"],
            capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=300,
            check=False)

    (tmp_path / "pyproject.toml").write_text('[tool.flujo]\nmodules = ["zoo.apps"]\n')
    refused = show()
    assert refused.returncode != 0
    assert "trusted_modules" in refused.stderr
    (tmp_path / "pyproject.toml").write_text(
        '[tool.flujo]\nmodules = ["zoo.apps"]\n'
        'trusted_modules = ["openai", "langchain_core", "pydantic_ai"]\n')
    shown = show()
    assert shown.returncode == 0, shown.stderr
    for text in ("ParsedChatCompletion[", "Answer(city='Paris'",
                 "AIMessageChunk(content='streamed reply'", "ToolCallPart(tool_name="):
        assert text in shown.stdout
