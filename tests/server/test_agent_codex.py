"""Codex (openai/codex, codex-rs/ollama and codex-rs/core) against a live `mfc serve`, as it calls.

Its Ollama provider probes the server (GET /v1/models when the base URL ends in /v1, else
/api/tags), refuses servers whose /api/version is below 0.13.4 for the Responses wire API,
lists models by exact name (/api/tags `name`, so `tools:latest`), pulls a missing one with a
streamed POST /api/pull, then drives each turn with a streamed POST /v1/responses
(`ResponsesApiRequest`: model, instructions, input items, function tools with `strict`,
tool_choice "auto", parallel_tool_calls, store false, stream true, include, prompt_cache_key),
reading `response.output_item.done` items and `response.completed`; a function call is run
and fed back as the call item plus a `function_call_output` item in the next request's input.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mfc.testing import chatmodels as cm
from mfc.testing import registry as reg
from mfc.testing import registry_seed

SHELL_LIKE_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the weather in a city",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


def _events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Codex's SSE reader: `event:` then `data:` lines; blank lines end an event."""
    kind = ""
    for line in lines:
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            yield kind, json.loads(line[len("data: ") :])


def _turn(url: str, model: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    body = {
        "model": model,
        "instructions": "You are Codex, a coding agent. Use tools when they help.",
        "input": items,
        "tools": [SHELL_LIKE_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "store": False,
        "stream": True,
        "include": [],
        "prompt_cache_key": "0b7e9a5e-2f2c-4f57-9f0e-6f1f3c7d9a10",
    }
    done: list[dict[str, Any]] = []
    completed = None
    headers = {"Authorization": "Bearer ollama", "OpenAI-Beta": "responses=experimental"}
    with httpx.stream("POST", url + "/v1/responses", json=body, headers=headers, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for kind, data in _events(r.iter_lines()):
            assert data["type"] == kind
            if kind == "response.output_item.done":
                done.append(data["item"])
            elif kind == "response.completed":
                completed = data["response"]
            assert kind != "response.failed", data
    assert completed is not None and completed["status"] == "completed"
    assert completed["usage"]["output_tokens"] > 0
    return done


def test_codex_session(chat_served: Any) -> None:
    url = chat_served.url
    # Start-up: probe, version floor, the model list by exact name.
    assert httpx.get(url + "/v1/models").status_code == 200
    version = httpx.get(url + "/api/version").json()["version"]
    assert tuple(int(x) for x in version.split(".")) >= (0, 13, 4)
    names = [m["name"] for m in httpx.get(url + "/api/tags").json()["models"]]
    assert "tools:latest" in names  # present: Codex does not pull
    # Turn 1: the model calls the tool.
    user = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "weather?"}],
    }
    items = _turn(url, "tools:latest", [user])
    calls = [i for i in items if i["type"] == "function_call"]
    assert len(calls) == 1, items
    call = calls[0]
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert call["call_id"]
    assert not [i for i in items if i["type"] == "message"]  # no raw markup as text
    # Turn 2: Codex runs it and sends the call and its output back.
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}
    replay = {k: call[k] for k in ("type", "name", "arguments", "call_id")}
    items = _turn(url, "tools:latest", [user, replay, output])
    messages = [i for i in items if i["type"] == "message"]
    assert len(messages) == 1 and not [i for i in items if i["type"] == "function_call"]
    text = "".join(p["text"] for p in messages[0]["content"] if p["type"] == "output_text")
    assert text == cm.TOOL_ANSWER


def test_codex_pulls_a_missing_model(chat_served: Any, tmp_path: Path) -> None:
    """A model not in /api/tags makes Codex pull it (``ensure_oss_ready``: GET /api/tags, then
    a streamed POST /api/pull, reading progress objects until ``success``); the server pulls
    from a registry on a loopback host over plain http, and the model then serves a turn."""
    if not reg.available():
        pytest.skip(f"{reg.BINARY} is not installed: {reg.INSTALL_HINT}")
    registry = reg.start_registry(tmp_path)
    try:
        digest = registry_seed.seed(
            registry.url, chat_served.store, "tools:latest", "library/codex-tools", "v1"
        )
        model = f"{registry.host}/library/codex-tools:v1"
        tags = httpx.get(chat_served.url + "/api/tags").json()
        assert model not in {m["name"] for m in tags["models"]}
        statuses = []
        with httpx.stream(
            "POST",
            chat_served.url + "/api/pull",
            json={"model": model, "stream": True},
            timeout=120,
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/x-ndjson")
            for line in r.iter_lines():
                obj = json.loads(line)
                assert "error" not in obj, obj
                statuses.append(obj["status"])
                if obj["status"] != "pulling manifest" and obj["status"].startswith("pulling"):
                    assert obj["digest"].startswith("sha256:") and obj["total"] > 0
        assert statuses[0] == "pulling manifest"
        assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
        tags = httpx.get(chat_served.url + "/api/tags").json()
        pulled = {m["name"]: m["digest"] for m in tags["models"]}
        assert pulled[model] == digest.removeprefix("sha256:")
        # A missing one is Ollama's error line, after the stream started.
        r = httpx.post(
            chat_served.url + "/api/pull",
            json={"model": f"{registry.host}/library/nope:v1", "stream": False},
        )
        assert r.status_code == 500
        assert r.json()["error"] == "pull model manifest: file does not exist"
    finally:
        registry.stop()
    user = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "weather?"}],
    }
    items = _turn(chat_served.url, model, [user])
    assert [i for i in items if i["type"] == "function_call"]
