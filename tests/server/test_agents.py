"""Agent tools as they call: the requests they send and the way they read the answers,
emulated from their source, against a live `mfc serve`.

- Roo Code (RooCodeInc/Roo-Code, src/api/providers/native-ollama.ts and fetchers/ollama.ts):
  /api/tags, then /api/show per model — the model is listed only with the `tools` capability,
  its context window is the first `model_info` key containing `context_length` — then a
  streamed /api/chat with the system prompt first, `options.temperature` 0 and `num_ctx`,
  OpenAI-style tools converted to Ollama's, tool results sent back as *user* messages and
  earlier tool calls without ids; each chunk's content (through a `<think>` tag matcher),
  tool calls re-encoded with JSON.stringify, prompt_eval_count/eval_count as usage.
  (The issue also names /api/ps's context_length: it reports the num_ctx the model runs with.)
- Claude Code (not open source: the request shape is the Anthropic SDK's as Claude Code
  configures it, and what Ollama's anthropic tests assume): POST /v1/messages?beta=true with
  `x-api-key`/`authorization`, `anthropic-version`, `anthropic-beta`, `x-app: cli`; system as
  text blocks with `cache_control`; `metadata.user_id`; `stream: true`; JSON-schema tools
  (`additionalProperties`, `$schema`, enums, arrays of objects); a one-token quota probe;
  count_tokens; the next turn carries the assistant's `tool_use` and the user's
  `tool_result` blocks.

The counter fixture proves every request shape is accepted and read; the chat fixtures
(`tools`, `think`: docs/fixtures.md) prove the tool_use round trip and thinking blocks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

ANSWER = "defghijklmnopqrstuvwxyz"

# --- Roo Code -----------------------------------------------------------------------------------


def roo_models(url: str) -> dict[str, dict[str, Any]]:
    """getOllamaModels: /api/tags, then /api/show {model} for each; keep models with tools."""
    tags = httpx.get(url + "/api/tags").json()
    out: dict[str, dict[str, Any]] = {}
    for m in tags["models"]:
        # OllamaModelSchema: details.family and details.parameter_size are required strings
        assert isinstance(m["details"]["family"], str)
        assert isinstance(m["details"]["parameter_size"], str)
        assert isinstance(m["model"], str) and isinstance(m["name"], str)
        info = httpx.post(url + "/api/show", json={"model": m["model"]}).json()
        assert isinstance(info["model_info"], dict)
        key = next((k for k in info["model_info"] if "context_length" in k), None)
        window = info["model_info"][key] if key else None
        if "tools" not in (info.get("capabilities") or []):
            continue
        out[m["name"]] = {
            "contextWindow": window if isinstance(window, int) else 200_000,
            "supportsImages": "vision" in (info.get("capabilities") or []),
            "contextKey": key,
        }
    return out


def roo_messages(system: str, anthropic_messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """convertToOllamaMessages, for the block kinds the test uses."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for msg in anthropic_messages:
        if isinstance(msg["content"], str):
            out.append({"role": msg["role"], "content": msg["content"]})
            continue
        blocks = msg["content"]
        if msg["role"] == "user":
            for b in blocks:
                if b["type"] == "tool_result":
                    content = b["content"]
                    if not isinstance(content, str):
                        content = "\n".join(p["text"] for p in content)
                    out.append({"role": "user", "content": content})
            texts = [b["text"] for b in blocks if b["type"] == "text"]
            if texts:
                out.append({"role": "user", "content": "\n".join(texts)})
        else:
            calls = [
                {"function": {"name": b["name"], "arguments": b["input"]}}
                for b in blocks
                if b["type"] == "tool_use"
            ]
            text = "\n".join(b["text"] for b in blocks if b["type"] == "text")
            entry: dict[str, Any] = {"role": "assistant", "content": text}
            if calls:
                entry["tool_calls"] = calls
            out.append(entry)
    return out


def roo_stream(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """createMessage's loop: text/reasoning (a <think> matcher), tool_call_partial, usage."""
    usage = {"inputTokens": 0, "outputTokens": 0}
    index = 0
    buffer = ""
    for line in response.iter_lines():
        if not line:
            continue
        chunk = json.loads(line)
        assert "error" not in chunk, chunk
        content = chunk["message"].get("content")
        if isinstance(content, str) and content:
            buffer += content
        for call in chunk["message"].get("tool_calls") or []:
            yield {
                "type": "tool_call_partial",
                "index": index,
                "id": f"ollama-tool-{index}",
                "name": call["function"]["name"],
                "arguments": json.dumps(call["function"]["arguments"]),
            }
            index += 1
        if chunk.get("prompt_eval_count"):
            usage["inputTokens"] = chunk["prompt_eval_count"]
        if chunk.get("eval_count"):
            usage["outputTokens"] = chunk["eval_count"]
    for part in re.split(r"(<think>.*?</think>)", buffer, flags=re.S):
        if part.startswith("<think>"):
            yield {"type": "reasoning", "text": part[7:-8]}
        elif part:
            yield {"type": "text", "text": part}
    if usage["inputTokens"] or usage["outputTokens"]:
        yield {"type": "usage", **usage}


ROO_TOOL = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read a file",
        "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "relative path"},
                "line_ranges": {
                    "type": ["array", "null"],
                    "items": {"type": "string"},
                },
            },
            "required": ["path", "line_ranges"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


def test_roo_code_lists_only_models_with_tools(served: Any) -> None:
    models = roo_models(served.url)
    assert "counter-tools:latest" in models
    assert "counter:latest" not in models  # no tools in its template: Roo Code hides it
    entry = models["counter-tools:latest"]
    assert entry["contextKey"] == "llama.context_length"
    assert entry["contextWindow"] == 512
    assert entry["supportsImages"] is False


def test_roo_code_task(served: Any) -> None:
    """One task: a first request, then the turn after a tool call, streamed with num_ctx."""
    system = "You are Roo, a highly skilled software engineer."
    history: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "<task>\nread abc\n</task>"}]}
    ]
    options = {"temperature": 0, "num_ctx": 384}
    with httpx.stream(
        "POST",
        served.url + "/api/chat",
        json={
            "model": "counter-tools",
            "messages": roo_messages(system, history),
            "stream": True,
            "options": options,
            "tools": [ROO_TOOL],
        },
        timeout=60,
    ) as r:
        assert r.status_code == 200
        first = list(roo_stream(r))
    assert first[-1]["type"] == "usage" and first[-1]["inputTokens"] > 0
    assert [p for p in first if p["type"] == "text"]
    # /api/ps: the model runs with the num_ctx the client asked for.
    loaded = httpx.get(served.url + "/api/ps").json()["models"]
    entry = next(m for m in loaded if m["name"] == "counter-tools:latest")
    assert entry["context_length"] == 384

    history += [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Reading."},
                {
                    "type": "tool_use",
                    "id": "ollama-tool-0",
                    "name": "read_file",
                    "input": {"path": "abc.txt", "line_ranges": None},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "ollama-tool-0",
                    "content": [{"type": "text", "text": "xyz"}, {"type": "text", "text": "abc"}],
                }
            ],
        },
    ]
    with httpx.stream(
        "POST",
        served.url + "/api/chat",
        json={
            "model": "counter-tools",
            "messages": roo_messages(system, history),
            "stream": True,
            "options": options,
            "tools": [ROO_TOOL],
        },
        timeout=60,
    ) as r:
        assert r.status_code == 200
        second = list(roo_stream(r))
    text = "".join(p["text"] for p in second if p["type"] == "text")
    assert text == ANSWER  # the tool result ("xyz\nabc") is the last thing the model read


def test_roo_code_complete_prompt(served: Any) -> None:
    """completePrompt: one non-streamed user message, message.content read."""
    r = httpx.post(
        served.url + "/api/chat",
        json={
            "model": "counter-tools",
            "messages": [{"role": "user", "content": "abc"}],
            "stream": False,
            "options": {"temperature": 0},
        },
        timeout=60,
    )
    assert r.status_code == 200
    assert r.json()["message"]["content"] == ANSWER


# --- Claude Code --------------------------------------------------------------------------------

CLAUDE_HEADERS = {
    "x-api-key": "ollama",
    "authorization": "Bearer ollama",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,"
    "fine-grained-tool-streaming-2025-05-14",
    "anthropic-dangerous-direct-browser-access": "true",
    "x-app": "cli",
    "user-agent": "claude-cli/2.0.0 (external, cli)",
    "x-stainless-lang": "js",
    "x-stainless-retry-count": "0",
    "x-stainless-timeout": "600",
}

CLAUDE_SYSTEM = [
    {
        "type": "text",
        "text": "You are Claude Code, Anthropic's official CLI for Claude.",
        "cache_control": {"type": "ephemeral"},
    },
    {
        "type": "text",
        "text": "\nYou are an interactive CLI tool that helps users with software tasks.",
        "cache_control": {"type": "ephemeral"},
    },
]

SCHEMA = "http://json-schema.org/draft-07/schema#"
CLAUDE_TOOLS = [
    {
        "name": "Bash",
        "description": "Executes a given bash command in a persistent shell session.",
        "input_schema": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The command to execute"},
                "timeout": {"type": "number", "description": "Optional timeout in milliseconds"},
                "run_in_background": {"type": "boolean"},
            },
            "required": ["command"],
            "additionalProperties": False,
            "$schema": SCHEMA,
        },
    },
    {
        "name": "Read",
        "description": "Reads a file from the local filesystem.",
        "input_schema": {
            "type": "object",
            "properties": {
                "file_path": {"type": "string"},
                "offset": {"type": "number"},
                "limit": {"type": "number"},
            },
            "required": ["file_path"],
            "additionalProperties": False,
            "$schema": SCHEMA,
        },
    },
    {
        "name": "TodoWrite",
        "description": "Create and manage a structured task list.",
        "input_schema": {
            "type": "object",
            "properties": {
                "todos": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "content": {"type": "string", "minLength": 1},
                            "status": {
                                "type": "string",
                                "enum": ["pending", "in_progress", "completed"],
                            },
                            "id": {"type": "string"},
                        },
                        "required": ["content", "status", "id"],
                        "additionalProperties": False,
                    },
                    "description": "The updated todo list",
                }
            },
            "required": ["todos"],
            "additionalProperties": False,
            "$schema": SCHEMA,
        },
    },
]

METADATA = {"user_id": "user_0123_account__session_4567"}


def claude(served: Any, body: dict[str, Any], path: str = "/v1/messages?beta=true") -> Any:
    return httpx.stream("POST", served.url + path, json=body, headers=CLAUDE_HEADERS, timeout=60)


def claude_events(response: httpx.Response) -> list[dict[str, Any]]:
    """The SDK's SSE reader: `event:` names the type, `data:` is the JSON."""
    out = []
    name = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
            assert data["type"] == name
            out.append(data)
    return out


def accumulate(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What Claude Code builds from the events: the message, blocks by index."""
    assert events[0]["type"] == "message_start"
    message = dict(events[0]["message"])
    blocks: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    for ev in events[1:]:
        if ev["type"] == "content_block_start":
            assert ev["index"] == len(blocks)
            blocks.append(dict(ev["content_block"]))
        elif ev["type"] == "content_block_delta":
            block, delta = blocks[ev["index"]], ev["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "input_json_delta":
                partial[ev["index"]] = partial.get(ev["index"], "") + delta["partial_json"]
        elif ev["type"] == "content_block_stop":
            if ev["index"] in partial:
                blocks[ev["index"]]["input"] = json.loads(partial[ev["index"]])
        elif ev["type"] == "message_delta":
            message.update(ev["delta"])
            message["usage"] = {**message["usage"], **ev["usage"]}
        elif ev["type"] == "error":
            pytest.fail(f"error event: {ev}")
    assert events[-1]["type"] == "message_stop"
    message["content"] = blocks
    return message


def test_claude_code_quota_probe(served: Any) -> None:
    """Claude Code's first call: one token of "quota", not streamed."""
    with claude(
        served,
        {
            "model": "counter-tools",
            "max_tokens": 1,
            "messages": [{"role": "user", "content": "quota"}],
            "metadata": METADATA,
        },
    ) as r:
        r.read()
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["stop_reason"] == "max_tokens"
    assert body["usage"]["output_tokens"] == 1


def test_claude_code_count_tokens(served: Any) -> None:
    with claude(
        served,
        {
            "model": "counter-tools",
            "messages": [{"role": "user", "content": "abc"}],
            "tools": CLAUDE_TOOLS,
            "system": CLAUDE_SYSTEM,
        },
        "/v1/messages/count_tokens?beta=true",
    ) as r:
        r.read()
    assert r.status_code == 200, r.text
    assert r.json()["input_tokens"] > 100


def test_claude_code_conversation(served: Any) -> None:
    """A streamed turn with Claude Code's tools and system blocks, then the next request
    with the assistant's tool_use and the user's tool_result blocks."""
    first_turn = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>context</system-reminder>"},
                {"type": "text", "text": "list abc", "cache_control": {"type": "ephemeral"}},
            ],
        }
    ]
    body = {
        "model": "counter-tools",
        "max_tokens": 32000,
        "temperature": 1,
        "top_k": 1,  # the fixture's answer stays exact (Claude Code sends temperature 1 only)
        "system": CLAUDE_SYSTEM,
        "messages": first_turn,
        "tools": CLAUDE_TOOLS,
        "metadata": METADATA,
        "stream": True,
        "thinking": {"type": "enabled", "budget_tokens": 31999},  # relaxed: no thinking here
    }
    with claude(served, body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        message = accumulate(claude_events(r))
    assert message["id"].startswith("msg_")
    assert message["content"] == [{"type": "text", "text": "defghijklmnopqrstuvwxyz"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["input_tokens"] > 0

    # The next request: what Claude Code sends after running a tool the model called.
    second_turn = [
        *first_turn,
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "I'll list it."},
                {
                    "type": "tool_use",
                    "id": "call_abcd1234",
                    "name": "Bash",
                    "input": {"command": "ls abc"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "call_abcd1234",
                    "content": "xyz\nabc",
                    "is_error": False,
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        },
    ]
    with claude(served, {**body, "messages": second_turn}) as r:
        assert r.status_code == 200, r.read()
        message = accumulate(claude_events(r))
    assert message["content"] == [{"type": "text", "text": ANSWER}]
    assert message["stop_reason"] == "end_turn"


def test_claude_code_unknown_model_is_anthropics_404(served: Any) -> None:
    """Claude Code names models such as claude-sonnet-4-5: without `ollama cp` to that name,
    the answer is Anthropic's not_found_error, which Claude Code shows as such."""
    with claude(
        served,
        {
            "model": "claude-sonnet-4-5-20250929",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        },
    ) as r:
        r.read()
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found_error"


# --- with models that call tools and think (the chat fixtures) ----------------------------------

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
        "$schema": SCHEMA,
    },
}


def test_claude_code_tool_round_trip(chat_served: Any) -> None:
    """Claude Code's loop: a streamed request with tools; the answer is a tool_use block
    (stop_reason tool_use); Claude Code runs the tool and sends the whole turn back with a
    tool_result block; the model answers from the result."""
    ask = [{"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]}]
    body = {
        "model": "tools",
        "max_tokens": 32000,
        "system": CLAUDE_SYSTEM,
        "messages": ask,
        "tools": [WEATHER_TOOL],  # the fixture's template prints tools as JSON; 512-token window
        "metadata": METADATA,
        "stream": True,
    }
    with claude(chat_served, body) as r:
        assert r.status_code == 200, r.read()
        events = claude_events(r)
    first = accumulate(events)
    assert first["stop_reason"] == "tool_use"
    [call] = first["content"]
    assert call["type"] == "tool_use" and call["name"] == "get_weather"
    assert call["input"] == {"city": "Paris"}
    assert re.fullmatch(r"call_[a-z0-9]{8}", call["id"])
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]

    result = {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": call["id"], "content": "sunny, 22 C"},
        ],
    }
    with claude(chat_served, {**body, "messages": [*ask, first, result]}) as r:
        assert r.status_code == 200, r.read()
        second = accumulate(claude_events(r))
    assert second["content"] == [{"type": "text", "text": "It is sunny in Paris."}]
    assert second["stop_reason"] == "end_turn"


def test_claude_code_thinking(chat_served: Any) -> None:
    """Extended thinking: a thinking block (index 0), then the text block (index 1); the
    thinking block comes back in the next turn with its (empty) signature and is accepted."""
    body = {
        "model": "think",
        "max_tokens": 32000,
        "system": CLAUDE_SYSTEM,
        "messages": [{"role": "user", "content": "count"}],
        "thinking": {"type": "enabled", "budget_tokens": 31999},
        "metadata": METADATA,
        "stream": True,
    }
    with claude(chat_served, body) as r:
        assert r.status_code == 200, r.read()
        message = accumulate(claude_events(r))
    assert message["content"] == [
        {"type": "thinking", "thinking": "I should count up.", "signature": ""},
        {"type": "text", "text": "abcdefghijklmnopqrstuvwxyz"},
    ]
    follow = [
        {"role": "user", "content": "count"},
        {"role": "assistant", "content": message["content"]},
        {"role": "user", "content": "again"},
    ]
    with claude(chat_served, {**body, "messages": follow}) as r:
        assert r.status_code == 200, r.read()
        again = accumulate(claude_events(r))
    assert [b["type"] for b in again["content"]] == ["thinking", "text"]
    # Thinking turned off: the template prefills an empty thought, the answer has none.
    with claude(chat_served, {**body, "thinking": {"type": "disabled"}}) as r:
        off = accumulate(claude_events(r))
    assert off["content"] == [{"type": "text", "text": "abcdefghijklmnopqrstuvwxyz"}]


def test_roo_code_reads_a_tool_call(chat_served: Any) -> None:
    """Roo Code's stream loop turns each tool call into a tool_call_partial with
    JSON.stringify'd arguments and an `ollama-tool-<n>` id of its own."""
    assert "tools:latest" in roo_models(chat_served.url)
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather in a city",
            "parameters": WEATHER_TOOL["input_schema"],
        },
    }
    with httpx.stream(
        "POST",
        chat_served.url + "/api/chat",
        json={
            "model": "tools",
            "messages": roo_messages("You are Roo.", [{"role": "user", "content": "Paris?"}]),
            "stream": True,
            "options": {"temperature": 0, "num_ctx": 512},
            "tools": [tool],
        },
        timeout=60,
    ) as r:
        assert r.status_code == 200
        parts = list(roo_stream(r))
    calls = [p for p in parts if p["type"] == "tool_call_partial"]
    assert calls == [
        {
            "type": "tool_call_partial",
            "index": 0,
            "id": "ollama-tool-0",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        }
    ]
    assert parts[-1]["type"] == "usage"
