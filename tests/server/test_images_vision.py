"""A vision model end to end: a real `mfc serve`, the projector fixture on the counter
(`mfc.testing.vision`: a prompt ending with a red image is continued ``stuvwxyz``, with a blue
one ``cdef…z``) and the official clients of each API.

The vision models are built from Modelfiles with two FROM lines (the model and the fixture's
projector), as Ollama's are.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest

from mfc.build import build_text
from mfc.store import Store
from mfc.testing.server import Server, build_counter, start_server, stop_server
from mfc.testing.vision import BLUE, BLUE_CONTINUATION, RED, RED_CONTINUATION, image_png

VISION = "counter-vision"
GREEDY = {"temperature": 0, "seed": 1}
ANSWER = "defghijklmnopqrstuvwxyz"  # the counter after "abc"
RED_PNG, BLUE_PNG = image_png(RED), image_png(BLUE)
B64 = {RED: base64.b64encode(RED_PNG).decode(), BLUE: base64.b64encode(BLUE_PNG).decode()}


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, fixture_models: dict[str, Path]
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve-vision")
    store = Store(tmp / "models")
    projector = fixture_models["vision-proj.gguf"]
    build_counter(store, fixture_models, "counter")
    build_counter(store, fixture_models, VISION, f"FROM {projector}\n")  # model + projector
    think = fixture_models["think.gguf"]
    build_text(f"FROM {think}\nFROM {projector}\n", Path.cwd(), "think-vision", store=store)
    server = start_server(tmp, store)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def client(served: Server) -> ollama.Client:
    return ollama.Client(host=served.url)


def images_encoded(server: Server, name: str = VISION) -> int:
    for model in httpx.get(server.url + "/mfc/engines", timeout=30).json()["models"]:
        if model["name"].startswith(name):
            return int(model["counters"]["images_encoded"])
    return 0


# -- Ollama's native API (the ollama client) ---------------------------------------------------


def test_show_reports_vision(client: ollama.Client) -> None:
    assert "vision" in (client.show(VISION).capabilities or [])
    assert "vision" not in (client.show("counter").capabilities or [])


def test_chat_with_image_bytes_and_path(client: ollama.Client, tmp_path: Path) -> None:
    r = client.chat(
        model=VISION,
        messages=[{"role": "user", "content": "", "images": [RED_PNG]}],
        options=GREEDY,
    )
    assert r.message.content == RED_CONTINUATION
    path = tmp_path / "blue.png"
    path.write_bytes(BLUE_PNG)
    r = client.chat(
        model=VISION, messages=[{"role": "user", "content": "", "images": [path]}], options=GREEDY
    )
    assert r.message.content == BLUE_CONTINUATION


def test_chat_streams_and_keeps_image_order(client: ollama.Client) -> None:
    """Images across the conversation are slotted in order: the prompt ends with the last one."""
    history = [
        {"role": "user", "content": "", "images": [RED_PNG]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "", "images": [RED_PNG, BLUE_PNG]},
    ]
    parts = list(client.chat(model=VISION, messages=history, options=GREEDY, stream=True))
    assert "".join(p.message.content for p in parts) == BLUE_CONTINUATION
    history[-1]["images"] = [BLUE_PNG, RED_PNG]
    r = client.chat(model=VISION, messages=history, options=GREEDY)
    assert r.message.content == RED_CONTINUATION


def test_generate_places_the_image(client: ollama.Client) -> None:
    # without [img] the image goes before the prompt, which the counter continues
    r = client.generate(model=VISION, prompt="abc", images=[RED_PNG], options=GREEDY)
    assert r.response == ANSWER
    # "[img]" puts it at the end: the counter continues from the image
    r = client.generate(model=VISION, prompt="look: [img]", images=[BLUE_PNG], options=GREEDY)
    assert r.response == BLUE_CONTINUATION
    # raw: the prompt's [img-N] tags place the images, as Ollama's runner does
    r = client.generate(
        model=VISION,
        prompt="[img-1] then [img-0]",
        raw=True,
        images=[BLUE_PNG, RED_PNG],
        options=GREEDY,
    )
    assert r.response == BLUE_CONTINUATION
    parts = client.generate(
        model=VISION, prompt="[img]", images=[RED_PNG], options=GREEDY, stream=True
    )
    assert "".join(p.response for p in parts) == RED_CONTINUATION


def test_context_with_images_continues_as_text(client: ollama.Client) -> None:
    # Ollama turns a context back into text before the prompt; a token prompt has no image slots
    first = client.generate(model=VISION, prompt="abc", options=GREEDY)
    assert first.response == ANSWER and first.context
    r = client.generate(
        model=VISION, prompt="[img]", images=[RED_PNG], context=first.context, options=GREEDY
    )
    assert r.response == RED_CONTINUATION
    # the new context holds the earlier text, then the answer (image slots carry no tokens)
    assert len(r.context) > len(first.context)


def test_text_on_the_vision_model(client: ollama.Client) -> None:
    r = client.chat(model=VISION, messages=[{"role": "user", "content": "abc"}], options=GREEDY)
    assert r.message.content == ANSWER
    # a typed marker is text, not an image slot: the request does not fail on a count mismatch
    r = client.generate(model=VISION, prompt="<__mfc_media__>abc", options=GREEDY)
    assert r.response == ANSWER


def test_structured_output_of_a_thinking_model_resends_the_image(served: Server) -> None:
    """Ollama's two passes (think freely, then the answer under the grammar): the second pass
    resends the prompt, and must carry the image with it."""
    before = images_encoded(served, "think-vision")
    r = httpx.post(
        served.url + "/api/chat",
        json={
            "model": "think-vision",
            "messages": [{"role": "user", "content": "x", "images": [B64[RED]]}],
            "format": "json",
            "stream": False,
            "options": {**GREEDY, "num_predict": 16},
        },
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert r.json()["message"]["thinking"] == "I should count up."
    # each pass encodes the image (the engine reuses a prompt prefix only up to its first image)
    assert images_encoded(served, "think-vision") - before == 2


# -- OpenAI (the openai client) ---------------------------------------------------------------


def test_openai_chat_image_url(served: Server) -> None:
    client = openai.OpenAI(base_url=served.url + "/v1", api_key="x", max_retries=0)
    messages: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what colour is this?"},
                {"type": "image_url", "image_url": {"url": data_url(RED_PNG)}},
            ],
        }
    ]
    r = client.chat.completions.create(model=VISION, messages=messages, temperature=0, seed=1)
    assert r.choices[0].message.content == RED_CONTINUATION
    messages[0]["content"][1]["image_url"]["url"] = data_url(BLUE_PNG)
    chunks = client.chat.completions.create(
        model=VISION, messages=messages, temperature=0, seed=1, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == BLUE_CONTINUATION
    with pytest.raises(openai.BadRequestError) as remote:
        messages[0]["content"][1]["image_url"]["url"] = "https://example.com/a.png"
        client.chat.completions.create(model=VISION, messages=messages)
    assert "fetches nothing" in remote.value.message


def test_openai_responses_input_image(served: Server) -> None:
    client = openai.OpenAI(base_url=served.url + "/v1", api_key="x", max_retries=0)
    r = client.responses.create(
        model=VISION,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_image", "image_url": data_url(BLUE_PNG), "detail": "auto"}
                ],
            }
        ],
        temperature=0,
    )
    assert r.output_text == BLUE_CONTINUATION


# -- Anthropic (the anthropic client) -------------------------------------------------------


def test_anthropic_image_block(served: Server) -> None:
    client = anthropic.Anthropic(base_url=served.url, api_key="x", max_retries=0)
    source: Any = {
        "type": "base64",
        "media_type": "image/png",
        "data": base64.b64encode(RED_PNG).decode(),
    }
    msg = client.messages.create(
        model=VISION,
        max_tokens=64,
        messages=[{"role": "user", "content": [{"type": "image", "source": source}]}],
        extra_body=GREEDY,
    )
    assert msg.content[0].type == "text" and msg.content[0].text == RED_CONTINUATION
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model="counter",
            max_tokens=8,
            messages=[{"role": "user", "content": [{"type": "image", "source": source}]}],
        )
    assert '"counter" does not support images' in str(refused.value)


# -- batched with text ------------------------------------------------------------------------


def test_image_requests_batched_with_text_give_their_solo_output(served: Server) -> None:
    """Image and text requests at once on one model (num_parallel 4): each answer is its solo
    answer, whatever the batching did."""
    b64 = B64
    jobs: list[tuple[dict[str, Any], str]] = [
        ({"messages": [{"role": "user", "content": "", "images": [b64[RED]]}]}, RED_CONTINUATION),
        ({"messages": [{"role": "user", "content": "abc"}]}, ANSWER),
        ({"messages": [{"role": "user", "content": "", "images": [b64[BLUE]]}]}, BLUE_CONTINUATION),
        ({"messages": [{"role": "user", "content": "mno"}]}, "pqrstuvwxyz"),
        (
            {"messages": [{"role": "user", "content": "[img]", "images": [b64[RED]]}]},
            RED_CONTINUATION,
        ),
        ({"messages": [{"role": "user", "content": "uv"}]}, "wxyz"),
    ]
    before = images_encoded(served)
    start = threading.Barrier(len(jobs))
    got: dict[int, str] = {}

    def run(i: int, body: dict[str, Any]) -> None:
        start.wait()
        text = []
        with httpx.stream(
            "POST",
            served.url + "/api/chat",
            json={"model": VISION, "options": GREEDY, **body},
            timeout=120,
        ) as r:
            for line in r.iter_lines():
                if line:
                    text.append(httpx.Response(200, content=line).json()["message"]["content"])
        got[i] = "".join(text)

    threads = [threading.Thread(target=run, args=(i, body)) for i, (body, _) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert got == {i: want for i, (_, want) in enumerate(jobs)}
    assert images_encoded(served) - before == 3
