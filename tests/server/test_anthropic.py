"""mfc.server.anthropic: the pure translation, without a server.

Request cases follow Ollama's ``anthropic/anthropic_test.go``; the event sequences are
built from hand-made service events and replayed through the official SDK's own stream
accumulator (``accumulate_event``), so what a client reconstructs is what was meant.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message

from mfc.server import anthropic as an
from mfc.server import ollama as ol


def request(**fields: Any) -> an.MessagesRequest:
    body = {
        "model": "m",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }
    return ol.parse(an.MessagesRequest, json.dumps(body).encode())  # type: ignore[no-any-return]


def native(**fields: Any) -> dict[str, Any]:
    """The translated request as Ollama's JSON (defaults left out)."""
    return an.messages_request(request(**fields)).model_dump(by_alias=True, exclude_defaults=True)


def messages(**fields: Any) -> list[dict[str, Any]]:
    return list(native(**fields)["messages"])


# --- requests -----------------------------------------------------------------------------------


def test_basic() -> None:
    assert native() == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "options": {"num_predict": 100},
        "stream": False,
    }
    assert an.messages_request(request(stream=True)).stream is True


def test_options() -> None:
    got = native(temperature=0.5, top_p=0.9, top_k=40, stop_sequences=["\n", "END"])
    assert got["options"] == {
        "num_predict": 100,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ["\n", "END"],
    }


@pytest.mark.parametrize(
    ("system", "want"),
    [
        ("be brief", "be brief"),
        ([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "ab"),
        (
            [
                {
                    "type": "text",
                    "text": "You are Claude Code.",
                    "cache_control": {"type": "ephemeral"},
                },
                {"type": "image", "source": {}},
                {"type": "text", "text": " Be terse."},
            ],
            "You are Claude Code. Be terse.",
        ),
    ],
    ids=["string", "blocks", "blocks-with-cache-control"],
)
def test_system(system: Any, want: str) -> None:
    assert messages(system=system)[0] == {"role": "system", "content": want}


def test_empty_system_adds_no_message() -> None:
    assert messages(system="") == [{"role": "user", "content": "hi"}]
    assert messages(system=[]) == [{"role": "user", "content": "hi"}]


def test_tool_use_and_tool_results() -> None:
    """Claude Code's second turn: the assistant's tool_use, then tool_result blocks (before
    the user's text, as Ollama orders them), a content array flattened to its text."""
    got = messages(
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "need a tool", "signature": "abc"},
                    {"type": "text", "text": "Let me check."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "err: "},
                            {"type": "text", "text": "x"},
                        ],
                    },
                    {"type": "text", "text": "thanks", "cache_control": {"type": "ephemeral"}},
                ],
            },
        ]
    )
    assert got == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "thinking": "need a tool",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                }
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "toolu_1"},
        {"role": "tool", "content": "err: x", "tool_call_id": "toolu_2"},
        {"role": "user", "content": "thanks"},
    ]


def test_thinking_only_and_unknown_blocks() -> None:
    got = messages(
        messages=[
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t"}]},
            {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "x"}]},
        ]
    )
    assert got == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "thinking": "t"},
    ]


def test_image_becomes_an_image() -> None:
    src = {"type": "base64", "media_type": "image/png", "data": "aGk="}
    got = messages(messages=[{"role": "user", "content": [{"type": "image", "source": src}]}])
    assert got == [{"role": "user", "images": ["aGk="]}]


def test_tools() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "a city"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    got = native(tools=[{"name": "get_weather", "description": "d", "input_schema": schema}])
    assert got["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "d",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string", "description": "a city"}},
                    "required": ["city"],
                },
            },
        }
    ]
    assert native(tools=[{"type": "custom", "name": "f"}])["tools"][0]["function"]["name"] == "f"


@pytest.mark.parametrize(
    ("fields", "think"),
    [
        ({}, None),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, True),
        ({"thinking": {"type": "disabled"}}, False),
        ({"output_config": {"effort": "medium"}}, "medium"),
        ({"output_config": {"effort": " XHigh "}}, "high"),
        ({"output_config": {"effort": "weird"}}, None),
        ({"thinking": {"type": "disabled"}, "output_config": {"effort": "high"}}, False),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}, "low"),
    ],
    ids=[
        "absent",
        "enabled",
        "disabled",
        "effort",
        "xhigh",
        "bad-effort",
        "disabled-wins",
        "adaptive",
    ],
)
def test_think(fields: dict[str, Any], think: Any) -> None:
    assert an.messages_request(request(**fields)).think == think


def test_unknown_fields_and_nulls_are_ignored() -> None:
    got = native(
        metadata={"user_id": "u"},
        tool_choice={"type": "any"},
        context_management={"edits": []},
        temperature=None,
        betas=["x"],
    )
    assert got["options"] == {"num_predict": 100}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": ""}, "model is required"),
        ({"max_tokens": 0}, "max_tokens is required and must be positive"),
        ({"max_tokens": -1}, "max_tokens is required and must be positive"),
        ({"messages": []}, "messages is required"),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "x", "input": {}}]}
                ]
            },
            "tool_use block missing required 'name' field",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image"}]}]},
            "invalid image source",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "image"}],
                            }
                        ],
                    }
                ]
            },
            "invalid tool_result image source",
        ),
        (
            {"tools": [{"name": "f", "input_schema": {"properties": {"a": {"type": 3}}}}]},
            "invalid input_schema for tool 'f': input_schema.properties.a.type",
        ),
        ({"temperature": -1}, "temperature"),
    ],
    ids=[
        "model",
        "max-tokens-zero",
        "max-tokens-negative",
        "messages",
        "tool-use-name",
        "image-source",
        "tool-result-image",
        "tool-schema",
        "temperature",
    ],
)
def test_bad_requests(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ol.BadRequest) as err:
        an.messages_request(request(**fields))
    assert message in err.value.message


def test_decoding_is_strict_about_types() -> None:
    with pytest.raises(ol.BadRequest) as err:
        request(max_tokens="100")
    assert err.value.message.startswith("max_tokens: ")
    with pytest.raises(ol.BadRequest):
        request(stream="yes")


# --- errors and ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (501, "api_error"),
        (503, "overloaded_error"),
        (529, "overloaded_error"),
    ],
)
def test_error_types(status: int, kind: str) -> None:
    body = an.error_body(status, "why", "req_1")
    assert body == {
        "type": "error",
        "error": {"type": kind, "message": "why"},
        "request_id": "req_1",
    }


def test_ids() -> None:
    assert an.message_id().startswith("msg_") and len(an.message_id()) == 28
    assert an.request_id().startswith("req_") and an.request_id() != an.request_id()


# --- responses ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    id: str
    name: str
    arguments: Mapping[str, Any]


@pytest.mark.parametrize(
    ("reason", "calls", "want"),
    [
        ("stop", False, "end_turn"),
        ("length", False, "max_tokens"),
        ("stop", True, "tool_use"),
        ("length", True, "tool_use"),
        ("other", False, "stop_sequence"),
        ("", False, None),
    ],
)
def test_stop_reason(reason: str, calls: bool, want: str | None) -> None:
    assert an.stop_reason(reason, calls) == want


def test_stop_reason_names_the_matched_stop_sequence() -> None:
    assert an.stop_reason("stop", False, "END") == "stop_sequence"
    assert an.stop_reason("stop", True, "END") == "tool_use"


def test_messages_response_parses_as_the_sdks_message() -> None:
    body = an.messages_response(
        "msg_1",
        "m",
        content="It is sunny.",
        thinking="think",
        tool_calls=[Call("call_1", "get_weather", {"city": "Paris"})],
        done_reason="stop",
        input_tokens=12,
        output_tokens=5,
    )
    assert [b["type"] for b in body["content"]] == ["thinking", "text", "tool_use"]
    assert body["stop_reason"] == "tool_use"
    msg = Message.model_validate(body)  # validated, not just constructed
    assert msg.usage.input_tokens == 12 and msg.usage.output_tokens == 5
    empty = an.messages_response(
        "msg_2",
        "m",
        content="",
        thinking="",
        tool_calls=[],
        done_reason="length",
        input_tokens=1,
        output_tokens=0,
    )
    assert empty["content"] == [] and empty["stop_reason"] == "max_tokens"


# --- the event sequence -------------------------------------------------------------------------

Step = tuple[str, str, Sequence[Call]]


def run(steps: Sequence[Step], reason: str = "stop") -> list[tuple[str, dict[str, Any]]]:
    conv = an.StreamConverter("msg_1", "m", estimated_input_tokens=7)
    out: list[tuple[str, dict[str, Any]]] = []
    for content, thinking, calls in steps:
        out.extend(conv.delta(content, thinking, calls))
    out.extend(conv.final(reason, 10, 20))
    return out


def replay(events: Sequence[tuple[str, dict[str, Any]]]) -> Any:
    """What the SDK's stream accumulator makes of the events (a parsed Message)."""
    snapshot = None
    bufs: dict[int, bytes] = {}
    for _name, data in events:
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=bufs)  # type: ignore[arg-type]
    return snapshot


def shape(events: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """Each event as `name[index]:detail`, for compact expectations."""
    out = []
    for name, data in events:
        if name == "content_block_start":
            out.append(f"start[{data['index']}]:{data['content_block']['type']}")
        elif name == "content_block_delta":
            out.append(f"delta[{data['index']}]:{data['delta']['type']}")
        elif name == "content_block_stop":
            out.append(f"stop[{data['index']}]")
        else:
            out.append(name)
    return out


def test_text_only() -> None:
    events = run([("Hel", "", ()), ("lo", "", ())])
    assert shape(events) == [
        "message_start",
        "start[0]:text",
        "delta[0]:text_delta",
        "delta[0]:text_delta",
        "stop[0]",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["usage"] == {"input_tokens": 7, "output_tokens": 0}
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"input_tokens": 10, "output_tokens": 20},
    }
    msg = replay(events)
    assert [b.text for b in msg.content] == ["Hello"]
    assert msg.stop_reason == "end_turn" and msg.usage.output_tokens == 20


def test_thinking_text_and_tool_calls() -> None:
    calls = (Call("call_a", "get_weather", {"city": "Paris"}), Call("call_b", "f", {}))
    events = run([("", "Let me ", ()), ("", "think.", ()), ("Checking.", "", ()), ("", "", calls)])
    assert shape(events) == [
        "message_start",
        "start[0]:thinking",
        "delta[0]:thinking_delta",
        "delta[0]:thinking_delta",
        "stop[0]",
        "start[1]:text",
        "delta[1]:text_delta",
        "stop[1]",
        "start[2]:tool_use",
        "delta[2]:input_json_delta",
        "stop[2]",
        "start[3]:tool_use",
        "delta[3]:input_json_delta",
        "stop[3]",
        "message_delta",
        "message_stop",
    ]
    tool_start = events[8][1]["content_block"]
    assert tool_start == {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}
    assert events[9][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"city":"Paris"}'}
    msg = replay(events)
    assert msg.stop_reason == "tool_use"
    assert msg.content[0].thinking == "Let me think."
    assert msg.content[1].text == "Checking."
    assert [(b.id, b.name, b.input) for b in msg.content[2:]] == [
        ("call_a", "get_weather", {"city": "Paris"}),
        ("call_b", "f", {}),
    ]


def test_thinking_directly_followed_by_a_tool_call() -> None:
    events = run([("", "hmm", ()), ("", "", (Call("c", "f", {"x": [1, "é"]}),))])
    assert shape(events)[1:-2] == [
        "start[0]:thinking",
        "delta[0]:thinking_delta",
        "stop[0]",
        "start[1]:tool_use",
        "delta[1]:input_json_delta",
        "stop[1]",
    ]
    assert replay(events).content[1].input == {"x": [1, "é"]}


def test_text_before_thinking_and_late_thinking() -> None:
    """Thinking after text closes the text block and opens one thinking block; thinking
    once the thinking block was closed is dropped, as Ollama drops it."""
    events = run([("a", "", ()), ("", "t", ()), ("b", "", ()), ("", "late", ()), ("c", "", ())])
    assert shape(events)[1:-2] == [
        "start[0]:text",
        "delta[0]:text_delta",
        "stop[0]",
        "start[1]:thinking",
        "delta[1]:thinking_delta",
        "stop[1]",
        "start[2]:text",
        "delta[2]:text_delta",
        "delta[2]:text_delta",
        "stop[2]",
    ]
    msg = replay(events)
    assert [b.type for b in msg.content] == ["text", "thinking", "text"]
    assert msg.content[2].text == "bc"


def test_a_tool_call_id_is_sent_once() -> None:
    call = Call("c", "f", {})
    events = run([("", "", (call,)), ("", "", (call,))])
    assert shape(events).count("start[0]:tool_use") == 1
    assert "start[1]:tool_use" not in shape(events)


def test_empty_answer_and_length() -> None:
    events = run([], reason="length")
    assert shape(events) == ["message_start", "message_delta", "message_stop"]
    assert replay(events).stop_reason == "max_tokens"


def test_error_event() -> None:
    name, data = an.StreamConverter.error(500, "runner died")
    assert name == "error"
    assert data == {"type": "error", "error": {"type": "api_error", "message": "runner died"}}


def test_sse_framing() -> None:
    """Anthropic's events go through the one SSE writer (mfc.server.http, shared with /v1)."""
    from mfc.server.http import sse_bytes

    assert sse_bytes("message_stop", {"type": "message_stop"}) == (
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    assert sse_bytes("x", {"t": "é\n"}) == 'event: x\ndata: {"t":"é\\n"}\n\n'.encode()


# --- the token estimate -------------------------------------------------------------------------


def test_estimate_tokens() -> None:
    def estimate(**fields: Any) -> int:
        body = {"model": "m", **fields}
        return an.estimate_tokens(ol.parse(an.CountTokensRequest, json.dumps(body).encode()))  # type: ignore[arg-type]

    assert estimate(messages=[{"role": "user", "content": "Hello, world"}]) == 4  # 16 bytes
    assert estimate(messages=[{"role": "user", "content": "é"}]) == 1  # at least one
    assert estimate(messages=[]) == 0
    assert estimate(system="x" * 40, messages=[]) == 10
    with_tool = estimate(
        messages=[{"role": "user", "content": "hi"}],
        tools=[{"name": "f", "description": "dd", "input_schema": {"type": "object"}}],
    )
    assert with_tool == (len("user") + 2 + 1 + 2 + len('{"type":"object"}')) // 4
    thinking = estimate(
        messages=[{"role": "assistant", "content": [{"type": "thinking", "thinking": "t" * 20}]}]
    )
    assert thinking == (len("assistant") + 20) // 4
