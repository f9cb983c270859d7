"""The official `openai` Python SDK (pinned in the test extra) against a live `mfc serve`.

The counter fixture continues the prompt's last character ("abc" -> "d…z"), so every
answer is known; the SDK's own types parse every payload and stream.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import openai
import pytest
from pydantic import BaseModel

ANSWER = "defghijklmnopqrstuvwxyz"
USER: Any = [{"role": "user", "content": "abc"}]


@pytest.fixture
def client(served: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key="x", max_retries=0, timeout=60)


def test_chat_create(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="counter", messages=USER, temperature=0, user="u")
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.system_fingerprint == "fp_ollama"
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == ANSWER
    assert choice.finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens == len(ANSWER)


def test_chat_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="counter",
        messages=USER,
        temperature=0,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "defgh"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_chat_stop_list_and_seed(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="counter", messages=USER, temperature=0, seed=7, stop=["g", "q"]
    )
    assert r.choices[0].message.content == "def"


def test_chat_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    """response_format from a pydantic model (strict json_schema): the grammar forces the
    shape, the SDK validates it back into the model."""

    class Answer(BaseModel):
        ok: bool

    r = client.chat.completions.parse(
        model="counter", messages=USER, temperature=0, response_format=Answer, max_tokens=40
    )
    # Greedy under the grammar: the counter's preferred letters are not JSON, so the first
    # token the grammar allows wins at each step (all score alike).
    assert r.choices[0].message.content == '{ "ok" : false }'
    assert r.choices[0].message.parsed == Answer(ok=False)
    assert r.choices[0].finish_reason == "stop"


def test_chat_tools_reach_a_tools_template(client: openai.OpenAI) -> None:
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "f",
                "description": "d",
                "parameters": {"type": "object", "properties": {"x": {"type": "string"}}},
            },
        }
    ]
    # counter-tools renders "f;" then the messages: the model continues "abc".
    r = client.chat.completions.create(
        model="counter-tools", messages=USER, tools=tools, tool_choice="auto", temperature=0
    )
    assert r.choices[0].message.content == ANSWER


def test_chat_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="nope", messages=USER)
    assert nf.value.status_code == 404 and "not found" in nf.value.message
    with pytest.raises(openai.BadRequestError) as br:
        client.chat.completions.create(
            model="counter",
            messages=USER,
            tools=[{"type": "function", "function": {"name": "f"}}],
        )
    assert "does not support tools" in br.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="counter",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                        }
                    ],
                }
            ],
        )


def test_completions(client: openai.OpenAI) -> None:
    r = client.completions.create(model="counter", prompt="abc", temperature=0, max_tokens=3)
    assert r.object == "text_completion" and r.choices[0].text == "def"
    assert r.choices[0].finish_reason == "length"
    parts = list(
        client.completions.create(model="counter", prompt="wx", temperature=0, stream=True)
    )
    assert "".join(p.choices[0].text for p in parts) == "yz"
    assert parts[-1].choices[0].finish_reason == "stop"


def test_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "counter:latest" in ids
    m = client.models.retrieve("counter")
    assert m.id == "counter" and m.owned_by == "library"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_embeddings_float_and_base64(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(
        model="counter", input=["abc", "xyz"], encoding_format="float"
    )
    assert len(floats.data) == 2 and floats.model == "counter"
    vector = floats.data[0].embedding
    assert abs(sum(x * x for x in vector) - 1) < 1e-3  # normalised, as Ollama's /api/embed
    # The SDK asks for base64 by default and decodes it itself.
    default = client.embeddings.create(model="counter", input="abc")
    assert default.data[0].embedding == pytest.approx(vector, abs=1e-6)
    raw = client.embeddings.with_raw_response.create(
        model="counter", input="abc", encoding_format="base64"
    ).http_response.json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == pytest.approx(vector, abs=1e-6)
    short = client.embeddings.create(model="counter", input="abc", dimensions=16)
    assert len(short.data[0].embedding) == 16


def test_responses_create(client: openai.OpenAI) -> None:
    r = client.responses.create(model="counter", input="abc", temperature=0)
    assert r.status == "completed" and r.output_text == ANSWER
    assert r.usage is not None and r.usage.output_tokens == len(ANSWER)


def test_responses_items_and_instructions(client: openai.OpenAI) -> None:
    r = client.responses.create(
        model="counter-tools",
        instructions="sys",
        input=[
            {"role": "user", "content": "q"},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a": 1}'},
            {"type": "function_call_output", "call_id": "c1", "output": "vw"},
        ],
        tools=[
            {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": False}
        ],
        temperature=0,
    )
    # The tool result is the last text in the prompt: the counter continues it.
    assert r.output_text == "xyz"


def test_responses_stream(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="counter", input="wx", temperature=0, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "yz"
    with client.responses.stream(model="counter", input="wx", temperature=0) as stream:
        final = stream.get_final_response()
    assert final.output_text == "yz"


def test_chat_logprobs_live(client: openai.OpenAI) -> None:
    """Per-token log-probabilities from the runner, in OpenAI's shape (the SDK parses them)."""
    r = client.chat.completions.create(
        model="counter", messages=USER, temperature=0, max_tokens=3, logprobs=True, top_logprobs=2
    )
    content = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and [t.token for t in content] == ["d", "e", "f"]
    for t in content:
        assert t.logprob <= 0 and t.bytes == list(t.token.encode())
        assert t.top_logprobs[0].token == t.token
        assert len(t.top_logprobs) == 2
        assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob
    streamed = client.chat.completions.create(
        model="counter",
        messages=USER,
        temperature=0,
        max_tokens=3,
        logprobs=True,
        stream=True,
    )
    tokens = [
        t.token
        for c in streamed
        if c.choices and c.choices[0].logprobs and c.choices[0].logprobs.content
        for t in c.choices[0].logprobs.content
    ]
    assert tokens == ["d", "e", "f"]
