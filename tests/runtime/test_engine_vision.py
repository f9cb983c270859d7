"""Images through the engine: the counter with the `vision-proj` fixture on real llama.cpp/libmtmd.

A plain red image reads as ``r`` to the counter, blue as ``b`` (`mfc.testing.vision`); the
counter predicts from the last position only, so a prompt ending with an image continues from
that image's letter. Every image is `vision.IMAGE_TOKENS` embeddings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mfc.runtime.engine import Engine, EngineError, PromptTooLongError
from mfc.runtime.media import MEDIA_MARKER
from mfc.runtime.options import LoadOptions, SamplingOptions
from mfc.testing import vision
from mfc.testing.fixtures import expected_continuation

GREEDY = SamplingOptions(temperature=0.0)
SMALL = LoadOptions(n_ctx=512, n_batch=512, n_threads=1, n_gpu_layers=0, main_gpu=0, use_mmap=True)
RED = vision.image_png(vision.RED)
BLUE = vision.image_png(vision.BLUE)
N_IMG = vision.IMAGE_TOKENS


def greedy(**changes: object) -> SamplingOptions:
    return dataclasses.replace(GREEDY, **changes)


def vision_engine(models: dict[str, Path], load: LoadOptions = SMALL, n_seq_max: int = 1) -> Engine:
    return Engine(
        models["counter-f32.gguf"], load, n_seq_max=n_seq_max, projector=models["vision-proj.gguf"]
    )


@pytest.fixture(scope="module")
def engine(fixture_models: dict[str, Path]) -> Iterator[Engine]:
    with vision_engine(fixture_models) as e:
        yield e


@pytest.fixture(scope="module")
def parallel(fixture_models: dict[str, Path]) -> Iterator[Engine]:
    with vision_engine(fixture_models, n_seq_max=4) as e:
        yield e


@pytest.mark.parametrize(
    ("image", "answer"),
    [(RED, vision.RED_CONTINUATION), (BLUE, vision.BLUE_CONTINUATION)],
    ids=["red", "blue"],
)
def test_an_image_continues_from_its_letter(engine: Engine, image: bytes, answer: str) -> None:
    assert engine.supports_vision
    gen = engine.generate("what is this? " + MEDIA_MARKER, GREEDY, images=[image])
    assert gen.result() == answer
    assert gen.stats is not None and gen.stats.done_reason == "stop"


def test_text_after_an_image_is_read_too(engine: Engine) -> None:
    gen = engine.generate(MEDIA_MARKER + "klm", GREEDY, images=[RED])
    assert gen.result() == expected_continuation("klm")
    assert gen.stats is not None
    # BOS (maybe cached from an earlier test) + the image's embeddings + "klm"
    assert gen.stats.prompt_eval_count in (N_IMG + 3, 1 + N_IMG + 3)
    assert engine.count_tokens(MEDIA_MARKER + "klm", [RED]) == 1 + N_IMG + 3


def test_two_images_in_one_prompt(engine: Engine) -> None:
    prompt = f"first {MEDIA_MARKER} then {MEDIA_MARKER}"
    assert engine.generate(prompt, GREEDY, images=[RED, BLUE]).result() == (
        vision.BLUE_CONTINUATION
    )
    assert engine.generate(prompt, GREEDY, images=[BLUE, RED]).result() == (vision.RED_CONTINUATION)


def test_image_encoding_is_counted(fixture_models: dict[str, Path]) -> None:
    with vision_engine(fixture_models) as e:
        assert e.counters.images_encoded == 0
        e.generate(MEDIA_MARKER, greedy(num_predict=2), images=[RED]).result()
        e.generate(MEDIA_MARKER + MEDIA_MARKER, greedy(num_predict=2), images=[RED, BLUE]).result()
        c = e.counters
    assert c.images_encoded == 3
    assert c.image_tokens == 3 * N_IMG
    assert c.image_encode_ns > 0 and c.image_decode_ns > 0


def test_the_context_holds_no_image_placeholders(engine: Engine) -> None:
    gen = engine.generate("ab" + MEDIA_MARKER, greedy(num_predict=3), images=[RED])
    assert gen.result() == vision.RED_CONTINUATION[:3]
    text_tokens = engine.tokenize("ab")
    assert gen.tokens[: len(text_tokens)] == text_tokens
    # then the answer's tokens that were fed back: the image is no token
    assert len(text_tokens) < len(gen.tokens) <= len(text_tokens) + 3
    assert all(t >= 0 for t in gen.tokens)


def test_count_tokens_includes_the_images(engine: Engine) -> None:
    text = "hello "
    n_text = len(engine.tokenize(text))
    assert engine.count_tokens(text + MEDIA_MARKER, [RED]) == n_text + N_IMG
    assert engine.count_tokens(text + MEDIA_MARKER * 2, [RED, BLUE]) == n_text + 2 * N_IMG
    assert engine.count_tokens(text) == n_text
    with pytest.raises(EngineError, match="1 image marker but 2 images"):
        engine.count_tokens(text + MEDIA_MARKER, [RED, BLUE])


# -- refusals: each fails its own request, the engine goes on --------------------------------


@pytest.mark.parametrize(
    ("prompt", "n_images", "words"),
    [
        ("no marker", 1, "0 image markers but 1 image"),
        (MEDIA_MARKER * 2, 1, "2 image markers but 1 image"),
        (MEDIA_MARKER, 2, "1 image marker but 2 images"),
    ],
)
def test_marker_count_must_match_the_images(
    engine: Engine, prompt: str, n_images: int, words: str
) -> None:
    gen = engine.generate(prompt, GREEDY, images=[RED] * n_images)
    with pytest.raises(EngineError, match=words):
        gen.result()
    assert engine.generate("abc", GREEDY).result() == expected_continuation("abc")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"not an image at all", "image 1: the data is not an image"),
        (RED[: len(RED) // 2], "image 1: the (PNG data is damaged|data is not an image)"),
        (b"", "image 1: the image is empty"),
    ],
    ids=["garbage", "truncated", "empty"],
)
def test_a_bad_image_fails_only_its_request(parallel: Engine, data: bytes, words: str) -> None:
    running = iter(parallel.generate("abc", GREEDY))
    first = next(running)  # it is decoding when the bad request arrives
    bad = parallel.generate(MEDIA_MARKER, GREEDY, images=[data])
    with pytest.raises(EngineError, match=words):
        bad.result()
    assert first + "".join(running) == expected_continuation("abc")
    assert parallel.generate(MEDIA_MARKER, GREEDY, images=[BLUE]).result() == (
        vision.BLUE_CONTINUATION
    )


def test_a_second_image_that_is_bad_names_its_number(engine: Engine) -> None:
    gen = engine.generate(MEDIA_MARKER * 2, GREEDY, images=[RED, b"junk"])
    with pytest.raises(EngineError, match="image 2: "):
        gen.result()


def test_images_need_a_projector(fixture_models: dict[str, Path]) -> None:
    with Engine(fixture_models["counter-f32.gguf"], SMALL) as e:
        assert not e.supports_vision
        gen = e.generate(MEDIA_MARKER, GREEDY, images=[RED])
        with pytest.raises(EngineError, match="does not support images: it has no projector"):
            gen.result()
        assert e.generate("abc", GREEDY).result() == expected_continuation("abc")


def test_images_need_a_text_prompt(engine: Engine) -> None:
    tokens = engine.tokenize("abc")
    with pytest.raises(EngineError, match="need a text prompt"):
        engine.generate(tokens, GREEDY, images=[RED]).result()


def test_a_text_request_to_a_vision_model_is_plain_text(engine: Engine) -> None:
    # no images: a marker typed in the text is just text (the server strips those first)
    gen = engine.generate("abc", GREEDY)
    assert gen.result() == expected_continuation("abc")


# -- the context window ------------------------------------------------------------------


def test_an_image_counts_against_num_ctx(fixture_models: dict[str, Path]) -> None:
    tiny = dataclasses.replace(SMALL, n_ctx=8)
    with vision_engine(fixture_models, tiny) as e:
        # BOS + "abc" fits in 8; with the image's 4 embeddings it does not
        assert e.generate("ab", greedy(num_predict=1)).result() == "c"
        gen = e.generate("abc" + MEDIA_MARKER, GREEDY, images=[RED])
        with pytest.raises(PromptTooLongError) as info:
            gen.result()
        assert (info.value.n_tokens, info.value.n_ctx) == (1 + 3 + N_IMG, 8)
        assert "the prompt is 8 tokens" in str(info.value)


def test_a_full_context_holding_an_image_ends_with_length(fixture_models: dict[str, Path]) -> None:
    """Sliding the context would move an image's embeddings: the answer stops instead."""
    small = dataclasses.replace(SMALL, n_ctx=12)
    with vision_engine(fixture_models, small) as e:
        gen = e.generate(MEDIA_MARKER, GREEDY, images=[BLUE])  # BOS + 4 embeddings
        text = gen.result()
        assert gen.stats is not None and gen.stats.done_reason == "length"
        assert any("context window (num_ctx=12) is full" in w for w in gen.warnings)
        assert 0 < len(text) < len(vision.BLUE_CONTINUATION)
        assert vision.BLUE_CONTINUATION.startswith(text)
        # a text prompt still slides the context as before, and the cells are consistent
        assert e.generate("abc", GREEDY).result() == expected_continuation("abc")


# -- the prompt cache ----------------------------------------------------------------------


def test_only_the_text_before_the_first_image_is_reused(fixture_models: dict[str, Path]) -> None:
    history = "abcdefgh"
    with vision_engine(fixture_models) as e:
        first = e.generate(history + MEDIA_MARKER, greedy(num_predict=3), images=[RED])
        assert first.result() == "stu"
        again = e.generate(history + MEDIA_MARKER, greedy(num_predict=3), images=[RED])
        assert again.result() == "stu"
        assert again.stats is not None
        # BOS and the history came from the cache; the same image was decoded again
        assert again.stats.prompt_eval_count == N_IMG
        assert e.counters.images_encoded == 2
        other = e.generate(history + MEDIA_MARKER, greedy(num_predict=3), images=[BLUE])
        assert other.result() == "cde"
        text = e.generate(history + "xy", GREEDY)
        assert text.result() == expected_continuation("xy")
        assert text.stats is not None and text.stats.prompt_eval_count == 2


# -- batching ------------------------------------------------------------------------------


@contextlib.contextmanager
def paused(engine: Engine, expect: int) -> Iterator[None]:
    """Hold the engine thread between two steps: the `expect` requests submitted meanwhile
    are taken in together when the block ends (as in test_engine.py). Image requests reach
    the engine's inbox only once the image thread has decoded them: wait for all first."""
    entered, gate = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        gate.wait()

    holder = threading.Thread(target=engine._call, args=(hold,))
    holder.start()
    entered.wait()
    try:
        yield
        deadline = time.monotonic() + 60
        while engine.waiting < expect and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        gate.set()
        holder.join()


# (prompt, images) → each request's solo answer is what it must give batched too
MIXED: list[tuple[str, tuple[bytes, ...]]] = [
    ("abc", ()),
    ("look " + MEDIA_MARKER, (RED,)),
    (MEDIA_MARKER + "pq", (BLUE,)),
    ("hello wor", ()),
    ("x" + MEDIA_MARKER, (BLUE,)),
    ("klm", ()),
    (MEDIA_MARKER + " and " + MEDIA_MARKER, (BLUE, RED)),
]


def test_image_and_text_requests_batched_give_their_solo_outputs(parallel: Engine) -> None:
    solo = [parallel.generate(p, GREEDY, images=imgs).result() for p, imgs in MIXED]
    assert solo == [
        expected_continuation("abc"),
        vision.RED_CONTINUATION,
        expected_continuation("pq"),
        expected_continuation("hello wor"),
        vision.BLUE_CONTINUATION,
        expected_continuation("klm"),
        vision.RED_CONTINUATION,
    ]
    before = parallel.counters
    with paused(parallel, len(MIXED)):  # all arrive together: 4 run at once, 3 wait
        gens = [parallel.generate(p, GREEDY, images=imgs) for p, imgs in MIXED]
    assert [g.result() for g in gens] == solo
    after = parallel.counters
    assert after.max_sequences_in_decode == 4
    assert after.images_encoded - before.images_encoded == 5


def test_an_image_larger_than_num_batch_is_decoded_in_pieces(
    fixture_models: dict[str, Path],
) -> None:
    """num_batch 3 < the image's 4 embeddings: two pieces in two steps (no step holds the
    other streams for more than num_batch embeddings), positions continuing, while another
    stream decodes beside it."""
    tiny_batch = dataclasses.replace(SMALL, n_batch=3)
    with vision_engine(fixture_models, tiny_batch, n_seq_max=2) as e:
        alone = e.generate("ab" + MEDIA_MARKER + "c", GREEDY, images=[RED])
        assert alone.result() == expected_continuation("c")
        with paused(e, 2):
            text = e.generate("abc", GREEDY)
            image = e.generate(MEDIA_MARKER, GREEDY, images=[BLUE])
        assert image.result() == vision.BLUE_CONTINUATION
        assert text.result() == expected_continuation("abc")
        assert e.counters.max_sequences_in_decode == 2
        assert e.counters.image_tokens == 8
        assert e.counters.max_image_embeddings_in_step == 3


def test_a_cancelled_image_request_frees_its_slot(fixture_models: dict[str, Path]) -> None:
    with vision_engine(fixture_models) as e:
        gen = e.generate(MEDIA_MARKER, GREEDY, images=[RED])
        assert next(iter(gen)) == vision.RED_CONTINUATION[0]
        gen.cancel()
        assert gen.stats is not None and gen.stats.done_reason == "cancel"
        assert e.generate(MEDIA_MARKER, GREEDY, images=[BLUE]).result() == (
            vision.BLUE_CONTINUATION
        )


# -- loading -------------------------------------------------------------------------------


def test_a_projector_for_another_width_is_refused(fixture_models: dict[str, Path]) -> None:
    wide = fixture_models["vision-proj-wide.gguf"]
    with pytest.raises(EngineError) as info:
        Engine(fixture_models["counter-f32.gguf"], SMALL, projector=wide)
    message = str(info.value)
    assert f"could not load the projector {wide}" in message
    assert "n_embd = 128" in message and "n_embd = 64" in message  # llama.cpp's reason


def test_a_missing_projector_file_is_an_engine_error(
    fixture_models: dict[str, Path], tmp_path: Path
) -> None:
    gone = tmp_path / "gone.gguf"
    with pytest.raises(EngineError, match=f"projector {gone}: no such file"):
        Engine(fixture_models["counter-f32.gguf"], SMALL, projector=gone)


def test_a_model_file_is_no_projector(fixture_models: dict[str, Path]) -> None:
    with pytest.raises(EngineError, match="could not load the projector"):
        Engine(
            fixture_models["counter-f32.gguf"],
            SMALL,
            projector=fixture_models["counter-f32.gguf"],
        )


def test_projector_calls_stay_on_the_engine_thread(engine: Engine) -> None:
    """Encoding and decoding (ggml graphs) run on the engine thread; the image thread only
    decodes image files and splits prompts, and is not one of `llama_threads`."""
    engine.generate(MEDIA_MARKER, greedy(num_predict=1), images=[RED]).result()
    engine.count_tokens(MEDIA_MARKER, [RED])
    assert engine.llama_threads == {engine.worker_ident}


def test_closing_with_an_image_request_in_flight_does_not_hang(
    fixture_models: dict[str, Path],
) -> None:
    big = vision.image_png(vision.RED, 1024)  # takes the image thread a while to decode
    e = vision_engine(fixture_models)
    gens = [e.generate(MEDIA_MARKER, GREEDY, images=[big]) for _ in range(3)]
    e.close()
    for gen in gens:
        try:
            gen.result()
        except EngineError as exc:
            assert "closed" in str(exc)
        else:
            assert gen.stats is not None and gen.stats.done_reason in ("cancel", "stop")
