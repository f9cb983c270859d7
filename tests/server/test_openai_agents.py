"""Tool calls and thinking through /v1, end to end on the `tools` and `think` fixtures
(docs/fixtures.md): the openai SDK sees structured tool calls (JSON-string arguments),
feeds the result back, and gets the reasoning split from the answer."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from mfc.testing.server import Server

TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "the weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
ASK: Any = [{"role": "user", "content": "weather in Paris?"}]


@pytest.fixture
def client(chat_served: Server) -> openai.OpenAI:
    """The chat fixtures `tools` and `think` (tests/server/conftest.py `chat_served`)."""
    return openai.OpenAI(base_url=chat_served.url + "/v1", api_key="x", max_retries=0, timeout=60)


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="tools", messages=ASK, tools=TOOLS, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert call.id.startswith("call_")
    assert not choice.message.content
    follow = client.chat.completions.create(
        model="tools",
        messages=[
            *ASK,
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
        ],
        tools=TOOLS,
        temperature=0,
    )
    assert follow.choices[0].message.content == "It is sunny in Paris."
    assert follow.choices[0].finish_reason == "stop"


def test_tool_call_streamed(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="tools", messages=ASK, tools=TOOLS, temperature=0, stream=True
        )
    )
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [(tc.index, tc.function.name) for tc in calls] == [(0, "get_weather")]  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments or "") == {"city": "Paris"}  # type: ignore[union-attr]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "<tool_call>" not in text


def test_responses_function_call_round_trip(client: openai.OpenAI) -> None:
    tools: Any = [{"type": "function", **TOOLS[0]["function"], "strict": False}]
    r = client.responses.create(model="tools", input="weather in Paris?", tools=tools)
    (item,) = r.output
    assert item.type == "function_call" and item.name == "get_weather"
    assert json.loads(item.arguments) == {"city": "Paris"}
    events = list(
        client.responses.create(model="tools", input="weather?", tools=tools, stream=True)
    )
    kinds = [e.type for e in events]
    assert (
        "response.function_call_arguments.done" in kinds
        and "response.output_text.delta" not in kinds
    )
    follow = client.responses.create(
        model="tools",
        input=[
            {"role": "user", "content": "weather in Paris?"},
            {
                "type": "function_call",
                "call_id": item.call_id,
                "name": item.name,
                "arguments": item.arguments,
            },
            {"type": "function_call_output", "call_id": item.call_id, "output": "sunny"},
        ],
        tools=tools,
    )
    assert follow.output_text == "It is sunny in Paris."


def test_reasoning_is_split(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="think", messages=ASK, temperature=0)
    message = r.choices[0].message
    assert message.content == "abcdefghijklmnopqrstuvwxyz"
    assert getattr(message, "reasoning", None) == "I should count up."
    assert getattr(message, "reasoning_content", None) == "I should count up."
    off = client.chat.completions.create(
        model="think", messages=ASK, temperature=0, reasoning_effort="none"
    )
    assert off.choices[0].message.content == "abcdefghijklmnopqrstuvwxyz"
    assert getattr(off.choices[0].message, "reasoning", None) is None


def test_reasoning_streamed_and_in_responses(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model="think", messages=ASK, temperature=0, stream=True)
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join(getattr(d, "reasoning", None) or "" for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    assert reasoning == "I should count up." and content == "abcdefghijklmnopqrstuvwxyz"
    r = client.responses.create(model="think", input="hi", reasoning={"effort": "high"})
    assert [i.type for i in r.output] == ["reasoning", "message"]
    assert r.output_text == "abcdefghijklmnopqrstuvwxyz"
