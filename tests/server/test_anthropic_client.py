"""The official `anthropic` Python SDK (pinned in the test extra) against a live `mfc serve`.

The base URL is the server's root, as Ollama documents (`ANTHROPIC_BASE_URL=http://host:11434`);
the API key is required by the SDK and ignored by the server. This SDK release no longer
has `temperature`/`top_p`/`top_k` parameters (newer Claude models refuse them); a client that
wants them sends them in `extra_body`, and mfc reads them as Ollama does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import pytest

GREEDY: Any = {"temperature": 0}

ANSWER = "defghijklmnopqrstuvwxyz"
USER = [{"role": "user", "content": "abc"}]


@pytest.fixture
def client(served: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=served.url, api_key="x", max_retries=0)


def test_create(client: anthropic.Anthropic) -> None:
    msg = client.messages.create(model="counter", max_tokens=64, messages=USER, extra_body=GREEDY)  # type: ignore[arg-type]
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.id.startswith("msg_")
    assert msg.model == "counter"
    assert len(msg.content) == 1 and msg.content[0].type == "text"
    assert msg.content[0].text == ANSWER
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens >= len(ANSWER)


def test_create_max_tokens_and_stop_sequences(client: anthropic.Anthropic) -> None:
    msg = client.messages.create(
        model="counter", max_tokens=3, messages=USER, extra_body={"top_k": 1}
    )  # type: ignore[arg-type]
    assert msg.content[0].text == "def"  # type: ignore[union-attr]
    assert msg.stop_reason == "max_tokens"
    msg = client.messages.create(
        model="counter",
        max_tokens=64,
        messages=USER,  # type: ignore[arg-type]
        stop_sequences=["k"],
        extra_body={"temperature": 0, "top_p": 1.0},
        system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        metadata={"user_id": "someone"},
    )
    assert msg.content[0].text == "defghij"  # type: ignore[union-attr]
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == "k"


def test_stream_text_and_final_message(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="counter",
        max_tokens=64,
        extra_body=GREEDY,
        messages=USER,  # type: ignore[arg-type]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == ANSWER
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == ANSWER  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens >= len(ANSWER)


def test_stream_raw_events(client: anthropic.Anthropic) -> None:
    stream = client.messages.create(
        model="counter",
        max_tokens=5,
        extra_body=GREEDY,
        messages=USER,  # type: ignore[arg-type]
        stream=True,
    )
    kinds = [ev.type for ev in stream]
    assert kinds[0] == "message_start" and kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_tools_and_tool_result_turn(client: anthropic.Anthropic) -> None:
    """The SDK's tool shapes are accepted by a template that takes tools (the counter
    cannot call them: test_tool_use_round_trip has a model that does)."""
    tools = [
        {
            "name": "get_weather",
            "description": "Weather in a city",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ]
    history = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "get_weather",
                    "input": {"city": "x"},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01",
                    "content": [{"type": "text", "text": "abc"}],
                }
            ],
        },
    ]
    msg = client.messages.create(
        model="counter-tools",
        max_tokens=64,
        extra_body=GREEDY,
        tools=tools,  # type: ignore[arg-type]
        tool_choice={"type": "auto"},
        messages=history,  # type: ignore[arg-type]
    )
    assert msg.content[0].text == ANSWER  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn"


def test_thinking_is_relaxed_on_a_model_that_cannot_think(client: anthropic.Anthropic) -> None:
    msg = client.messages.create(
        model="counter",
        max_tokens=64,
        extra_body={"temperature": 1, "top_k": 1},
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=USER,  # type: ignore[arg-type]
    )
    assert msg.content[0].text == ANSWER  # type: ignore[union-attr]


def test_count_tokens(client: anthropic.Anthropic) -> None:
    got = client.messages.count_tokens(model="counter", messages=USER)  # type: ignore[arg-type]
    assert got.input_tokens == 1  # ("user" + "abc") bytes / 4: Ollama's estimate


def test_errors_are_typed(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="nope", max_tokens=8, messages=USER)  # type: ignore[arg-type]
    assert missing.value.status_code == 404
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert missing.value.request_id and missing.value.request_id.startswith("req_")
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="counter", max_tokens=0, messages=USER)  # type: ignore[arg-type]
    assert "max_tokens" in str(bad.value)
    with pytest.raises(anthropic.BadRequestError) as no_vision:
        client.messages.create(
            model="counter",
            max_tokens=8,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "aGk="},
                        }
                    ],
                }
            ],
        )
    assert "does not support images" in str(no_vision.value)


def test_async_client(served: Any) -> None:
    async def go() -> tuple[str, str]:
        client = anthropic.AsyncAnthropic(base_url=served.url, api_key="x", max_retries=0)
        msg = await client.messages.create(
            model="counter",
            max_tokens=64,
            messages=USER,  # type: ignore[arg-type]
            extra_body=GREEDY,
        )
        async with client.messages.stream(
            model="counter",
            max_tokens=64,
            extra_body=GREEDY,
            messages=USER,  # type: ignore[arg-type]
        ) as stream:
            parts = [t async for t in stream.text_stream]
        await client.close()
        return msg.content[0].text, "".join(parts)  # type: ignore[union-attr]

    assert asyncio.run(go()) == (ANSWER, ANSWER)


# --- with models that call tools and think (the chat fixtures) ----------------------------------

WEATHER: Any = {
    "name": "get_weather",
    "description": "Get the weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def test_tool_use_round_trip(chat_served: Any) -> None:
    client = anthropic.Anthropic(base_url=chat_served.url, api_key="x", max_retries=0)
    ask: Any = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.messages.create(model="tools", max_tokens=100, tools=[WEATHER], messages=ask)
    assert first.stop_reason == "tool_use"
    [call] = first.content
    assert isinstance(call, anthropic.types.ToolUseBlock)
    assert (call.name, call.input) == ("get_weather", {"city": "Paris"})
    # Streamed: the SDK assembles the tool input from the input_json_delta.
    with client.messages.stream(
        model="tools", max_tokens=100, tools=[WEATHER], messages=ask
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].input == {"city": "Paris"}  # type: ignore[union-attr]
    # The next turn: the SDK's own blocks sent back, and a tool_result.
    follow: Any = [
        *ask,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
        },
    ]
    answer = client.messages.create(model="tools", max_tokens=100, tools=[WEATHER], messages=follow)
    assert answer.content[0].text == "It is sunny in Paris."  # type: ignore[union-attr]
    assert answer.stop_reason == "end_turn"


def test_thinking_blocks(chat_served: Any) -> None:
    client = anthropic.Anthropic(base_url=chat_served.url, api_key="x", max_retries=0)
    ask: Any = [{"role": "user", "content": "count"}]
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    msg = client.messages.create(model="think", max_tokens=100, thinking=thinking, messages=ask)
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking == "I should count up."  # type: ignore[union-attr]
    assert msg.content[1].text == "abcdefghijklmnopqrstuvwxyz"  # type: ignore[union-attr]
    with client.messages.stream(
        model="think", max_tokens=100, thinking=thinking, messages=ask
    ) as stream:
        kinds = [ev.type for ev in stream]
        final = stream.get_final_message()
    assert "thinking" in kinds and "text" in kinds  # the SDK's derived events
    assert final.content[0].thinking == "I should count up."  # type: ignore[union-attr]
    off = client.messages.create(
        model="think", max_tokens=100, thinking={"type": "disabled"}, messages=ask
    )
    assert [b.type for b in off.content] == ["text"]
