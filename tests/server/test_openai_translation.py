"""The pure OpenAI translation (mfc.server.openai): requests to Ollama's models, and the
service's events (hand-made Delta/Final) to OpenAI's payloads, chunks and Responses events.

Expected shapes follow Ollama's openai/*_test.go and middleware/openai_test.go.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest

from mfc.server import ollama as ol
from mfc.server import openai as oa
from mfc.server.service import Delta, Final, Outcome, ToolCall


def chat(**body: Any) -> ol.ChatRequest:
    body.setdefault("model", "m")
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return oa.chat_request(oa.parse(oa.ChatCompletionRequest, json.dumps(body).encode()))


def final(reason: str = "stop", prompt: int = 3, out: int = 5) -> Final:
    return Final(reason, ol.Metrics(prompt_eval_count=prompt, eval_count=out))


CALL = ToolCall("call_abc12345", 0, "get_weather", {"city": "Paris"})
LOGPROB = {"token": "d", "logprob": -0.1, "bytes": [100], "top_logprobs": []}


# --- requests ---------------------------------------------------------------------------------


def test_chat_defaults_are_ollamas() -> None:
    req = chat()
    assert req.options == {"temperature": 1.0, "top_p": 1.0}
    assert req.stream is False
    assert req.format is None and req.think is None and req.tools is None


@pytest.mark.parametrize(
    ("body", "options"),
    [
        ({"max_tokens": 7}, {"num_predict": 7}),
        ({"max_completion_tokens": 9, "max_tokens": 7}, {"num_predict": 9}),
        ({"stop": "x"}, {"stop": ["x"]}),
        ({"stop": ["x", 3, "y"]}, {"stop": ["x", "y"]}),
        ({"seed": 4, "temperature": 0}, {"seed": 4, "temperature": 0}),
        ({"frequency_penalty": 0.5, "presence_penalty": 0.25}, {"frequency_penalty": 0.5}),
        ({"top_p": 0.5}, {"top_p": 0.5}),
    ],
    ids=["max_tokens", "max_completion_tokens", "stop-string", "stop-list", "seed", "pen", "top_p"],
)
def test_chat_options(body: dict[str, Any], options: dict[str, Any]) -> None:
    got = chat(**body).options or {}
    for k, v in options.items():
        assert got[k] == v


@pytest.mark.parametrize(
    ("effort", "think"),
    [
        ("none", False),
        ("minimal", "low"),
        ("low", "low"),
        ("medium", "medium"),
        ("high", "high"),
        ("xhigh", "max"),
        ("ultra", "max"),
    ],
)
def test_reasoning_effort_is_think(effort: str, think: Any) -> None:
    assert chat(reasoning_effort=effort).think == think
    assert chat(reasoning={"effort": effort}).think == think


def test_bad_reasoning_effort() -> None:
    with pytest.raises(oa.Invalid) as e:
        chat(reasoning_effort="extreme")
    assert e.value.param == "reasoning_effort"


@pytest.mark.parametrize(
    ("fmt", "want"),
    [
        ({"type": "json_object"}, "json"),
        ({"type": "text"}, None),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            {"type": "object"},
        ),
    ],
)
def test_response_format(fmt: dict[str, Any], want: Any) -> None:
    assert chat(response_format=fmt).format == want


@pytest.mark.parametrize(
    "fmt",
    [
        {"type": "xml"},
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": {"name": "x"}},
    ],
    ids=["unknown-type", "no-json_schema", "no-schema"],
)
def test_bad_response_format(fmt: dict[str, Any]) -> None:
    with pytest.raises(oa.Invalid) as e:
        chat(response_format=fmt)
    assert e.value.param == "response_format"


def test_messages_parts_tools_and_tool_results() -> None:
    req = chat(
        messages=[
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            {
                "role": "assistant",
                "content": None,
                "reasoning": "hmm",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"x": 1}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        ],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    )
    msgs = [m.model_dump(exclude_defaults=True) for m in req.messages]
    assert msgs == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a"},  # Ollama: each content part is its own message
        {"role": "user", "content": "b"},
        {
            "role": "assistant",
            "thinking": "hmm",
            "tool_calls": [{"id": "call_1", "function": {"name": "f", "arguments": {"x": 1}}}],
        },
        {"role": "tool", "content": "42", "tool_name": "f", "tool_call_id": "call_1"},
    ]
    assert req.tools and req.tools[0].function.name == "f"


def test_tool_choice_none_drops_tools() -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert chat(tools=tools, tool_choice="none").tools is None
    assert chat(tools=tools, tool_choice="required").tools
    assert chat(tools=tools, tool_choice={"type": "function", "function": {"name": "f"}}).tools


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user"}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": "http://x/y.png"}],
                    }
                ]
            },
            "messages",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "f", "arguments": "{not json"}}],
                    }
                ]
            },
            "messages",
        ),
        ({"tools": [{"type": "function", "function": {"parameters": {}}}]}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]}, "tools"),
        ({"tools": ["f"]}, "tools"),
        ({"tool_choice": 3}, "tool_choice"),
        ({"n": 2}, "n"),
    ],
    ids=[
        "no-messages",
        "no-content",
        "unknown-part",
        "http-image",
        "bad-arguments",
        "tool-without-name",
        "tool-parameters-not-object",
        "tool-not-object",
        "tool_choice",
        "n",
    ],
)
def test_chat_refusals(body: dict[str, Any], param: str) -> None:
    with pytest.raises(oa.Invalid) as e:
        chat(**body)
    assert e.value.param == param


def test_wrong_types_are_bad_requests() -> None:
    with pytest.raises(ol.BadRequest, match="temperature"):
        oa.parse(oa.ChatCompletionRequest, b'{"model":"m","temperature":"hot"}')
    with pytest.raises(ol.BadRequest, match="stream"):
        oa.parse(oa.ChatCompletionRequest, b'{"model":"m","stream":"yes"}')
    # unknown fields are ignored (the SDKs send many)
    oa.parse(oa.ChatCompletionRequest, b'{"model":"m","user":"u","store":false,"metadata":{}}')


def test_image_part_becomes_an_image() -> None:
    png = base64.b64encode(b"\x89PNG").decode()
    req = chat(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}
                ],
            }
        ]
    )
    assert req.messages[0].images == [png]


def test_completion_request() -> None:
    body = {"model": "m", "prompt": "abc", "max_tokens": 2, "stop": ["q"], "logprobs": 3}
    req = oa.completion_request(oa.parse(oa.CompletionRequest, json.dumps(body).encode()))
    assert req.prompt == "abc"
    assert req.options == {
        "stop": ["q"],
        "num_predict": 2,
        "temperature": 1.0,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
        "top_p": 1.0,
    }
    assert req.logprobs and req.top_logprobs == 3
    with pytest.raises(oa.Invalid, match="stop"):
        oa.completion_request(oa.CompletionRequest(model="m", prompt="a", stop=["x", 1]))
    with pytest.raises(oa.Invalid) as e:
        oa.completion_request(oa.CompletionRequest(model="m", prompt=["a", "b"]))
    assert e.value.param == "prompt"


def test_embed_request() -> None:
    req = oa.embed_request(oa.EmbeddingRequest(model="m", input="", dimensions=4))
    assert req.input == [""] and req.dimensions == 4
    for bad, param in [
        ({"input": []}, "input"),
        ({"input": None}, "input"),
        ({"input": [[1, 2]]}, "input"),
        ({"input": "a", "encoding_format": "hex"}, "encoding_format"),
    ]:
        with pytest.raises(oa.Invalid) as e:
            oa.embed_request(oa.EmbeddingRequest(model="m", **bad))
        assert e.value.param == param


def test_embedding_list_base64_is_little_endian_float32() -> None:
    out = oa.embedding_list("m", [[0.5, -1.0]], 2, "base64")
    raw = base64.b64decode(out["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (0.5, -1.0)
    assert out["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    assert oa.embedding_list("m", [[0.5]], 1)["data"][0]["embedding"] == [0.5]


def test_error_body() -> None:
    assert oa.error_body(404, "no", "model") == {
        "error": {"message": "no", "type": "not_found_error", "param": "model", "code": None}
    }
    assert oa.error_type(400) == "invalid_request_error"
    assert oa.error_type(503) == "api_error"


def test_model_list() -> None:
    entries = [{"name": "a/b:latest", "model": "a/b:latest", "modified_at": "2024-01-01T00:00:00Z"}]
    assert oa.model_list(entries) == {
        "object": "list",
        "data": [{"id": "a/b:latest", "object": "model", "created": 1704067200, "owned_by": "a"}],
    }
    assert oa.model_entry("counter", 5)["owned_by"] == "library"


# --- chat answers -----------------------------------------------------------------------------


def test_chat_completion_with_tool_calls_and_reasoning() -> None:
    got = Outcome("", "think", (CALL,), (LOGPROB,), final())
    out = oa.chat_completion("chatcmpl-1", "m", 10, got)
    assert out == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 10,
        "model": "m",
        "system_fingerprint": "fp_ollama",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "",
                    "reasoning": "think",
                    "reasoning_content": "think",
                    "tool_calls": [
                        {
                            "id": "call_abc12345",
                            "index": 0,
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
                "logprobs": {"content": [LOGPROB]},
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
    }
    # "length" is never relabelled
    assert oa.finish_reason(final("length"), True) == "length"


def test_chat_stream_sequence() -> None:
    s = oa.ChatStream("id", "m", 7, include_usage=True)
    chunks: list[Any] = []
    chunks += s.delta(Delta(thinking="a"))
    chunks += s.delta(Delta(thinking="b", content="c"))  # mixed: two chunks
    chunks += s.delta(Delta(tool_calls=(CALL,)))
    chunks += s.final(final())
    deltas = [c["choices"][0]["delta"] if c != "[DONE]" and c["choices"] else c for c in chunks]
    assert deltas == [
        {"role": "assistant", "content": "", "reasoning": "a", "reasoning_content": "a"},
        {"reasoning": "b", "reasoning_content": "b"},
        {"content": "c"},
        {"content": "", "tool_calls": oa.tool_calls([CALL])},
        {},
        chunks[-2],
        "[DONE]",
    ]
    assert chunks[-3]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["total_tokens"] == 8
    assert all(c["created"] == 7 and c["id"] == "id" for c in chunks[:-1])


def test_chat_stream_empty_answer_still_has_a_role_chunk() -> None:
    s = oa.ChatStream("id", "m", 7)
    out = s.final(final("length"))
    assert out[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}  # type: ignore[index]
    assert out[1]["choices"][0]["finish_reason"] == "length"  # type: ignore[index]
    assert out[2] == "[DONE]"


def test_chat_stream_logprobs_ride_on_the_first_split_chunk() -> None:
    s = oa.ChatStream("id", "m", 7)
    a, b = s.delta(Delta(content="x", thinking="y", logprobs=(LOGPROB,)))
    assert a["choices"][0]["logprobs"] == {"content": [LOGPROB]}
    assert "logprobs" not in b["choices"][0]


def test_completion_stream_usage_and_echo() -> None:
    s = oa.CompletionStream("cmpl-1", "m", include_usage=True, echo="ab")
    first = s.delta(Delta(content="c", logprobs=(LOGPROB,)))[0]
    assert first["choices"][0]["text"] == "abc"
    assert first["choices"][0]["logprobs"] == {
        "tokens": ["d"],
        "token_logprobs": [-0.1],
        "top_logprobs": [{}],
        "text_offset": [0],
    }
    assert first["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    last, use, done = s.final(final("length"))
    assert last["choices"][0] == {"text": "", "index": 0, "finish_reason": "length"}  # type: ignore[index]
    assert use["choices"] == [] and use["usage"]["completion_tokens"] == 5  # type: ignore[index]
    assert done == "[DONE]"


# --- responses --------------------------------------------------------------------------------


def responses(**body: Any) -> tuple[oa.ResponsesRequest, ol.ChatRequest]:
    body.setdefault("model", "m")
    r = oa.parse(oa.ResponsesRequest, json.dumps(body).encode())
    return r, oa.responses_request(r)


def test_responses_request_items() -> None:
    _, req = responses(
        instructions="sys",
        input=[
            {"role": "user", "content": "q"},
            {"type": "reasoning", "encrypted_content": "thought"},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
            {"type": "function_call_output", "call_id": "c1", "output": "r"},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "more"}],
            },
        ],
        tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        max_output_tokens=5,
        reasoning={"effort": "high"},
        text={"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
    )
    msgs = [m.model_dump(exclude_defaults=True) for m in req.messages]
    assert msgs == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "thinking": "thought",
            "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": {"a": 1}}}],
        },
        {"role": "tool", "content": "r", "tool_call_id": "c1"},
        {"role": "user", "content": "more"},
    ]
    assert req.options == {"temperature": 1.0, "num_predict": 5}
    assert req.think == "high" and req.format == {"type": "object"}
    assert req.tools and req.tools[0].function.name == "f"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [{"content": "x"}]}, "input"),
        ({"input": [{"type": "bogus"}]}, "input"),
        ({"input": [{"role": "user", "content": [{"type": "input_file"}]}]}, "input"),
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"text": {"format": {"type": "json_schema"}}}, "text"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"input": 3}, "input"),
    ],
    ids=["no-type", "unknown", "file", "web_search", "nameless", "no-schema", "prev", "input-type"],
)
def test_responses_refusals(body: dict[str, Any], param: str) -> None:
    with pytest.raises(oa.Invalid) as e:
        responses(**body)
    assert e.value.param == param


def test_to_response() -> None:
    r, _ = responses(input="x")
    out = oa.to_response(r, "resp_1", "msg_1", Outcome("hi", "th", (), (), final()), 5, 6)
    assert [i["type"] for i in out["output"]] == ["reasoning", "message"]
    assert out["output"][1]["content"][0]["text"] == "hi"
    assert out["usage"]["total_tokens"] == 8 and out["completed_at"] == 6
    calls = oa.to_response(r, "resp_1", "msg_1", Outcome("", "", (CALL,), (), final()), 5, 6)
    assert calls["output"] == [
        {
            "id": "fc_resp_1_0",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_abc12345",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        }
    ]


def test_responses_stream_text() -> None:
    r, _ = responses(input="x")
    s = oa.ResponsesStream(r, "resp_1", "msg_1", created=5)
    events = s.delta(Delta(content="a")) + s.delta(Delta(content="b")) + s.final(final(), 6)
    assert [e for e, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [d["sequence_number"] for _, d in events] == list(range(10))
    assert all(d["type"] == e for e, d in events)
    done = events[-1][1]["response"]
    assert done["status"] == "completed" and done["completed_at"] == 6
    assert done["output"] == [
        {
            "id": "msg_1",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "ab", "annotations": [], "logprobs": []}],
        }
    ]


def test_responses_stream_reasoning_then_tool_call() -> None:
    r, _ = responses(input="x")
    s = oa.ResponsesStream(r, "resp_1", "msg_1", created=5)
    events = s.delta(Delta(thinking="hm")) + s.delta(Delta(tool_calls=(CALL,))) + s.final(final())
    assert [e for e, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = events[6][1]
    assert added["output_index"] == 1
    assert added["item"]["status"] == "in_progress" and added["item"]["arguments"] == ""
    assert events[7][1]["delta"] == '{"city":"Paris"}'
    output = events[-1][1]["response"]["output"]
    assert [i["type"] for i in output] == ["reasoning", "function_call"]
    assert output[0]["summary"] == [{"type": "summary_text", "text": "hm"}]


def test_responses_stream_failure_event() -> None:
    r, _ = responses(input="x")
    s = oa.ResponsesStream(r, "resp_1", "msg_1", created=5)
    s.delta(Delta(content="a"))
    ((name, data),) = s.failed("runner crashed")
    assert name == "response.failed"
    assert data["response"]["status"] == "failed"
    assert data["response"]["error"] == {"code": "server_error", "message": "runner crashed"}
