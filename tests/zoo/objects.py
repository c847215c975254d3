"""Objects as applications get them from real SDKs: the clients parse mocked HTTP responses
(no network), the frameworks run with their own test models.

``stored()`` are the objects flujo must give back exactly; ``refused()`` those it must refuse
when saving, with the class and the path of the part it cannot store (see
docs/stored-objects.md for why).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import httpx

from .apps import (
    Answer,
    Contact,
    Customer,
    LegacyOrder,
    Link,
    Paint,
    When,
    ZooSettings,
)

CHAT_COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o",
    "system_fingerprint": "fp_1", "service_tier": "default",
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
              "prompt_tokens_details": {"cached_tokens": 0}},
}
TOOL_CALL = {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def _openai_reply(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    if request.url.path.endswith("/responses"):
        return httpx.Response(200, headers={"x-request-id": "req_resp"}, json={
            "id": "resp_1", "object": "response", "created_at": 1700000000, "model": "gpt-4o",
            "status": "completed", "parallel_tool_calls": True, "tool_choice": "auto",
            "tools": [], "output": [{
                "type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "Hi", "annotations": []}]}],
            "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}}})
    if body.get("tools"):
        message: dict[str, Any] = {"role": "assistant", "content": None,
                                   "tool_calls": [TOOL_CALL]}
    elif body.get("response_format"):
        message = {"role": "assistant", "refusal": None,
                   "content": '{"city": "Paris", "population": 2100000}'}
    else:
        message = {"role": "assistant", "content": "Hello", "refusal": None}
    return httpx.Response(200, headers={"x-request-id": "req_123"}, json={
        **CHAT_COMPLETION,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}]})


def openai_objects() -> dict[str, Any]:
    import openai

    client = openai.OpenAI(api_key="sk-test", base_url="http://test/v1",
                           http_client=httpx.Client(transport=httpx.MockTransport(_openai_reply)))
    messages: Any = [{"role": "user", "content": "hi"}]
    tools: Any = [{"type": "function",
                   "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    completion = client.chat.completions.create(model="gpt-4o", messages=messages)
    return {
        "openai.completion": completion,
        "openai.message": completion.choices[0].message,
        "openai.tool_calls": client.chat.completions.create(
            model="gpt-4o", messages=messages, tools=tools),
        "openai.parsed": client.chat.completions.parse(
            model="gpt-4o", messages=messages, response_format=Answer),
        "openai.response": client.responses.create(model="gpt-4o", input="hi"),
    }


def anthropic_objects() -> dict[str, Any]:
    import anthropic
    import httpx2  # anthropic's HTTP client (an httpx fork with the same MockTransport)

    def reply(request: Any) -> Any:
        content: list[dict[str, Any]] = [
            {"type": "text", "text": "Let me check.", "citations": None},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}}]
        if json.loads(request.content).get("output_config"):  # structured output: parse()
            content = [{"type": "text", "citations": None,
                        "text": '{"city": "Paris", "population": 2100000}'}]
        return httpx2.Response(
            200, headers={"request-id": "req_a1", "anthropic-workspace-id": "wrk_1"}, json={
                "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                "content": content, "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 5}})

    client = anthropic.Anthropic(
        api_key="k", base_url="http://test",
        http_client=httpx2.Client(transport=httpx2.MockTransport(reply)))
    message = client.messages.create(model="claude-x", max_tokens=10,
                                     messages=[{"role": "user", "content": "hi"}])
    parsed = client.messages.parse(model="claude-x", max_tokens=10, output_format=Answer,
                                   messages=[{"role": "user", "content": "hi"}])
    return {"anthropic.message": message, "anthropic.tool_use": message.content[1],
            "anthropic.parsed": parsed}


def langchain_objects() -> dict[str, Any]:
    from langchain_core.documents import Document
    from langchain_core.language_models.fake_chat_models import (
        FakeListChatModel,
        GenericFakeChatModel,
    )
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.prompts import ChatPromptTemplate, PromptTemplate

    chunks = list(GenericFakeChatModel(messages=iter([AIMessage("streamed reply")])).stream("hi"))
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    prompt = ChatPromptTemplate.from_messages([("system", "be {style}"), ("human", "{q}")])
    return {
        "langchain.invoke": FakeListChatModel(responses=["Hello"]).invoke([HumanMessage("hi")]),
        "langchain.chunks": total,
        "langchain.tool_call": AIMessage(
            content="", tool_calls=[{"name": "f", "args": {"a": 1}, "id": "c1"}]),
        "langchain.tool_message": ToolMessage(content="42", tool_call_id="c1"),
        "langchain.prompt_value": prompt.invoke({"style": "brief", "q": "why"}),
        "langchain.prompt_template": PromptTemplate.from_template("Hi {name}"),
        "langchain.document": Document(page_content="text", metadata={"source": "a"}, id="d1"),
        # .text of each generation is a TextAccessor, a str subclass
        "langchain.chat_result": ChatResult(generations=[ChatGeneration(message=AIMessage("x"))]),
    }


def pydantic_ai_objects() -> dict[str, Any]:
    from pydantic_ai import Agent
    from pydantic_ai.models.test import TestModel

    agent = Agent(TestModel(), instructions="be brief")

    @agent.tool_plain
    def get_weather(city: str) -> str:
        return f"sunny in {city}"

    result = agent.run_sync("weather in Paris?")
    return {"pydantic_ai.history": result.all_messages(), "pydantic_ai.usage": result.usage}


def mcp_objects() -> dict[str, Any]:
    import mcp.types as t

    response = t.JSONRPCResponse.model_validate({
        "jsonrpc": "2.0", "id": 1, "result": {
            "protocolVersion": "2025-06-18", "capabilities": {"tools": {"listChanged": True}},
            "serverInfo": {"name": "srv", "version": "1"}}})
    return {
        "mcp.response": response,
        "mcp.initialize": t.InitializeResult.model_validate(response.result),
        "mcp.tools": t.ListToolsResult.model_validate({"tools": [{
            "name": "add", "description": "add two numbers",
            "inputSchema": {"type": "object", "properties": {"a": {"type": "integer"}}}}]}),
        "mcp.call": t.CallToolResult.model_validate({
            "content": [{"type": "text", "text": "3"},
                        {"type": "image", "data": "aGk=", "mimeType": "image/png"}],
            "isError": False, "structuredContent": {"result": 3}}),
    }


def google_genai_objects() -> dict[str, Any]:
    from google import genai
    from google.genai import types

    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={
            "candidates": [{"index": 0, "finishReason": "STOP", "content": {
                "role": "model", "parts": [
                    {"text": "Hello"},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]}}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2,
                              "totalTokenCount": 5},
            "modelVersion": "gemini-x", "responseId": "r1"})

    client = genai.Client(api_key="k", http_options=types.HttpOptions(
        base_url="http://test/", httpx_client=httpx.Client(transport=httpx.MockTransport(reply))))
    response = client.models.generate_content(model="gemini-x", contents="hi")
    return {"genai.response": response, "genai.content": response.candidates[0].content}


def settings_objects() -> dict[str, Any]:
    os.environ["FLUJO_ZOO_RETRIES"] = "5"
    try:
        settings = ZooSettings()
    finally:
        del os.environ["FLUJO_ZOO_RETRIES"]
    order = LegacyOrder(items=[{"sku": "a-1", "quantity": 2}], api_key="sk-legacy", note="gift")
    order._cursor = "page-2"
    return {"settings": settings, "pydantic.v1_model": order,
            "extra_types.contact": Contact(email="x@y.org", lat=45.5, place=(1.0, 2.0)),
            "pydantic.http_url": Link(url="https://a.b/c", owner="Al <al@x.org>")}


def extra_types_objects() -> dict[str, Any]:
    import semver
    from pydantic_extra_types.color import Color
    from pydantic_extra_types.country import CountryAlpha2

    customer = Customer(
        country="FR", country3="FRA", country_name="France", language="French",
        card="4000000000000002", phone="+14155552671", currency="EUR",
        mac="00:11:22:33:44:55", isbn="9780306406157", routing="122105155",
        mime="text/plain", zone="Europe/Paris", favourite=(10, 20, 30, 0.5),
        id="01ARZ3NDEKTSV4RRFFQ69G5FAV", client="1.2.3-rc.1+build.5",
        mongo_id="507f1f77bcf86cd799439011")
    return {
        "extra_types.customer": customer,
        "extra_types.color": Paint(color="red"),
        "extra_types.hsl": Paint(color="hsl(270, 60%, 50%)"),
        "extra_types.standalone": [Color("#0f08"), CountryAlpha2("DE"), customer.card,
                                   customer.id, customer.client, customer.mongo_id,
                                   semver.Version.parse("2.0.0-alpha")],
    }


BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "openai": openai_objects, "anthropic": anthropic_objects, "langchain_core": langchain_objects,
    "pydantic_ai": pydantic_ai_objects, "mcp": mcp_objects, "google.genai": google_genai_objects,
    "pydantic_settings": settings_objects, "pydantic_extra_types": extra_types_objects,
}


def unpicklable(value: Any) -> bool:
    """pickle itself cannot store the SDKs' parse() results where they are parametrizations
    with a TypeVar argument (openai's ``ParsedChatCompletion[~ResponseFormatT]``; anthropic's
    before 2.17 too), which pickle cannot find by name. Decided by the class, since the SDKs
    change this between releases."""
    metadata = getattr(type(value), "__pydantic_generic_metadata__", None)
    return bool(metadata and metadata["origin"] is not None)


def picklable(values: dict[str, Any]) -> dict[str, Any]:
    return {case: value for case, value in values.items() if not unpicklable(value)}


def stored() -> dict[str, Any]:
    values: dict[str, Any] = {}
    for build in BUILDERS.values():
        values.update(build())
    return values


def refused() -> dict[str, tuple[Any, str, str]]:
    """Case -> (value, class named by the error, path named by the error)."""
    from langchain_core.prompts import ChatPromptTemplate
    from pydantic_extra_types.pendulum_dt import DateTime

    return {
        # a message template keeps the message class itself: flujo stores no classes
        "langchain.chat_prompt": (
            ChatPromptTemplate.from_messages([("system", "be {style}")]), "ModelMetaclass",
            "$.messages[0]._msg_class"),
        # a datetime subclass (pendulum's): flujo stores the datetimes of the standard library
        "extra_types.pendulum": (When(at=DateTime(2024, 1, 2, 3, 4, 5)), "DateTime", "$.at"),
    }
