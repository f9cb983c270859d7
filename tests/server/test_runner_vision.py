"""Vision projectors in runner processes: the projector loads with the model in its runner,
images travel as base64, and a projector that crashes llama.cpp takes down only its runner.

Runner-level tests drive `RunnerProcess` (a real ``python -m mfc.server.runner`` subprocess);
the last test runs a real `mfc serve` with projector layers put into the store by hand (as a
hand-edited or older store could hold them: `mfc build` refuses the crashing one).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mfc.runtime.media import MEDIA_MARKER
from mfc.runtime.options import LoadOptions, SamplingOptions
from mfc.server.models import sampling_wire
from mfc.server.runners import RunnerError, RunnerProcess
from mfc.server.scheduler import LoadSpec
from mfc.store import Store
from mfc.store import media_types as mt
from mfc.store.manifest import Descriptor
from mfc.testing import vision
from mfc.testing.fixtures import expected_continuation
from mfc.testing.server import Server, build_counter, start_server, stop_server

LOAD = LoadOptions(n_ctx=256, n_batch=256, n_threads=1, n_gpu_layers=0, main_gpu=0, use_mmap=True)
GREEDY = sampling_wire(SamplingOptions(temperature=0.0))
RED = base64.b64encode(vision.image_png(vision.RED)).decode()
BLUE = base64.b64encode(vision.image_png(vision.BLUE)).decode()


def spec(models: dict[str, Path], projector: str | None) -> LoadSpec:
    pairs = {f.name: getattr(LOAD, f.name) for f in dataclasses.fields(LOAD)}
    return LoadSpec(
        digest="test",
        model_path=str(models["counter-f32.gguf"]),
        adapters=(),
        load=tuple(sorted(pairs.items())),
        n_seq_max=2,
        projector=str(models[projector]) if projector else None,
    )


def test_the_wire_names_a_projector_only_when_there_is_one(
    fixture_models: dict[str, Path],
) -> None:
    assert "projector" not in spec(fixture_models, None).wire()
    assert spec(fixture_models, "vision-proj.gguf").wire()["projector"] == str(
        fixture_models["vision-proj.gguf"]
    )


async def generate(runner: RunnerProcess, prompt: str, **fields: Any) -> str:
    text = ""
    async with runner.request("generate", prompt=prompt, sampling=GREEDY, **fields) as frames:
        async for frame in frames:
            if frame["t"] == "text":
                text += frame["text"]
    return text


async def started(models: dict[str, Path], projector: str | None) -> RunnerProcess:
    runner = RunnerProcess(projector or "counter")
    await runner.start()
    try:
        await runner.load(spec(models, projector).wire(), timeout=60)
    except BaseException:
        await runner.stop(grace=1)
        raise
    return runner


def test_a_runner_loads_the_projector_and_reads_base64_images(
    fixture_models: dict[str, Path],
) -> None:
    async def main() -> None:
        runner = await started(fixture_models, "vision-proj.gguf")
        try:
            red, blue, text = await asyncio.gather(
                generate(runner, "see " + MEDIA_MARKER, images=[RED]),
                generate(runner, MEDIA_MARKER, images=[BLUE]),
                generate(runner, "abc"),
            )
            assert red == vision.RED_CONTINUATION
            assert blue == vision.BLUE_CONTINUATION
            assert text == expected_continuation("abc")
            counters = await runner.call("counters")
            assert counters["images_encoded"] == 2
            assert counters["image_tokens"] == 2 * vision.IMAGE_TOKENS
            assert counters["image_encode_ns"] > 0
        finally:
            await runner.stop()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("projector", "prompt", "images", "words"),
    [
        ("vision-proj.gguf", MEDIA_MARKER, ["not base64!"], "image 1 is not valid base64"),
        ("vision-proj.gguf", MEDIA_MARKER, [base64.b64encode(b"junk").decode()], "image 1: "),
        ("vision-proj.gguf", "no marker", [RED], "0 image markers but 1 image"),
        (None, MEDIA_MARKER, [RED], "does not support images: it has no projector"),
    ],
    ids=["base64", "not-an-image", "no-marker", "no-projector"],
)
def test_a_bad_image_request_fails_alone(
    fixture_models: dict[str, Path],
    projector: str | None,
    prompt: str,
    images: list[str],
    words: str,
) -> None:
    async def main() -> None:
        runner = await started(fixture_models, projector)
        try:
            with pytest.raises(RunnerError, match=words) as info:
                await generate(runner, prompt, images=images)
            assert info.value.kind == "engine"
            assert runner.dead is None
            assert await generate(runner, "klm") == expected_continuation("klm")
        finally:
            await runner.stop()

    asyncio.run(main())


def test_a_projector_that_crashes_llama_cpp_kills_only_its_runner(
    fixture_models: dict[str, Path],
) -> None:
    """vision-proj-missing.gguf lacks a tensor libmtmd's graph uses: loading it segfaults
    (while libmtmd builds its graph). The load fails with the signal; another model's runner,
    mid-answer, is untouched."""

    async def main() -> None:
        healthy = await started(fixture_models, "vision-proj.gguf")
        try:
            answer = asyncio.ensure_future(generate(healthy, MEDIA_MARKER, images=[BLUE]))
            with pytest.raises(RunnerError) as info:
                await started(fixture_models, "vision-proj-missing.gguf")
            message = str(info.value)
            assert "vision-proj-missing.gguf" in message and "SIGSEGV" in message, message
            assert await answer == vision.BLUE_CONTINUATION
            assert healthy.dead is None
            assert await generate(healthy, "abc") == expected_continuation("abc")
        finally:
            await healthy.stop()

    asyncio.run(main())


# -- a real server ----------------------------------------------------------------------------


def with_projector(store: Store, base: str, tag: str, projector: Path) -> None:
    """``base``'s manifest plus a projector layer, written by hand (no build checks)."""
    manifest = store.read_manifest(base)
    blob = store.put_file(projector)
    layer = Descriptor(mt.PROJECTOR, blob.digest, blob.size)
    store.write_manifest(tag, dataclasses.replace(manifest, layers=(*manifest.layers, layer)))


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fixture_models: dict[str, Path]
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve-vision")
    store = Store(tmp / "models")
    build_counter(store, fixture_models, "counter")
    with_projector(store, "counter", "seeing", fixture_models["vision-proj.gguf"])
    with_projector(store, "counter", "seeing-crash", fixture_models["vision-proj-missing.gguf"])
    srv = start_server(tmp, store)
    try:
        yield srv
    finally:
        stop_server(srv)


def post(server: Server, model: str, prompt: str) -> httpx.Response:
    body = {"model": model, "prompt": prompt, "stream": False, "options": {"temperature": 0}}
    return httpx.post(server.url + "/api/generate", json=body, timeout=60)


def test_a_crashing_projector_in_the_store_fails_only_its_model(server: Server) -> None:
    r = post(server, "seeing", "abc")  # its runner loads the good projector with the model
    assert r.status_code == 200, r.text
    assert r.json()["response"] == expected_continuation("abc")
    for _ in range(2):  # each request gets a fresh runner, and the same answer
        r = post(server, "seeing-crash", "abc")
        assert r.status_code == 500, r.text
        error = r.json()["error"]
        assert "seeing-crash" in error and "SIGSEGV" in error, error
    for model in ("counter", "seeing"):
        r = post(server, model, "klm")
        assert r.status_code == 200, r.text
        assert r.json()["response"] == expected_continuation("klm")
    assert server.proc.poll() is None
