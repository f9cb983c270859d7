"""Tool calls, thinking, structured output and logprobs through Ollama's native API.

The tools and think fixtures (docs/fixtures.md) run on real llama.cpp in a real
`mfc serve`; the official ollama client parses every answer. Each model is built
twice: with the Go TEMPLATE in the Modelfile and with the GGUF's Jinja template.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from mfc.build import build_text
from mfc.store import Store
from mfc.testing import chatmodels as cm
from mfc.testing.server import Server, build_counter, start_server, stop_server

GREEDY = {"temperature": 0, "seed": 1}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def chat_server(
    tmp_path_factory: pytest.TempPathFactory, fixture_models: dict[str, Path]
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("chat-features")
    store = Store(tmp / "models")
    tools, think = fixture_models["tools.gguf"], fixture_models["think.gguf"]
    build_text(f'FROM {tools}\nTEMPLATE """{cm.TOOLS_TEMPLATE}"""\n', tmp, "tools", store=store)
    build_text(f"FROM {tools}\n", tmp, "tools-jinja", store=store)
    build_text(f'FROM {think}\nTEMPLATE """{cm.THINK_TEMPLATE}"""\n', tmp, "think", store=store)
    build_text(f"FROM {think}\n", tmp, "think-jinja", store=store)
    build_counter(store, fixture_models, "counter")
    server = start_server(tmp, store)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def client(chat_server: Server) -> ollama.Client:
    return ollama.Client(host=chat_server.url)


ASK = [{"role": "user", "content": "weather?"}]


@pytest.mark.parametrize("model", ["tools", "tools-jinja"])
def test_tool_call_round_trip(client: ollama.Client, model: str) -> None:
    r = client.chat(model=model, messages=ASK, tools=[WEATHER], options=GREEDY)
    calls = r.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert dict(calls[0].function.arguments) == {"city": "Paris"}
    assert r.message.content == ""
    assert r.done_reason == "stop"
    # The result goes back as a tool message; the next turn answers from it.
    history = [
        *ASK,
        {"role": "assistant", "content": "", "tool_calls": [c.model_dump() for c in calls]},
        {"role": "tool", "content": "sunny, 21 C", "tool_name": "get_weather"},
    ]
    rendered = httpx.post(
        f"{client._client.base_url}/api/chat",
        json={"model": model, "messages": history, "tools": [WEATHER], "_debug_render_only": True},
    ).json()["_debug_info"]["rendered_template"]
    assert "<tool_response>sunny, 21 C</tool_response>" in rendered
    assert '"name": "get_weather"' in rendered
    again = client.chat(model=model, messages=history, tools=[WEATHER], options=GREEDY)
    assert again.message.content == cm.TOOL_ANSWER
    assert not again.message.tool_calls


def test_streamed_tool_call_is_never_markup(client: ollama.Client) -> None:
    chunks = list(
        client.chat(model="tools", messages=ASK, tools=[WEATHER], options=GREEDY, stream=True)
    )
    text = "".join(c.message.content for c in chunks)
    assert "<tool_call>" not in text and "get_weather" not in text
    calls = [call for c in chunks for call in c.message.tool_calls or []]
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert chunks[-1].done
    # Ollama's wire shape: an id and an index on each call.
    raw = httpx.post(
        f"{client._client.base_url}/api/chat",
        json={"model": "tools", "messages": ASK, "tools": [WEATHER], "stream": False},
    ).json()
    call = raw["message"]["tool_calls"][0]
    assert call["id"].startswith("call_") and call["function"]["index"] == 0


def test_without_tools_the_call_is_text(client: ollama.Client) -> None:
    """As Ollama: no tools in the request, no tool-call parsing."""
    r = client.chat(model="tools", messages=ASK, options=GREEDY)
    assert r.message.content == f"<tool_call>{cm.TOOL_CALL_BODY}</tool_call>"
    assert not r.message.tool_calls


@pytest.mark.parametrize("model", ["think", "think-jinja"])
@pytest.mark.parametrize("think", [True, None, "high"])
def test_thinking_is_split(client: ollama.Client, model: str, think: Any) -> None:
    """A model that can think thinks unless told not to (think unset = true, as Ollama)."""
    r = client.chat(model=model, messages=ASK, think=think, options=GREEDY)
    assert r.message.thinking == cm.THOUGHT
    assert r.message.content == cm.THINK_ANSWER


@pytest.mark.parametrize("model", ["think", "think-jinja"])
def test_think_false_answers_without_thinking(client: ollama.Client, model: str) -> None:
    r = client.chat(model=model, messages=ASK, think=False, options=GREEDY)
    assert not r.message.thinking
    assert r.message.content == cm.THINK_ANSWER


def test_thinking_streams_before_the_answer(client: ollama.Client) -> None:
    chunks = list(client.chat(model="think", messages=ASK, options=GREEDY, stream=True))
    kinds = [
        "thinking" if c.message.thinking else "content"
        for c in chunks
        if c.message.thinking or c.message.content
    ]
    assert kinds == sorted(kinds, key=lambda k: k != "thinking")  # thinking first, then content
    assert "".join(c.message.thinking or "" for c in chunks) == cm.THOUGHT
    assert "".join(c.message.content for c in chunks) == cm.THINK_ANSWER


def test_generate_splits_thinking_too(client: ollama.Client) -> None:
    r = client.generate(model="think", prompt="weather?", options=GREEDY)
    assert r.thinking == cm.THOUGHT
    assert r.response == cm.THINK_ANSWER


def test_think_on_a_model_that_cannot_is_400(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="counter", messages=ASK, think=True)
    assert info.value.status_code == 400
    assert info.value.error == '"counter" does not support thinking'


# The counter under a grammar has no preference among the tokens it allows (all score 0), so
# an open-ended schema would never end (context shift); an enum pins every token.
PINNED = {
    "type": "object",
    "properties": {"a": {"type": "string", "enum": ["abc"]}},
    "required": ["a"],
}
BOUNDED = {**GREEDY, "num_predict": 100}


def test_structured_output_after_thinking(client: ollama.Client) -> None:
    """The grammar applies to the answer only: the thinking is free, the content is JSON
    (a grammar from the first token would have forbidden `<think>`)."""
    r = client.chat(model="think", messages=ASK, format=PINNED, options=BOUNDED)
    assert r.message.thinking == cm.THOUGHT
    assert json.loads(r.message.content) == {"a": "abc"}
    assert r.done_reason == "stop"


def test_structured_output_without_thinking_is_constrained_from_the_start(
    client: ollama.Client,
) -> None:
    r = client.chat(model="think", messages=ASK, think=False, format=PINNED, options=BOUNDED)
    assert not r.message.thinking
    assert json.loads(r.message.content) == {"a": "abc"}


def test_structured_output_streams_thinking_then_json(client: ollama.Client) -> None:
    chunks = list(
        client.chat(model="think", messages=ASK, format=PINNED, options=BOUNDED, stream=True)
    )
    assert "".join(c.message.thinking or "" for c in chunks) == cm.THOUGHT
    assert json.loads("".join(c.message.content for c in chunks)) == {"a": "abc"}
    assert "</think>" not in "".join(c.message.content for c in chunks)


def test_unsupported_schema_keyword_is_400(client: ollama.Client) -> None:
    schema = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="counter", messages=ASK, format=schema)
    assert info.value.status_code == 400
    assert "uniqueItems" in info.value.error


def test_logprobs_in_chunks(client: ollama.Client, chat_server: Server) -> None:
    body = {
        "model": "counter",
        "messages": [{"role": "user", "content": "abc"}],
        "logprobs": True,
        "top_logprobs": 2,
        "options": {**GREEDY, "num_predict": 3},
        "stream": False,
    }
    out = httpx.post(chat_server.url + "/api/chat", json=body, timeout=60).json()
    entries = out["logprobs"]
    assert [e["token"] for e in entries] == ["d", "e", "f"]
    for e in entries:
        assert e["logprob"] <= 0
        assert len(e["top_logprobs"]) == 2
        assert e["top_logprobs"][0]["token"] == e["token"]
        assert bytes(e["bytes"]).decode() == e["token"]
