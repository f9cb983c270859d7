"""The OpenAI API (/v1) at the wire level against a live `mfc serve`: SSE framing byte by
byte, payload snapshots (volatile ids and times normalised), and every refusal in OpenAI's
error shape with the right status — never a 500.
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ANSWER = "defghijklmnopqrstuvwxyz"
GREEDY = {"temperature": 0, "seed": 1}
USER = [{"role": "user", "content": "abc"}]


def post(served: Any, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(served.url + path, json=body, timeout=60, **kw)


def normalise(text: str) -> str:
    """Ids and times vary per request; everything else is part of the contract."""
    text = re.sub(r'"(chatcmpl|cmpl)-\d+"', r'"\1-N"', text)
    text = re.sub(r'"(resp|msg|rs)_\d+"', r'"\1_N"', text)
    text = re.sub(r'"fc_\d+_(\d+)"', r'"fc_N_\1"', text)
    text = re.sub(r'"(created|created_at|completed_at)":\d+', r'"\1":0', text)
    # A prompt prefix already in the KV cache is not evaluated again (nor counted).
    return re.sub(r'"(prompt_tokens|input_tokens|total_tokens)":[1-9]\d*', r'"\1":P', text)


def frames(raw: bytes) -> list[bytes]:
    """SSE events: each ends with a blank line, nothing after the last one."""
    assert raw.endswith(b"\n\n")
    return raw[:-2].split(b"\n\n")


def data_events(raw: bytes) -> list[Any]:
    out: list[Any] = []
    for f in frames(raw):
        assert f.startswith(b"data: ") and b"\n" not in f, f
        payload = f[len(b"data: ") :]
        out.append(payload.decode() if payload == b"[DONE]" else json.loads(payload))
    return out


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    want = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    assert err["type"] == want and err["code"] is None and err["message"]
    return dict(err)


# --- chat completions -------------------------------------------------------------------------


def test_chat_not_streamed(served: Any, snapshot: Any) -> None:
    r = post(served, "/v1/chat/completions", {"model": "counter", "messages": USER, **GREEDY})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    out = r.json()
    assert re.fullmatch(r"chatcmpl-\d{1,3}", out["id"])
    assert out["choices"][0]["message"]["content"] == ANSWER
    assert normalise(r.text) == snapshot


def test_chat_stream_framing_is_exact(served: Any, snapshot: Any) -> None:
    body = {
        "model": "counter",
        "messages": USER,
        "stream": True,
        "max_tokens": 3,
        "stream_options": {"include_usage": True},
        **GREEDY,
    }
    with httpx.stream("POST", served.url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read()
    events = data_events(raw)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "d"}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == "def"
    finish, usage = chunks[-2], chunks[-1]
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": "length"}]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 3
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    assert normalise(raw.decode()) == snapshot


def test_chat_stream_without_usage_has_no_usage_chunk(served: Any) -> None:
    body = {"model": "counter", "messages": USER, "stream": True, "max_tokens": 2, **GREEDY}
    events = data_events(post(served, "/v1/chat/completions", body).content)
    assert events[-1] == "[DONE]"
    assert all("usage" not in c for c in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "length"


def test_chat_stop_and_max_completion_tokens(served: Any) -> None:
    body = {"model": "counter", "messages": USER, "stop": "h", **GREEDY}
    out = post(served, "/v1/chat/completions", body).json()
    assert out["choices"][0]["message"]["content"] == "defg"
    assert out["choices"][0]["finish_reason"] == "stop"
    body = {"model": "counter", "messages": USER, "max_completion_tokens": 4, **GREEDY}
    out = post(served, "/v1/chat/completions", body).json()
    assert out["choices"][0]["message"]["content"] == "defg"
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 4


def test_chat_json_object_is_constrained(served: Any) -> None:
    body = {
        "model": "counter",
        "messages": USER,
        "response_format": {"type": "json_object"},
        "max_tokens": 8,
        **GREEDY,
    }
    out = post(served, "/v1/chat/completions", body).json()
    # The counter wants "d": the grammar makes it open an object instead.
    assert out["choices"][0]["message"]["content"].startswith("{")


def test_chat_debug_render_only(served: Any) -> None:
    body = {"model": "counter-sys", "messages": USER, "_debug_render_only": True}
    out = post(served, "/v1/chat/completions", body).json()
    assert out["_debug_info"]["rendered_template"] == "<s>[system]be brief\n[user]abc"


# --- completions ------------------------------------------------------------------------------


def test_completion(served: Any, snapshot: Any) -> None:
    body = {"model": "counter", "prompt": "abc", "max_tokens": 5, **GREEDY}
    r = post(served, "/v1/completions", body)
    out = r.json()
    assert re.fullmatch(r"cmpl-\d{1,3}", out["id"])
    assert out["choices"][0]["text"] == "defgh"
    assert out["choices"][0]["finish_reason"] == "length"
    assert normalise(r.text) == snapshot
    echoed = post(served, "/v1/completions", {**body, "echo": True}).json()
    assert echoed["choices"][0]["text"] == "abcdefgh"


def test_completion_stream(served: Any, snapshot: Any) -> None:
    body = {
        "model": "counter",
        "prompt": "wx",
        "stream": True,
        "stream_options": {"include_usage": True},
        **GREEDY,
    }
    raw = post(served, "/v1/completions", body).content
    events = data_events(raw)
    assert events[-1] == "[DONE]"
    texts = [e["choices"][0]["text"] for e in events[:-2]]
    assert "".join(texts) == "yz"
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] == 2
    assert normalise(raw.decode()) == snapshot


def test_completion_empty_prompt_loads(served: Any) -> None:
    out = post(served, "/v1/completions", {"model": "counter", "prompt": ""}).json()
    assert out["choices"][0] == {"text": "", "index": 0, "finish_reason": "stop"}


# --- responses --------------------------------------------------------------------------------


def test_responses_not_streamed(served: Any, snapshot: Any) -> None:
    body = {"model": "counter", "input": "abc", "instructions": "be brief", **GREEDY}
    r = post(served, "/v1/responses", body)
    out = r.json()
    assert out["output"][0]["content"][0]["text"] == ANSWER
    assert out["instructions"] == "be brief"
    assert normalise(r.text) == snapshot


def test_responses_stream_events(served: Any, snapshot: Any) -> None:
    body = {"model": "counter", "input": "wx", "stream": True, **GREEDY}
    with httpx.stream("POST", served.url + "/v1/responses", json=body, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read()
    names = []
    for f in frames(raw):
        event, data = f.split(b"\n")
        assert event.startswith(b"event: ") and data.startswith(b"data: ")
        name = event[len(b"event: ") :].decode()
        assert json.loads(data[len(b"data: ") :])["type"] == name
        names.append(name)
    assert names[:2] == ["response.created", "response.in_progress"]
    assert names[-1] == "response.completed"
    assert normalise(raw.decode()) == snapshot


# --- embeddings and models --------------------------------------------------------------------


def test_embeddings(served: Any) -> None:
    out = post(served, "/v1/embeddings", {"model": "counter", "input": ["a", "b"]}).json()
    assert out["object"] == "list" and out["model"] == "counter"
    assert [d["index"] for d in out["data"]] == [0, 1]
    assert all(d["object"] == "embedding" for d in out["data"])
    assert out["usage"]["prompt_tokens"] == out["usage"]["total_tokens"] > 0
    short = post(served, "/v1/embeddings", {"model": "counter", "input": "a", "dimensions": 8})
    assert len(short.json()["data"][0]["embedding"]) == 8


def test_models(served: Any) -> None:
    out = httpx.get(served.url + "/v1/models").json()
    assert out["object"] == "list"
    ids = {m["id"] for m in out["data"]}
    assert {"counter:latest", "counter-sys:latest", "counter-tools:latest"} <= ids
    for m in out["data"]:
        assert m["object"] == "model" and m["owned_by"] == "library" and m["created"] > 0
    one = httpx.get(served.url + "/v1/models/counter").json()
    assert one["id"] == "counter" and one["object"] == "model" and one["owned_by"] == "library"
    full = httpx.get(served.url + "/v1/models/library/counter:latest").json()
    assert full["id"] == "library/counter:latest"


# --- refusals ---------------------------------------------------------------------------------

PNG = "data:image/png;base64,iVBORw0KGgo="
BAD = [
    # (path, body, status, param)
    ("/v1/chat/completions", {"model": "nope", "messages": USER}, 404, "model"),
    ("/v1/chat/completions", {"model": "counter", "messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"messages": USER}, 400, "model"),
    ("/v1/chat/completions", {"model": "counter", "messages": "abc"}, 400, None),
    ("/v1/chat/completions", {"model": "counter", "messages": USER, "temperature": "x"}, 400, None),
    ("/v1/chat/completions", {"model": "counter", "messages": USER, "top_logprobs": 30}, 400, None),
    (
        "/v1/chat/completions",
        {"model": "counter", "messages": USER, "response_format": {"type": "yaml"}},
        400,
        "response_format",
    ),
    (
        "/v1/chat/completions",
        {
            "model": "counter",
            "messages": USER,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": 3}},
        },
        400,
        "response_format",
    ),
    (
        "/v1/chat/completions",
        {
            "model": "counter",
            "messages": USER,
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "x",
                    "schema": {"type": "object", "patternProperties": {"^a": {"type": "string"}}},
                },
            },
        },
        400,
        "response_format",
    ),
    (
        "/v1/chat/completions",
        {"model": "counter-tools", "messages": USER, "tools": [{"type": "function"}]},
        400,
        "tools",
    ),
    (
        "/v1/chat/completions",
        {
            "model": "counter",
            "messages": USER,
            "tools": [{"type": "function", "function": {"name": "f"}}],
        },
        400,
        "tools",
    ),
    (
        "/v1/chat/completions",
        {"model": "counter", "messages": USER, "reasoning_effort": "high"},
        400,
        "reasoning_effort",
    ),
    (
        "/v1/chat/completions",
        {"model": "counter", "messages": USER, "reasoning_effort": "extreme"},
        400,
        "reasoning_effort",
    ),
    (
        "/v1/chat/completions",
        {
            "model": "counter",
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}
            ],
        },
        400,
        "messages[0].content[0]",  # the part at fault
    ),
    ("/v1/completions", {"model": "counter", "prompt": [1, 2]}, 400, "prompt"),
    ("/v1/completions", {"model": "counter", "prompt": "a", "suffix": "z"}, 400, "suffix"),
    ("/v1/completions", {"model": "nope", "prompt": "a"}, 404, "model"),
    ("/v1/embeddings", {"model": "counter", "input": []}, 400, "input"),
    ("/v1/embeddings", {"model": "counter", "input": "a", "encoding_format": "x"}, 400, None),
    ("/v1/embeddings", {"model": "nope", "input": "a"}, 404, "model"),
    ("/v1/responses", {"model": "counter", "input": [{"type": "what"}]}, 400, "input"),
    (
        "/v1/responses",
        {"model": "counter", "input": "a", "tools": [{"type": "web_search"}]},
        400,
        "tools",
    ),
    (
        "/v1/responses",
        {"model": "counter", "input": "a", "text": {"format": {"type": "json_schema"}}},
        400,
        "text",
    ),
    ("/v1/responses", {"model": "nope", "input": "a"}, 404, "model"),
]


@pytest.mark.parametrize(("path", "body", "status", "param"), BAD)
def test_refusals_are_openai_errors(
    served: Any, path: str, body: Any, status: int, param: str | None
) -> None:
    err = error_of(post(served, path, body), status)
    if param is not None:
        assert err["param"] == param, err


def test_unknown_model_message(served: Any) -> None:
    r = httpx.get(served.url + "/v1/models/nope:latest")
    assert error_of(r, 404) == {
        "message": 'model "nope:latest" not found',
        "type": "not_found_error",
        "param": "model",
        "code": None,
    }


@pytest.mark.parametrize(
    "raw",
    [b"{bad", b"", b"[1]", b'{"model": NaN}', b"\xff"],
    ids=["syntax", "empty", "array", "nan", "not-utf8"],
)
def test_malformed_bodies(served: Any, raw: bytes) -> None:
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"):
        r = httpx.post(served.url + path, content=raw, timeout=30)
        error_of(r, 400)


def test_body_over_limit_is_413_in_openai_shape(served: Any) -> None:
    """A declared Content-Length over the limit (64 MiB) is refused before the body is read."""
    limit = 64 * 1024 * 1024
    url = urlparse(served.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Content-Type: application/json\r\nContent-Length: {limit + 1}\r\n".encode()
            + b'Connection: close\r\n\r\n{"model": "counter"'
        )
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    err = json.loads(body)["error"]
    assert err["type"] == "api_error" and f"the limit is {limit}" in err["message"]


# --- randomized: every /v1 POST route, any JSON-ish body ------------------------------------------

V1_ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]
V1_FIELDS = st.sampled_from(
    [
        "model",
        "messages",
        "prompt",
        "input",
        "role",
        "content",
        "type",
        "text",
        "image_url",
        "tools",
        "function",
        "name",
        "parameters",
        "arguments",
        "tool_calls",
        "tool_choice",
        "response_format",
        "json_schema",
        "schema",
        "stop",
        "seed",
        "temperature",
        "top_p",
        "stream",
        "stream_options",
        "reasoning_effort",
        "reasoning",
        "logprobs",
        "top_logprobs",
        "encoding_format",
        "dimensions",
        "instructions",
        "call_id",
        "output",
        "format",
        "suffix",
        "echo",
        "n",
    ]
)
V1_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["counter", "nope", "user", "function", "json_schema", "text", "input_text"]),
)
V1_JSON = st.recursive(
    V1_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(V1_FIELDS, inner, max_size=4)
    ),
    max_leaves=10,
)
V1_BODY = st.one_of(
    st.fixed_dictionaries({"model": st.sampled_from(["counter", "nope", ""])}).flatmap(
        lambda base: st.dictionaries(V1_FIELDS, V1_JSON, max_size=5).map(
            lambda more: {**more, **base}
        )
    ),
    V1_JSON,
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(V1_ROUTES), body=V1_BODY)
def test_random_bodies_never_500(served: Any, path: str, body: Any) -> None:
    if isinstance(body, dict):  # keep each generation short
        body.update(max_tokens=4, max_completion_tokens=4, max_output_tokens=4)
    r = post(served, path, body)
    assert r.status_code < 500, (path, body, r.status_code, r.text)
    if r.status_code >= 400:
        error_of(r, r.status_code)


def test_no_traceback_in_the_log(served: Any) -> None:
    assert "Traceback" not in served.logs(), served.logs()[-3000:]
