"""The official `ollama` Python client (sync and async) against a live `mfc serve`.

Every method of the client, asserting the text the counter fixture produces
(greedy "abc" -> "defghijklmnopqrstuvwxyz").
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

ANSWER = "defghijklmnopqrstuvwxyz"
GREEDY = {"temperature": 0, "seed": 1}


@pytest.fixture
def client(served: Any) -> ollama.Client:
    return ollama.Client(host=served.url)


def test_version_and_root(served: Any) -> None:
    assert httpx.get(served.url + "/").text == "Ollama is running"
    assert httpx.head(served.url + "/").status_code == 200
    v = httpx.get(served.url + "/api/version").json()
    major, minor, _patch = (int(x) for x in v["version"].split("."))
    assert (major, minor) >= (0, 13)
    assert v["mfc_version"]


def test_generate_not_streamed(client: ollama.Client) -> None:
    r = client.generate(model="counter", prompt="abc", options=GREEDY)
    assert r.response == ANSWER
    assert r.done and r.done_reason == "stop"
    assert r.eval_count and r.eval_count >= len(ANSWER)
    assert isinstance(r.total_duration, int) and r.total_duration > 0
    assert r.context and all(isinstance(t, int) for t in r.context)


def test_generate_streamed(client: ollama.Client) -> None:
    parts = list(client.generate(model="counter", prompt="abc", options=GREEDY, stream=True))
    assert "".join(p.response for p in parts) == ANSWER
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    assert parts[-1].prompt_eval_count


def test_generate_num_predict_is_length(client: ollama.Client) -> None:
    r = client.generate(model="counter", prompt="abc", options={**GREEDY, "num_predict": 3})
    assert r.response == "def"
    assert r.done_reason == "length"


def test_generate_context_continues(client: ollama.Client) -> None:
    first = client.generate(model="counter", prompt="abc", options={**GREEDY, "num_predict": 3})
    assert first.context
    again = client.generate(
        model="counter", prompt="", options={**GREEDY, "num_predict": 2}, context=first.context
    )
    # An empty prompt with a context only loads (Ollama: done_reason load).
    assert again.done_reason == "load"


def test_generate_suffix_renders_the_insert_template(client: ollama.Client) -> None:
    """Ollama's insert mode: the template gets .Prompt and .Suffix; the counter continues
    from the template's last character, `>` (so the answer starts at `?`)."""
    r = client.generate(model="counter-insert", prompt="abc", suffix="xyz", options=GREEDY)
    rendered = httpx.post(
        client._client.base_url.join("/api/generate"),
        json={
            "model": "counter-insert",
            "prompt": "abc",
            "suffix": "xyz",
            "_debug_render_only": True,
        },
    ).json()["_debug_info"]["rendered_template"]
    assert rendered == "<PRE>abc<SUF>xyz<MID>"
    assert r.response.startswith("?@ABC")
    # A model whose template does not read .Suffix cannot insert.
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model="counter", prompt="abc", suffix="xyz")
    assert info.value.status_code == 400
    assert info.value.error == '"counter" does not support insert'


def test_chat(client: ollama.Client) -> None:
    r = client.chat(model="counter", messages=[{"role": "user", "content": "abc"}], options=GREEDY)
    assert r.message.role == "assistant"
    assert r.message.content == ANSWER
    stream = client.chat(
        model="counter", messages=[{"role": "user", "content": "abc"}], options=GREEDY, stream=True
    )
    parts = list(stream)
    assert "".join(p.message.content or "" for p in parts) == ANSWER
    assert all(p.message.role == "assistant" for p in parts)


def test_chat_multi_turn_and_tools_reach_the_template(client: ollama.Client) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    history = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "y"},
        {"role": "user", "content": "abc"},
    ]
    r = client.chat(model="counter-tools", messages=history, tools=[tool], options=GREEDY)
    assert r.message.content == ANSWER  # the prompt ends with "abc"
    rendered = httpx.post(
        client._client.base_url.join("/api/chat"),
        json={
            "model": "counter-tools",
            "messages": history,
            "tools": [tool],
            "_debug_render_only": True,
        },
    ).json()
    assert rendered["_debug_info"]["rendered_template"] == "get_weather;xyabc"
    # A model whose template takes no tools refuses them, as Ollama does.
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="counter", messages=history, tools=[tool])
    assert err.value.status_code == 400
    assert "does not support tools" in err.value.error


def test_list_show_copy_delete(client: ollama.Client, served: Any) -> None:
    names = {m.model for m in client.list().models}
    assert {"counter:latest", "counter-sys:latest"} <= names
    info = client.show("counter-sys")
    assert info.modelinfo is not None
    assert info.modelinfo["general.architecture"] == "llama"
    assert "completion" in (info.capabilities or [])
    assert info.modelfile and "SYSTEM" in info.modelfile
    assert info.details and info.details.format == "gguf"
    client.copy("counter", "counter-copy")
    assert "counter-copy:latest" in {m.model for m in client.list().models}
    client.delete("counter-copy")
    assert "counter-copy:latest" not in {m.model for m in client.list().models}
    with pytest.raises(ollama.ResponseError) as err:
        client.delete("counter-copy")
    assert err.value.status_code == 404


def test_unknown_model_is_404(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        client.generate(model="nope", prompt="abc")
    assert err.value.status_code == 404
    assert 'model "nope" not found' in err.value.error


def test_embed_and_embeddings(client: ollama.Client) -> None:
    r = client.embed(model="counter", input=["abc", "xyz"])
    assert len(r.embeddings) == 2
    assert len(r.embeddings[0]) > 0
    norm = sum(x * x for x in r.embeddings[0]) ** 0.5
    assert abs(norm - 1) < 1e-3
    single = client.embed(model="counter", input="abc")
    assert single.embeddings[0] == pytest.approx(r.embeddings[0], abs=1e-5)
    legacy = client.embeddings(model="counter", prompt="abc")
    assert len(legacy.embedding) == len(r.embeddings[0])
    dims = client.embed(model="counter", input="abc", dimensions=4)
    assert len(dims.embeddings[0]) == 4


def test_ps_and_keep_alive_zero_unloads(client: ollama.Client) -> None:
    client.generate(model="counter", prompt="abc", options={**GREEDY, "num_predict": 1})
    loaded = {m.model for m in client.ps().models}
    assert "counter:latest" in loaded
    m = client.ps().models[0]
    assert m.context_length and m.expires_at is not None
    r = client.generate(model="counter", keep_alive=0)
    assert r.done_reason == "unload"
    assert "counter:latest" not in {x.model for x in client.ps().models}


def test_create_from_name_and_from_files(
    client: ollama.Client, fixture_models: dict[str, Path], served: Any
) -> None:
    progress = list(
        client.create(
            model="made", from_="counter", system="be short", parameters={"top_k": 5}, stream=True
        )
    )
    assert progress[-1].status == "success"
    shown = client.show("made")
    assert shown.modelfile and "be short" in shown.modelfile
    gguf = fixture_models["counter-f16.gguf"]
    digest = client.create_blob(gguf)
    assert digest == "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()
    done = client.create(model="made-f16", files={"counter-f16.gguf": digest})
    assert done.status == "success"
    r = client.generate(model="made-f16", prompt="abc", options=GREEDY)
    assert r.response == ANSWER
    q = client.create(model="made-q8", files={"counter-f16.gguf": digest}, quantize="q8_0")
    assert q.status == "success"
    assert client.show("made-q8").details.quantization_level.upper() == "Q8_0"


def test_create_with_a_broken_modelfile_is_located(served: Any) -> None:
    r = httpx.post(
        served.url + "/api/create",
        json={
            "model": "bad",
            "modelfile": "FROM counter\nPARAMETER temperature hot\n",
            "stream": False,
        },
    )
    assert r.status_code == 400
    body = r.json()
    assert "temperature" in body["error"]
    assert body["diagnostics"][0]["code"] == "MF103"
    assert body["diagnostics"][0]["line"] == 2


def test_async_client(served: Any) -> None:
    async def go() -> tuple[str, str, list[str]]:
        c = ollama.AsyncClient(host=served.url)
        r = await c.generate(model="counter", prompt="abc", options=GREEDY)
        chat = await c.chat(
            model="counter", messages=[{"role": "user", "content": "abc"}], options=GREEDY
        )
        parts = [
            p.response
            async for p in await c.generate(
                model="counter", prompt="abc", options=GREEDY, stream=True
            )
        ]
        return r.response, chat.message.content or "", parts

    text, chat_text, parts = asyncio.run(go())
    assert text == chat_text == "".join(parts) == ANSWER
