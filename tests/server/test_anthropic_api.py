"""/v1/messages and /v1/messages/count_tokens over HTTP, against a live `mfc serve`.

Exact server-sent event framing and order, Anthropic's error shape for every refusal (never
a 500), and snapshots of whole bodies with the volatile fields (ids) normalised. The counter
fixture continues the prompt's last character: "abc" -> "defghijklmnopqrstuvwxyz".
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

ANSWER = "defghijklmnopqrstuvwxyz"
HEADERS = {"x-api-key": "ignored", "anthropic-version": "2023-06-01"}


def post(served: Any, body: Any, path: str = "/v1/messages", **kw: Any) -> httpx.Response:
    if isinstance(body, (bytes, str)):
        kw["content"] = body
    else:
        kw["json"] = body
    kw.setdefault("headers", HEADERS)
    return httpx.post(served.url + path, timeout=60, **kw)


def ask(text: str = "abc", **extra: Any) -> dict[str, Any]:
    return {
        "model": "counter",
        "max_tokens": 64,
        "temperature": 0,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def normalise(obj: Any) -> Any:
    """Ids are random: keep their prefix only."""
    text = json.dumps(obj, sort_keys=True)
    text = re.sub(r'"(msg|req)_[0-9a-f]{24}"', r'"\1_…"', text)
    text = re.sub(r'"call_[a-z0-9]{8}"', '"call_…"', text)
    return json.loads(text)


def events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """Parse an SSE body strictly: every event is `event:` + `data:` + a blank line."""
    raw = response.text
    assert raw.endswith("\n\n")
    out = []
    for chunk in raw[:-2].split("\n\n"):
        lines = chunk.split("\n")
        assert len(lines) == 2, chunk
        assert lines[0].startswith("event: ") and lines[1].startswith("data: ")
        name = lines[0].removeprefix("event: ")
        data = json.loads(lines[1].removeprefix("data: "))
        assert data["type"] == name
        out.append((name, data))
    return out


# --- answers ------------------------------------------------------------------------------------


def test_not_streamed(served: Any, snapshot: Any) -> None:
    r = post(served, ask())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["request-id"].startswith("req_")
    body = r.json()
    assert re.fullmatch(r"msg_[0-9a-f]{24}", body["id"])
    assert body["content"] == [{"type": "text", "text": ANSWER}]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["input_tokens"] > 0
    assert body["usage"]["output_tokens"] >= len(ANSWER)
    body["usage"] = {k: "n" for k in body["usage"]}
    assert normalise(body) == snapshot


def test_streamed_event_sequence(served: Any, snapshot: Any) -> None:
    r = post(served, ask(stream=True))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache"
    got = events(r)
    names = [n for n, _ in got]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"}
    text = "".join(d["delta"]["text"] for n, d in got if n == "content_block_delta")
    assert text == ANSWER
    assert all(d["index"] == 0 for n, d in got if n.startswith("content_block"))
    start = got[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 0
    delta = got[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] >= len(ANSWER)
    # The shape of the whole sequence, with the text deltas merged and counts masked.
    shape = [got[0], got[1], ("content_block_delta", "…"), *got[-3:]]
    masked = json.loads(
        re.sub(r'"(input|output)_tokens": \d+', r'"\1_tokens": 0', json.dumps(shape))
    )
    assert normalise(masked) == snapshot


def test_max_tokens_and_stop_sequences(served: Any) -> None:
    r = post(served, ask(max_tokens=3)).json()
    assert r["content"][0]["text"] == "def"
    assert r["stop_reason"] == "max_tokens"
    # The engine says which stop string ended the answer (Ollama cannot: end_turn there).
    r = post(served, ask(stop_sequences=["xyz", "h"])).json()
    assert r["content"][0]["text"] == "defg"
    assert r["stop_reason"] == "stop_sequence" and r["stop_sequence"] == "h"
    got = events(post(served, ask(stop_sequences=["h"], stream=True)))
    assert got[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "h"}
    got = events(post(served, ask(max_tokens=2, stream=True)))
    assert got[-2][1]["delta"]["stop_reason"] == "max_tokens"
    r = post(served, ask()).json()  # the end of the turn
    assert r["stop_reason"] == "end_turn" and r["stop_sequence"] is None


def test_system_string_and_blocks(served: Any) -> None:
    """Both spellings are accepted (test_anthropic.py checks the joined system message; the
    counter's answer depends on the prompt's last character only, and the prompt cache
    makes input_tokens count only the new part, so neither tells the prompts apart here)."""
    plain = post(served, ask()).json()
    as_string = post(served, ask(system="be brief")).json()
    as_blocks = post(
        served,
        ask(
            system=[
                {"type": "text", "text": "be ", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "brief"},
            ]
        ),
    ).json()
    assert as_string["content"] == as_blocks["content"] == plain["content"]


def test_content_blocks_and_beta_query(served: Any) -> None:
    """Text blocks are joined; Claude Code's ?beta=true and extra fields are ignored."""
    body = ask(metadata={"user_id": "u"}, tool_choice={"type": "auto"})
    body["messages"] = [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "bc"}]}
    ]
    r = post(served, body, "/v1/messages?beta=true", headers={**HEADERS, "anthropic-beta": "x"})
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["text"] == ANSWER


def test_thinking_on_a_model_that_cannot_think_is_relaxed(served: Any) -> None:
    """Ollama drops `think` for this API when the model cannot think (Claude Code asks)."""
    r = post(served, ask(thinking={"type": "enabled", "budget_tokens": 1024}))
    assert r.status_code == 200, r.text
    assert r.json()["content"] == [{"type": "text", "text": ANSWER}]


def test_tools_reach_the_template(served: Any) -> None:
    tool = {
        "name": "get_weather",
        "description": "Weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
        },
    }
    r = post(served, {**ask(), "model": "counter-tools", "tools": [tool]})
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["text"] == ANSWER
    # A template without tools refuses them (Ollama's capability check).
    r = post(served, {**ask(), "tools": [tool]})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "does not support tools" in r.json()["error"]["message"]


def test_tool_result_turn(served: Any) -> None:
    """The turn after a tool call: tool_use in the assistant turn, tool_result blocks (a
    string and a content array) in the user turn; the last text the template sees wins."""
    body = {
        **ask(),
        "model": "counter-tools",
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "x"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "q"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "ab"}, {"type": "text", "text": "c"}],
                    },
                ],
            },
        ],
    }
    r = post(served, body)
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["text"] == ANSWER


# --- count_tokens -------------------------------------------------------------------------------


def test_count_tokens(served: Any) -> None:
    r = post(
        served,
        {"model": "counter", "messages": [{"role": "user", "content": "abcdefgh"}]},
        "/v1/messages/count_tokens",
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"input_tokens": 3}  # ("user" + "abcdefgh") bytes / 4, as Ollama estimates
    r = post(
        served,
        {"model": "nope", "messages": [{"role": "user", "content": "a"}]},
        "/v1/messages/count_tokens",
    )
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found_error"


# --- refusals: Anthropic's shape, the right status, never a 500 ---------------------------------

IMAGE = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}

BAD: list[tuple[str, Any, int, str]] = [
    ("invalid-json", b'{"model": "counter",', 400, "invalid JSON"),
    ("not-an-object", b"[1]", 400, "must be a JSON object"),
    ("empty-body", b"", 400, "missing request body"),
    ("unknown-model", {**ask(), "model": "nope"}, 404, 'model "nope" not found'),
    ("missing-model", {**ask(), "model": ""}, 400, "model is required"),
    (
        "missing-max-tokens",
        {k: v for k, v in ask().items() if k != "max_tokens"},
        400,
        "max_tokens is required",
    ),
    ("zero-max-tokens", ask(max_tokens=0), 400, "max_tokens is required and must be positive"),
    ("max-tokens-string", ask(max_tokens="64"), 400, "max_tokens"),
    ("missing-messages", {**ask(), "messages": []}, 400, "messages is required"),
    ("temperature-out-of-range", ask(temperature=-1), 400, "temperature"),
    (
        "image-text-only-model",
        {
            **ask(),
            "messages": [{"role": "user", "content": [{"type": "image", "source": IMAGE}]}],
        },
        400,
        "does not support images",
    ),
    (
        "image-url-source",
        {
            **ask(),
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "url", "url": "http://x"}}],
                }
            ],
        },
        400,
        "Only base64 images are supported",
    ),
    (
        "tool-use-without-id",
        {
            **ask(),
            "messages": [
                {"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]}
            ],
        },
        400,
        "tool_use block missing required 'id' field",
    ),
    (
        "malformed-tool-schema",
        {**ask(), "tools": [{"name": "f", "input_schema": {"type": "object", "required": "city"}}]},
        400,
        "invalid input_schema for tool 'f'",
    ),
    (
        "tool-without-name",
        {**ask(), "tools": [{"input_schema": {"type": "object"}}]},
        400,
        "tools[0].name",
    ),
    (
        "server-tool",
        {**ask(), "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]},
        400,
        "not supported by mfc",
    ),
]


@pytest.mark.parametrize(("case", "body", "status", "text"), BAD, ids=[b[0] for b in BAD])
def test_refusals(served: Any, case: str, body: Any, status: int, text: str) -> None:
    r = post(served, body)
    assert r.status_code == status, r.text
    got = r.json()
    assert got["type"] == "error"
    assert got["error"]["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
    assert text in got["error"]["message"]
    assert re.fullmatch(r"req_[0-9a-f]{24}", got["request_id"])
    assert r.headers["request-id"] == got["request_id"]


def test_streamed_refusal_is_a_status_not_an_event(served: Any) -> None:
    r = post(served, {**ask(stream=True), "model": "nope"})
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found_error"


def test_body_over_the_limit_is_413(served: Any) -> None:
    big = ask("a" * (65 * 1024 * 1024))
    r = post(served, big)
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "request_too_large"


def test_error_snapshot(served: Any, snapshot: Any) -> None:
    assert normalise(post(served, {**ask(), "model": "nope"}).json()) == snapshot
