"""Images on every API, refused or rendered before anything is queued (a real `mfc serve`).

Each refusal is in its dialect's error shape and names the field at fault as the client
spelled it: a model without a projector refuses images; a vision model refuses what
`mfc.runtime.media.check_image` refuses (not an image, damaged, a decompression bomb, over
the byte or pixel limit); remote image URLs are refused (the server fetches nothing). None
of these loads a model: `/api/ps` stays empty.

The vision model here is the counter built with the fixture's projector (two FROM lines);
these tests never load it.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mfc.runtime.media import MAX_IMAGE_BYTES
from mfc.store import Store
from mfc.testing.server import Server, build_counter, start_server, stop_server
from mfc.testing.vision import BLUE, RED, image_png

TEXT = "counter"
VISION = "counter-vision"
PNG_RED = image_png(RED)
B64_RED = base64.b64encode(PNG_RED).decode()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, fixture_models: dict[str, Path]
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve-images")
    store = Store(tmp / "models")
    build_counter(store, fixture_models, TEXT)
    # a Modelfile naming the model and its projector (two FROM lines, as Ollama's)
    build_counter(store, fixture_models, VISION, f"FROM {fixture_models['vision-proj.gguf']}\n")
    server = start_server(tmp, store)
    try:
        yield server
    finally:
        stop_server(server)


def post(server: Server, path: str, body: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=120)


def noise_png(size: int) -> bytes:
    """A PNG that does not compress away (its truncation still has a whole header)."""
    import io
    import random

    from PIL import Image

    rng = random.Random(0)
    im = Image.frombytes(
        "RGB", (size, size), bytes(rng.randrange(256) for _ in range(size * size * 3))
    )
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


NOISE_PNG = noise_png(64)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` with almost no pixel data: a
    decompression bomb's signature (refused from the header, before decoding)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


BAD_IMAGES = {
    "not-an-image": (b"hello, world", "not an image mfc can read"),
    "truncated": (NOISE_PNG[: len(NOISE_PNG) * 3 // 4], "damaged or truncated"),
    "bomb": (png_claiming(60000, 60000), "the limit is 40000000 pixels"),
    "too-many-pixels": (png_claiming(8000, 6000), "is 8000×6000 pixels; the limit is 40000000"),
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def nothing_loaded(server: Server) -> bool:
    return httpx.get(server.url + "/api/ps").json()["models"] == []


# -- a model without a projector -------------------------------------------------------------


def test_text_model_refuses_images_natively(served: Server) -> None:
    r = post(
        served,
        "/api/chat",
        {
            "model": TEXT,
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "user", "content": "look", "images": [B64_RED]},
            ],
        },
    )
    assert r.status_code == 400
    assert r.json() == {
        "error": 'messages[1].images[0]: "counter" does not support images '
        "(the model has no vision projector)"
    }
    r = post(served, "/api/generate", {"model": TEXT, "prompt": "x", "images": [B64_RED]})
    assert r.status_code == 400
    assert r.json()["error"].startswith('images[0]: "counter" does not support images')
    assert nothing_loaded(served)


def test_text_model_refuses_images_openai(served: Server) -> None:
    url = "data:image/png;base64," + B64_RED
    r = post(
        served,
        "/v1/chat/completions",
        {
            "model": TEXT,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                }
            ],
        },
    )
    assert r.status_code == 400
    assert r.json() == {
        "error": {
            "message": 'messages[0].content[1]: "counter" does not support images '
            "(the model has no vision projector)",
            "type": "invalid_request_error",
            "param": "messages[0].content[1]",
            "code": None,
        }
    }
    r = post(
        served,
        "/v1/responses",
        {
            "model": TEXT,
            "input": [
                {"role": "user", "content": "first"},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "and"},
                        {"type": "input_image", "image_url": url},
                    ],
                },
            ],
        },
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "input[1].content[1]"
    assert err["message"].startswith('input[1].content[1]: "counter" does not support images')


def test_text_model_refuses_images_anthropic(served: Server) -> None:
    image = {"type": "base64", "media_type": "image/png", "data": B64_RED}
    r = post(
        served,
        "/v1/messages",
        {
            "model": TEXT,
            "max_tokens": 8,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hi"}, {"type": "image", "source": image}],
                }
            ],
        },
    )
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "error" and body["request_id"].startswith("req_")
    assert body["error"] == {
        "type": "invalid_request_error",
        "message": 'messages[0].content[1]: "counter" does not support images '
        "(the model has no vision projector)",
    }


# -- what check_image refuses, in each dialect -------------------------------------------------


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_images_native(served: Server, case: str) -> None:
    data, text = BAD_IMAGES[case]
    r = post(
        served,
        "/api/chat",
        {
            "model": VISION,
            "messages": [
                {"role": "user", "content": "a", "images": [B64_RED]},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c", "images": [B64_RED, b64(data)]},
            ],
        },
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error.startswith("messages[2].images[1]: the ") and text in error
    r = post(served, "/api/generate", {"model": VISION, "prompt": "x", "images": [b64(data)]})
    assert r.status_code == 400 and r.json()["error"].startswith("images[0]: the ")
    assert nothing_loaded(served)


@pytest.mark.parametrize("case", ["not-an-image", "bomb"])
def test_bad_images_openai(served: Server, case: str) -> None:
    data, text = BAD_IMAGES[case]
    url = "data:image/png;base64," + b64(data)
    r = post(
        served,
        "/v1/chat/completions",
        {
            "model": VISION,
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]},
            ],
        },
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == "messages[1].content[0]"
    assert err["message"].startswith("messages[1].content[0]: the ") and text in err["message"]


@pytest.mark.parametrize("case", ["truncated", "too-many-pixels"])
def test_bad_images_anthropic(served: Server, case: str) -> None:
    data, text = BAD_IMAGES[case]
    good = {"type": "base64", "media_type": "image/png", "data": B64_RED}
    bad = {"type": "base64", "media_type": "image/png", "data": b64(data)}
    r = post(
        served,
        "/v1/messages",
        {
            "model": VISION,
            "max_tokens": 8,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": good},
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [{"type": "image", "source": bad}],
                        },
                    ],
                }
            ],
        },
    )
    assert r.status_code == 400
    err = r.json()["error"]
    # a user turn's tool results come first (Ollama's order): the bad image is the first one
    assert err["type"] == "invalid_request_error"
    assert err["message"].startswith("messages[0].content[1].content[0]: the ")
    assert text in err["message"]


def test_oversize_image_is_refused_before_decoding(served: Server) -> None:
    data = b"\0" * (MAX_IMAGE_BYTES + 1)
    r = post(served, "/api/generate", {"model": VISION, "prompt": "x", "images": [b64(data)]})
    assert r.status_code == 400
    assert r.json()["error"] == (
        f"images[0]: the image is {MAX_IMAGE_BYTES + 1} bytes; the limit is {MAX_IMAGE_BYTES} "
        "(32 MiB): send a smaller or more compressed image"
    )


def test_bad_base64(served: Server) -> None:
    r = post(served, "/api/generate", {"model": VISION, "prompt": "x", "images": ["%%"]})
    assert r.status_code == 400 and "images[0]: illegal base64 data" in r.json()["error"]
    r = post(
        served,
        "/v1/chat/completions",
        {
            "model": VISION,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,%%"}}
                    ],
                }
            ],
        },
    )
    assert r.status_code == 400 and r.json()["error"]["message"] == "invalid image input"
    r = post(
        served,
        "/v1/messages",
        {
            "model": VISION,
            "max_tokens": 8,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "base64", "data": "%%"}}],
                }
            ],
        },
    )
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "messages[0].content[0]: invalid base64 image data"


# -- remote images: the server fetches nothing ---------------------------------------------------


def test_remote_urls_are_refused(served: Server) -> None:
    remote = "https://example.com/cat.png"
    r = post(
        served,
        "/v1/chat/completions",
        {
            "model": VISION,
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": remote}}]}
            ],
        },
    )
    assert r.status_code == 400
    assert r.json()["error"] == {
        "message": "image URLs are not currently supported, please use base64 encoded data "
        "instead (mfc serve fetches nothing: send the image as a data: URL)",
        "type": "invalid_request_error",
        "param": "messages",
        "code": None,
    }
    r = post(
        served,
        "/v1/responses",
        {
            "model": VISION,
            "input": [{"role": "user", "content": [{"type": "input_image", "image_url": remote}]}],
        },
    )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "input"
    assert "fetches nothing" in r.json()["error"]["message"]
    r = post(
        served,
        "/v1/messages",
        {
            "model": VISION,
            "max_tokens": 8,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "url", "url": remote}}],
                }
            ],
        },
    )
    assert r.status_code == 400
    assert r.json()["error"] == {
        "type": "invalid_request_error",
        "message": "messages[0].content[0]: invalid image source type: url. Only base64 images "
        "are supported (mfc serve fetches nothing: send the image's bytes as a base64 source).",
    }
    assert nothing_loaded(served)


# -- /api/generate's modes ----------------------------------------------------------------------


def test_raw_prompt_needs_a_tag_per_image(served: Server) -> None:
    r = post(
        served,
        "/api/generate",
        {"model": VISION, "prompt": "[img-0] and", "raw": True, "images": [B64_RED, B64_RED]},
    )
    assert r.status_code == 400
    assert r.json()["error"] == (
        'images[1]: a raw prompt places each image with its tag: put "[img-1]" in the prompt '
        "where the image goes"
    )


# -- what the prompt looks like (_debug_render_only) ----------------------------------------------


def test_debug_render_shows_ollamas_image_tags(served: Server) -> None:
    blue = b64(image_png(BLUE))
    r = post(
        served,
        "/api/chat",
        {
            "model": VISION,
            "_debug_render_only": True,
            "messages": [
                {"role": "user", "content": "one", "images": [B64_RED]},
                {"role": "assistant", "content": "ok"},
                {
                    "role": "user",
                    "content": "<__mfc_media__>two [img] three",
                    "images": [blue, blue],
                },
            ],
        },
    )
    assert r.status_code == 200, r.text
    debug = r.json()["_debug_info"]
    assert debug["image_count"] == 3
    rendered = debug["rendered_template"]
    assert "[img-0]one" in rendered
    # [img] took the first of them, the second is prefixed: numbered in the prompt's order
    assert "[img-1]two [img-2] three" in rendered
    assert "<__mfc_media__>" not in rendered  # typed markers are not image slots
    r = post(
        served,
        "/api/generate",
        {"model": VISION, "_debug_render_only": True, "prompt": "see [img]", "images": [blue]},
    )
    assert r.json()["_debug_info"] == {
        "rendered_template": r.json()["_debug_info"]["rendered_template"],
        "image_count": 1,
    }
    assert "see [img-0]" in r.json()["_debug_info"]["rendered_template"]
    url = "data:image/png;base64," + B64_RED
    r = post(
        served,
        "/v1/chat/completions",
        {
            "model": VISION,
            "_debug_render_only": True,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look:"},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                }
            ],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["_debug_info"]["image_count"] == 1
    rendered = r.json()["_debug_info"]["rendered_template"]
    assert "look:" in rendered and rendered.endswith("[img-0]")  # the parts are two messages
    assert nothing_loaded(served)
