"""mfc.server.ollama: request decoding, options, payload shapes and the OpenAPI document.

Error texts are exact (Ollama's where it has one). Every payload builder's output
is validated against its documented response model *and* parsed by the official
ollama-python client's own types, so neither the docs nor the wire can drift.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta, timezone
from typing import Any

import ollama._types as client_types
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from mfc.server import ollama as api
from mfc.server.config import FOREVER
from mfc.store.names import parse_name
from mfc.store.show import parameters_text

NS = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z
CREATED = api.now_rfc3339(NS)
PDT = timezone(timedelta(hours=-7))
DIGEST = "a" * 64
FACTS = api.ModelFacts(
    family="llama",
    families=("llama",),
    parameter_size="12.3M",
    quantization_level="Q8_0",
    context_length=2048,
    embedding_length=64,
)


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def bad(model: type[BaseModel], raw: bytes) -> str:
    with pytest.raises(api.BadRequest) as info:
        api.parse(model, raw)
    assert info.value.status == 400
    return info.value.message


# --- good requests ------------------------------------------------------------------------------

GOOD = [
    # (model, body, {attribute: expected})
    (api.GenerateRequest, {"model": "m"}, {"model": "m", "prompt": "", "stream": None}),
    (
        api.GenerateRequest,
        {"model": "m", "prompt": "hi", "stream": False, "raw": True, "context": [1, 2.0]},
        {"prompt": "hi", "stream": False, "raw": True, "context": [1, 2]},
    ),
    (
        api.GenerateRequest,
        {"model": None, "prompt": None, "raw": None},
        {"model": "", "raw": False},
    ),
    (api.GenerateRequest, {"format": ""}, {"format": None}),
    (api.GenerateRequest, {"format": "json"}, {"format": "json"}),
    (api.GenerateRequest, {"format": {"type": "object"}}, {"format": {"type": "object"}}),
    (api.GenerateRequest, {"think": "high"}, {"think": "high"}),
    (api.GenerateRequest, {"think": False}, {"think": False}),
    (api.GenerateRequest, {"keep_alive": "1h30m"}, {"keep_alive": "1h30m"}),
    (api.GenerateRequest, {"keep_alive": -1}, {"keep_alive": -1}),
    (api.GenerateRequest, {"images": ["aGk="]}, {"images": ["aGk="]}),
    (
        api.GenerateRequest,
        {"_debug_render_only": True, "logprobs": True, "top_logprobs": 20, "width": 64},
        {"debug_render_only": True, "top_logprobs": 20, "width": 64},
    ),
    (
        api.GenerateRequest,
        {"options": {"temperature": 0, "num_ctx": 4096, "stop": ["\n"], "numa": True}},
        {"options": {"temperature": 0, "num_ctx": 4096, "stop": ["\n"], "numa": True}},
    ),
    (
        api.ChatRequest,
        {
            "model": "m",
            "messages": [
                {"role": "USER", "content": "hi", "name": "ignored nested field"},
                {
                    "role": "assistant",
                    "tool_calls": [{"function": {"name": "f", "arguments": {"b": 1, "a": 2}}}],
                },
                {"role": "tool", "content": "3", "tool_name": "f", "tool_call_id": "call_1"},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {
                            "type": "object",
                            "required": ["a"],
                            "properties": {
                                "a": {"type": ["integer", "null"], "description": "x"},
                                "b": {"anyOf": [{"type": "string"}], "enum": [1, "x"]},
                            },
                        },
                    },
                }
            ],
        },
        {"messages.0.role": "user", "messages.1.tool_calls.0.function.arguments": {"b": 1, "a": 2}},
    ),
    (api.ChatRequest, {"model": "m", "messages": [], "tools": []}, {"messages": [], "tools": []}),
    (api.EmbedRequest, {"model": "m", "input": "x"}, {"input": "x"}),
    (api.EmbedRequest, {"input": ["a", "b"], "dimensions": 8}, {"input": ["a", "b"]}),
    (api.EmbeddingsRequest, {"model": "m", "prompt": "x"}, {"prompt": "x"}),
    (api.ShowRequest, {"name": "legacy"}, {"model": "legacy"}),
    (api.ShowRequest, {"model": "m", "name": "other"}, {"model": "m"}),
    (api.DeleteRequest, {"name": "legacy"}, {"model": "legacy"}),
    (api.CopyRequest, {"source": "a", "destination": "b"}, {"destination": "b"}),
    (api.PullRequest, {"model": "m", "insecure": True, "stream": False}, {"insecure": True}),
    (api.PushRequest, {"name": "m", "username": "u", "password": "p"}, {"model": "m"}),
    (
        api.CreateRequest,
        {"name": "m", "from": "base", "quantization": "q8_0", "license": ["a", "b"]},
        {"model": "m", "from_": "base", "quantize": "q8_0", "license": ["a", "b"]},
    ),
    (
        api.CreateRequest,
        {
            "model": "m",
            "files": {"model.gguf": "sha256:" + DIGEST},
            "adapters": {"a.gguf": "sha256:" + DIGEST},
            "parameters": {"temperature": 0.5, "stop": ["x"]},
            "messages": [{"role": "user", "content": "hi"}],
            "template": "{{ .Prompt }}",
            "system": "s",
            "license": "MIT",
            "renderer": "r",
            "parser": "p",
            "requires": "0.5.0",
            "stream": True,
        },
        {"files": {"model.gguf": "sha256:" + DIGEST}, "license": "MIT"},
    ),
    (api.CreateRequest, {"model": "m", "modelfile": "FROM base\n"}, {"modelfile": "FROM base\n"}),
]


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


@pytest.mark.parametrize(("model", "data", "want"), GOOD, ids=lambda v: None)
def test_good_requests(model: type[BaseModel], data: dict[str, Any], want: dict[str, Any]) -> None:
    parsed = api.parse(model, body(data))
    for dotted, value in want.items():
        assert _get(parsed, dotted) == value


def test_client_bodies_parse() -> None:
    """What ollama-python 0.6.3 actually sends (model_dump(exclude_none=True)) is accepted."""
    sent = [
        (api.GenerateRequest, client_types.GenerateRequest(model="m", prompt="p", stream=False)),
        (
            api.ChatRequest,
            client_types.ChatRequest(
                model="m",
                messages=[client_types.Message(role="user", content="hi")],
                tools=[],
                stream=True,
                think="low",
                options=client_types.Options(temperature=0.1, stop=["x"]),
                keep_alive=0.0,
                format="json",
            ),
        ),
        (api.EmbedRequest, client_types.EmbedRequest(model="m", input=["a"], truncate=True)),
        (api.EmbeddingsRequest, client_types.EmbeddingsRequest(model="m", prompt="x")),
        (api.ShowRequest, client_types.ShowRequest(model="m")),
        (api.DeleteRequest, client_types.DeleteRequest(model="m")),
        (api.CopyRequest, client_types.CopyRequest(source="a", destination="b")),
        (api.PullRequest, client_types.PullRequest(model="m", insecure=False, stream=False)),
        (api.PushRequest, client_types.PushRequest(model="m", insecure=False, stream=False)),
        (
            api.CreateRequest,
            client_types.CreateRequest(
                model="m",
                stream=False,
                quantize="q8_0",
                from_="base",
                files={"a.gguf": "sha256:" + DIGEST},
                parameters={"temperature": 0.5},
                license="MIT",
            ),
        ),
    ]
    for model, request in sent:
        wire = json.dumps(request.model_dump(exclude_none=True, by_alias=True)).encode()
        api.parse(model, wire)


# --- bad requests: exact texts ------------------------------------------------------------------

BAD = [
    (api.GenerateRequest, b"", "missing request body"),
    (api.GenerateRequest, b" \r\n\t", "missing request body"),
    (
        api.GenerateRequest,
        b"{",
        "invalid JSON at line 1, column 2: expecting property name enclosed in double quotes",
    ),
    (
        api.GenerateRequest,
        b'{"model": "m"}\n{"x": 1}',
        "invalid JSON at line 2, column 1: extra data",
    ),
    (api.GenerateRequest, b"[1]", "request body must be a JSON object, not an array"),
    (api.GenerateRequest, b"\xff{}", "request body is not UTF-8: byte 0xff at offset 0"),
    (api.GenerateRequest, b'{"model": 1}', "model: must be a string, not a number"),
    (api.GenerateRequest, b'{"stream": "true"}', "stream: must be true or false, not a string"),
    (api.GenerateRequest, b'{"raw": 1}', "raw: must be true or false, not a number"),
    (api.GenerateRequest, b'{"context": [1.5]}', "context[0]: must be an integer, not 1.5"),
    (api.GenerateRequest, b'{"context": "x"}', "context: must be an array, not a string"),
    (
        api.GenerateRequest,
        b'{"context": [1e30]}',
        "context[0]: must fit in a signed 64-bit integer",
    ),
    (
        api.GenerateRequest,
        b'{"modle": "m"}',
        'unknown field "modle" in a generate request (did you mean "model"?)',
    ),
    (api.GenerateRequest, b'{"messages": []}', 'unknown field "messages" in a generate request'),
    (api.ChatRequest, b'{"prompt": "x"}', 'unknown field "prompt" in a chat request'),
    (
        api.ChatRequest,
        b'{"messages": [{}, {}, {"role": 1}]}',
        "messages[2].role: must be a string, not a number",
    ),
    (
        api.ChatRequest,
        b'{"messages": {"role": "user"}}',
        "messages: must be an array, not an object",
    ),
    (api.ChatRequest, b'{"messages": ["hi"]}', "messages[0]: must be an object, not a string"),
    (
        api.ChatRequest,
        b'{"messages": [{"tool_calls": [{"function": {"arguments": "{}"}}]}]}',
        "messages[0].tool_calls[0].function.arguments: must be an object, not a string",
    ),
    (
        api.ChatRequest,
        b'{"tools": [{"function": {"parameters": {"properties": {"a": {"type": 3}}}}}]}',
        "must be a string or an array of strings",
    ),
    (
        api.GenerateRequest,
        b'{"images": ["not base64!"]}',
        "images[0]: illegal base64 data (images are sent as standard base64)",
    ),
    (
        api.ChatRequest,
        b'{"messages": [{"images": ["aGk"]}]}',
        "messages[0].images[0]: illegal base64 data (images are sent as standard base64)",
    ),
    (
        api.GenerateRequest,
        b'{"keep_alive": "3600"}',
        "keep_alive: invalid duration '3600': missing unit (use e.g. 5m, 30s, 1h)",
    ),
    (
        api.GenerateRequest,
        b'{"keep_alive": true}',
        "keep_alive must be a number of seconds or a duration string like 5m",
    ),
    (api.GenerateRequest, b'{"keep_alive": NaN}', "keep_alive: must be a finite number, not NaN"),
    (
        api.GenerateRequest,
        b'{"keep_alive": 1e400}',
        "keep_alive: must be a finite number, not Infinity",
    ),
    (
        api.GenerateRequest,
        b'{"format": "text"}',
        'invalid format: "\\"text\\""; expected "json" or a valid JSON Schema object',
    ),
    (
        api.ChatRequest,
        b'{"format": [1]}',
        'invalid format: "[1]"; expected "json" or a valid JSON Schema object',
    ),
    (
        api.GenerateRequest,
        b'{"think": "extreme"}',
        'invalid think value: "extreme" (must be "high", "medium", "low", "max", true, or false)',
    ),
    (
        api.ChatRequest,
        b'{"think": 1}',
        'think must be a boolean or string ("high", "medium", "low", "max", true, or false)',
    ),
    (api.GenerateRequest, b'{"top_logprobs": 21}', "top_logprobs must be between 0 and 20"),
    (api.ChatRequest, b'{"top_logprobs": -1}', "top_logprobs must be between 0 and 20"),
    (api.GenerateRequest, b'{"options": []}', "options: must be an object, not an array"),
    (
        api.GenerateRequest,
        b'{"options": {"temperature": "hot"}}',
        'option "temperature" must be of type float32',
    ),
    (
        api.GenerateRequest,
        b'{"options": {"num_ctx": "4096"}}',
        'option "num_ctx" must be of type integer',
    ),
    (
        api.GenerateRequest,
        b'{"options": {"use_mmap": 1}}',
        'option "use_mmap" must be of type boolean',
    ),
    (api.GenerateRequest, b'{"options": {"stop": "x"}}', 'option "stop" must be of type array'),
    (
        api.GenerateRequest,
        b'{"options": {"stop": ["x", 1]}}',
        'option "stop" must be of an array of strings',
    ),
    (
        api.GenerateRequest,
        b'{"options": {"temperature": NaN}}',
        'option "temperature" must be a finite number at least 0.0, not NaN',
    ),
    (
        api.ChatRequest,
        b'{"options": {"top_p": Infinity}}',
        'option "top_p" must be a finite number between 0.0 and 1.0, not Infinity',
    ),
    (
        api.GenerateRequest,
        b'{"options": {"top_p": 1.5}}',
        'option "top_p" must be between 0.0 and 1.0, not 1.5',
    ),
    (
        api.GenerateRequest,
        b'{"options": {"num_ctx": 0}}',
        'option "num_ctx" must be at least 1, not 0',
    ),
    (
        api.GenerateRequest,
        b'{"options": {"num_ctx": 1.5}}',
        'option "num_ctx" must be of type integer, not 1.5',
    ),
    (
        api.GenerateRequest,
        b'{"options": {"temperature": 1e39}}',
        'option "temperature" is too large for a 32-bit float, not 1e+39',
    ),
    (
        api.EmbedRequest,
        b'{"input": 3}',
        "invalid input type: `input` must be a string or an array of strings",
    ),
    (
        api.EmbedRequest,
        b'{"input": ["a", 1]}',
        "invalid input type: `input` must be a string or an array of strings",
    ),
    (api.EmbedRequest, b'{"dimensions": "8"}', "dimensions: must be an integer, not a string"),
    (api.CreateRequest, b'{"license": 3}', "license: must be a string or an array of strings"),
    (api.CreateRequest, b'{"files": {"a": 1}}', "files.a: must be a string, not a number"),
    (
        api.CreateRequest,
        b'{"from_": "x"}',
        'unknown field "from_" in a create request (did you mean "from"?)',
    ),
    (
        api.CreateRequest,
        b'{"parameters": {"temperature": NaN}}',
        "parameters.temperature: must be a finite number, not NaN",
    ),
    (
        api.CopyRequest,
        b'{"source": "a", "destination": 2}',
        "destination: must be a string, not a number",
    ),
    (api.DeleteRequest, b'{"model": ["m"]}', "model: must be a string, not an array"),
    (api.PullRequest, b'{"insecure": "yes"}', "insecure: must be true or false, not a string"),
    (
        api.ShowRequest,
        b'{"verbose": 1, "model": 2}',
        "model: must be a string, not a number (and 1 more problem)",
    ),
    (api.GenerateRequest, b"[" * 100_000, "invalid JSON: nested deeper than 128 levels"),
    (
        api.GenerateRequest,
        b'{"format":' + b'{"a":' * 200 + b"1" + b"}" * 201,
        "invalid JSON: nested deeper than 128 levels",
    ),
]


@pytest.mark.parametrize(("model", "raw", "want"), BAD, ids=[repr(r[1][:40]) for r in BAD])
def test_bad_requests(model: type[BaseModel], raw: bytes, want: str) -> None:
    message = bad(model, raw)
    if want.startswith("must be a string or"):
        assert message.endswith(want)
    else:
        assert message == want


def test_lone_surrogates_become_replacement_characters() -> None:
    """As Go's decoder does, so no string can fail to encode later."""
    parsed = api.parse(api.GenerateRequest, b'{"prompt": "a\\ud800b\\udfff"}')
    assert parsed.prompt == "a\ufffdb\ufffd"


def test_huge_integer_literal_is_a_400() -> None:
    assert bad(api.GenerateRequest, b'{"context": [' + b"9" * 5000 + b"]}") == (
        "context[0]: must be a finite number, not Infinity"
    )


# --- options, keep_alive, format ----------------------------------------------------------------


def test_resolve_options_splits_by_phase_and_warns() -> None:
    got = api.resolve_options(
        {
            "num_ctx": 2048.0,
            "use_mmap": False,
            "temperature": 0,
            "top_k": 40,
            "stop": ["a", "b"],
            "seed": None,
            "mirostat": 2,
            "temprature": 1,
            "foo": 1,
        }
    )
    assert got.load == {"num_ctx": 2048, "use_mmap": False}
    assert got.sampling == {"temperature": 0.0, "top_k": 40, "stop": ("a", "b")}
    assert isinstance(got.load["num_ctx"], int)
    assert isinstance(got.sampling["temperature"], float)
    assert got.warnings == (
        'ignoring option "mirostat": deprecated in Ollama, unused',
        'ignoring unknown option "temprature" (did you mean "temperature"?)',
        'ignoring unknown option "foo"',
    )
    assert got.values["num_ctx"] == 2048
    assert api.resolve_options(None) == api.RequestOptions()


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (None, 300.0),
        (0, 0.0),
        (0.5, 0.5),
        (-1, FOREVER),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("-1s", FOREVER),
        ("0", 0.0),
    ],
)
def test_resolve_keep_alive(value: Any, want: float) -> None:
    assert api.resolve_keep_alive(value, 300.0) == want


@pytest.mark.parametrize("value", ["3600", "5 minutes", True, [1]])
def test_resolve_keep_alive_refuses(value: Any) -> None:
    with pytest.raises(api.BadRequest, match="keep_alive"):
        api.resolve_keep_alive(value, 300.0)


def test_resolve_format() -> None:
    assert api.resolve_format(None) is None
    assert api.resolve_format("") is None
    assert api.resolve_format("json") == "json"
    assert api.resolve_format({"type": "object"}) == {"type": "object"}
    with pytest.raises(api.BadRequest, match=r'^invalid format: "true"; expected'):
        api.resolve_format(True)


# --- payloads -----------------------------------------------------------------------------------

METRICS = api.Metrics(
    total_duration=5_000_000,
    load_duration=1_000,
    prompt_eval_count=7,
    prompt_eval_duration=2_000_000,
    eval_count=3,
    eval_duration=1_500_000,
)
TOOL_CALL = {"id": "call_abc12345", "function": {"index": 0, "name": "f", "arguments": {"x": 1}}}


def _payloads() -> dict[str, tuple[dict[str, Any], type[BaseModel], Any]]:
    """name -> (payload, documented model, ollama-python type that must parse it)."""
    tags = [
        api.tags_entry(
            parse_name("counter"),
            FACTS,
            size=1234,
            digest="sha256:" + DIGEST,
            modified_ns=NS,
            capabilities=("completion",),
            tz=PDT,
        ),
        api.tags_entry(
            "ns/other:v1",
            api.ModelFacts(),
            size=1,
            digest="b" * 64,
            modified_ns=NS + 10**9,
            tz=timezone.utc,
        ),
    ]
    ps = [
        api.ps_entry(
            parse_name("registry.example.com/ns/m:q8"),
            FACTS,
            size=2000,
            size_vram=0,
            digest=DIGEST,
            context_length=4096,
            expires_at_ns=NS + 300 * 10**9,
            tz=timezone.utc,
        ),
        api.ps_entry(
            "forever:latest",
            FACTS,
            size=1,
            size_vram=0,
            digest=DIGEST,
            context_length=2048,
            expires_at_ns=None,
            now_ns=NS,
            tz=timezone.utc,
        ),
    ]
    return {
        "generate_chunk": (
            api.generate_chunk("m:latest", "Hel", created_at=CREATED),
            api.GenerateResponse,
            client_types.GenerateResponse,
        ),
        "generate_chunk_thinking": (
            api.generate_chunk("m:latest", "", thinking="hmm", created_at=CREATED),
            api.GenerateResponse,
            client_types.GenerateResponse,
        ),
        "generate_final": (
            api.generate_final(
                "m:latest",
                done_reason="stop",
                metrics=METRICS,
                context=[1, 2, 3],
                created_at=CREATED,
            ),
            api.GenerateResponse,
            client_types.GenerateResponse,
        ),
        "generate_final_whole": (
            api.generate_final(
                "m:latest", done_reason="length", metrics=METRICS, text="Hello", created_at=CREATED
            ),
            api.GenerateResponse,
            client_types.GenerateResponse,
        ),
        "generate_load": (
            api.generate_lifecycle("m", "load", created_at=CREATED),
            api.GenerateResponse,
            client_types.GenerateResponse,
        ),
        "generate_unload": (
            api.generate_lifecycle("m", "unload", created_at=CREATED),
            api.GenerateResponse,
            client_types.GenerateResponse,
        ),
        "generate_debug": (
            api.generate_debug("m", "<s>hi", image_count=0, created_at=CREATED),
            api.GenerateResponse,
            client_types.GenerateResponse,
        ),
        "chat_chunk": (
            api.chat_chunk("m", "Hel", created_at=CREATED),
            api.ChatResponse,
            client_types.ChatResponse,
        ),
        "chat_chunk_tools": (
            api.chat_chunk("m", "", thinking="t", tool_calls=[TOOL_CALL], created_at=CREATED),
            api.ChatResponse,
            client_types.ChatResponse,
        ),
        "chat_final": (
            api.chat_final("m", done_reason="stop", metrics=METRICS, created_at=CREATED),
            api.ChatResponse,
            client_types.ChatResponse,
        ),
        "chat_load": (
            api.chat_lifecycle("m", "load", created_at=CREATED),
            api.ChatResponse,
            client_types.ChatResponse,
        ),
        "chat_unload": (
            api.chat_lifecycle("m", "unload", created_at=CREATED),
            api.ChatResponse,
            client_types.ChatResponse,
        ),
        "chat_debug": (
            api.chat_debug("m", "<s>hi", image_count=2, created_at=CREATED),
            api.ChatResponse,
            client_types.ChatResponse,
        ),
        "embed": (
            api.embed_response("m", [[0.6, 0.8], [1, 0]], metrics=METRICS),
            api.EmbedResponse,
            client_types.EmbedResponse,
        ),
        "embed_empty": (
            api.embed_response("m", []),
            api.EmbedResponse,
            client_types.EmbedResponse,
        ),
        "embeddings": (
            api.embeddings_response([0.5, -2]),
            api.EmbeddingsResponse,
            client_types.EmbeddingsResponse,
        ),
        "tags": (api.list_response(tags), api.ListResponse, client_types.ListResponse),
        "tags_empty": (api.list_response([]), api.ListResponse, client_types.ListResponse),
        "ps": (api.ps_response(ps), api.ProcessResponse, client_types.ProcessResponse),
        "show": (
            api.show_response(
                FACTS,
                model_info={"general.architecture": "llama", "llama.context_length": 2048},
                modified_ns=NS,
                license=("MIT",),
                modelfile="FROM x\n",
                parameters=parameters_text({"temperature": 0.7, "stop": ["a"]}),
                template="{{ .Prompt }}",
                system="be brief",
                messages=[{"role": "user", "content": "hi"}],
                capabilities=("completion",),
                tz=timezone.utc,
            ),
            api.ShowResponse,
            client_types.ShowResponse,
        ),
        "show_minimal": (
            api.show_response(api.ModelFacts(), model_info={}, modified_ns=NS, tz=PDT),
            api.ShowResponse,
            client_types.ShowResponse,
        ),
        "progress": (api.progress("success"), api.ProgressResponse, client_types.ProgressResponse),
        "progress_layer": (
            api.progress("pulling aaaaaaaaaaaa", digest="sha256:" + DIGEST, total=10, completed=4),
            api.ProgressResponse,
            client_types.ProgressResponse,
        ),
        "version": (api.version_response("0.13.5", "0.1.0"), api.VersionResponse, None),
        "error": (api.error_body("model 'x' not found"), api.ErrorResponse, None),
        "error_diagnostics": (
            api.error_body(
                "the Modelfile has 1 error",
                [
                    {
                        "severity": "error",
                        "code": "MF102",
                        "message": "unknown parameter `temprature`",
                        "line": 3,
                        "column": 11,
                        "hint": "did you mean `temperature`?",
                    }
                ],
            ),
            api.ErrorResponse,
            None,
        ),
    }


PAYLOADS = _payloads()


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_payload_matches_documented_model(name: str) -> None:
    payload, model, _ = PAYLOADS[name]
    model.model_validate(payload)  # strict, extra="forbid": the document cannot drift
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload


@pytest.mark.parametrize("name", sorted(n for n, v in PAYLOADS.items() if v[2] is not None))
def test_official_client_parses_payload(name: str) -> None:
    payload, _, client_type = PAYLOADS[name]
    parsed = client_type(**json.loads(json.dumps(payload)))
    if isinstance(parsed, client_types.ChatResponse):
        assert parsed.message.role == "assistant"


def test_payload_snapshots(snapshot: Any) -> None:
    """The wire form, one compact line each: key order is Go's field order."""
    lines = [f"{name}: {json.dumps(v[0], separators=(',', ':'))}" for name, v in PAYLOADS.items()]
    assert "\n".join(sorted(lines)) == snapshot


def test_lifecycle_shapes() -> None:
    """Ollama's load/unload answers, key for key."""
    assert api.chat_lifecycle("m", "unload", created_at=CREATED) == {
        "model": "m",
        "created_at": CREATED,
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "unload",
    }
    assert api.generate_lifecycle("m", "load", created_at=CREATED) == {
        "model": "m",
        "created_at": CREATED,
        "response": "",
        "done": True,
        "done_reason": "load",
    }


def test_lists_are_sorted_like_ollama() -> None:
    tags = PAYLOADS["tags"][0]["models"]
    assert [t["name"] for t in tags] == ["ns/other:v1", "counter:latest"]
    ps = PAYLOADS["ps"][0]["models"]
    assert [p["name"] for p in ps] == ["forever:latest", "registry.example.com/ns/m:q8"]
    assert ps[0]["expires_at"].startswith("2316-")


@pytest.mark.parametrize(
    ("ns", "tz", "want"),
    [
        (NS, timezone.utc, "2023-11-14T22:13:20.123456789Z"),
        (NS - 456_789, timezone.utc, "2023-11-14T22:13:20.123Z"),
        (1_700_000_000 * 10**9, timezone.utc, "2023-11-14T22:13:20Z"),
        (NS, PDT, "2023-11-14T15:13:20.123456789-07:00"),
        (NS, timezone(timedelta(hours=5, minutes=30)), "2023-11-15T03:43:20.123456789+05:30"),
    ],
)
def test_format_time(ns: int, tz: Any, want: str) -> None:
    assert api.format_time(ns, tz) == want


def test_now_is_utc_rfc3339_nano() -> None:
    assert api.now_rfc3339(NS) == "2023-11-14T22:13:20.123456789Z"
    assert api.now_rfc3339().endswith("Z")
    assert api.format_time(NS).startswith("2023-11-1")  # local time, whatever the zone


def test_show_parameters_print_like_go() -> None:
    text = parameters_text(
        {
            "num_ctx": 4096,
            "big": 1048576,
            "temperature": 0.7,
            "tiny": 0.00001,
            "small": 0.0001,
            "stop": ["<|im_end|>", 'say "hi"\n'],
            "use_mmap": False,
        }
    )
    assert text.splitlines() == [  # sorted by name, as every show view lists them
        "big                            1.048576e+06",
        "num_ctx                        4096",
        "small                          0.0001",
        'stop                           "<|im_end|>"',
        'stop                           "say \\"hi\\"\\n"',
        "temperature                    0.7",
        "tiny                           1e-05",
        "use_mmap                       false",
    ]


def test_metrics_omit_zeros() -> None:
    assert api.Metrics(eval_count=2).to_json() == {"eval_count": 2}


# --- OpenAPI ------------------------------------------------------------------------------------


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*map(_refs, node)) if node else set()
    return set()


def test_openapi_document() -> None:
    doc = api.openapi("0.13.5")
    text = json.dumps(doc, allow_nan=False)
    doc = json.loads(text)
    assert doc["openapi"].startswith("3.1")
    schemas = doc["components"]["schemas"]
    refs = _refs(doc)
    for ref in refs:
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, ref
    for model in (*api.REQUEST_MODELS, *api.RESPONSE_MODELS):
        assert f"#/components/schemas/{model.__name__}" in refs, model.__name__
    want = {
        ("/", "get"),
        ("/", "head"),
        ("/api/version", "get"),
        ("/api/version", "head"),
        ("/api/generate", "post"),
        ("/api/chat", "post"),
        ("/api/tags", "get"),
        ("/api/tags", "head"),
        ("/api/show", "post"),
        ("/api/copy", "post"),
        ("/api/delete", "delete"),
        ("/api/ps", "get"),
        ("/api/create", "post"),
        ("/api/blobs/{digest}", "head"),
        ("/api/blobs/{digest}", "post"),
        ("/api/embed", "post"),
        ("/api/embeddings", "post"),
        ("/api/pull", "post"),
        ("/api/push", "post"),
    }
    have = {(p, m) for p, ops in doc["paths"].items() for m in ops if m != "parameters"}
    assert have == want
    generate = schemas["GenerateRequest"]["properties"]
    assert {"_debug_render_only", "keep_alive", "think", "format", "options"} <= set(generate)
    assert "from" in schemas["CreateRequest"]["properties"]
    assert "modelfile" in schemas["CreateRequest"]["properties"]
    assert "temperature" in generate["options"]["anyOf"][0]["properties"]


# --- fuzz: any bytes give a model or a BadRequest, nothing else ---------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


_KEYS = sorted(
    {k for m in api.REQUEST_MODELS for k in _field_names(m)}
    | {"role", "content", "images", "function", "arguments", "temperature", "num_ctx", "stop"}
)
_objects = st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=6), _json_values, max_size=6)


def _total(model: type[BaseModel], raw: bytes) -> None:
    try:
        parsed = api.parse(model, raw)
    except api.BadRequest as exc:
        assert exc.message and exc.status == 400
        return
    assert isinstance(parsed, model)
    options = getattr(parsed, "options", None)
    if options is not None:
        resolved = api.resolve_options(options)
        assert all(math.isfinite(v) for v in resolved.values.values() if isinstance(v, float))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(api.REQUEST_MODELS), raw=st.binary(max_size=200))
@example(model=api.GenerateRequest, raw=b"\xef\xbb\xbf{}")
@example(model=api.GenerateRequest, raw=b'{"a": 1} x')
def test_fuzz_bytes(model: type[BaseModel], raw: bytes) -> None:
    _total(model, raw)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(api.REQUEST_MODELS), data=_objects)
@example(model=api.ChatRequest, data={"messages": [{"role": None, "images": [None]}]})
@example(model=api.GenerateRequest, data={"options": {"num_ctx": 2**70, "top_k": -1e300}})
def test_fuzz_json(model: type[BaseModel], data: dict[str, Any]) -> None:
    _total(model, json.dumps(data).encode())


@settings(max_examples=300, deadline=None)
@given(model=st.sampled_from([api.ChatRequest, api.CreateRequest]), value=_json_values)
def test_fuzz_messages(model: type[BaseModel], value: Any) -> None:
    """Nested shapes: anything in a message list decodes or is refused with a BadRequest."""
    _total(model, json.dumps({"messages": [value, {"tool_calls": [value]}]}).encode())
