"""The engine on real llama.cpp with the counter fixtures (greedy decoding)."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mfc.runtime.engine import Engine, EngineError, Generation, PromptTooLongError, json_grammar
from mfc.runtime.model import Adapter
from mfc.runtime.options import LoadOptions, SamplingOptions
from mfc.testing.fixtures import expected_continuation

GREEDY = SamplingOptions(temperature=0.0)
SMALL = LoadOptions(n_ctx=512, n_batch=512, n_threads=1, n_gpu_layers=0, main_gpu=0, use_mmap=True)


def greedy(**changes: object):
    return dataclasses.replace(GREEDY, **changes)


@pytest.fixture(scope="module")
def engine(fixture_models: dict[str, Path]):
    with Engine(fixture_models["counter-f32.gguf"], SMALL) as e:
        yield e


@pytest.mark.parametrize("prompt", ["abc", "m", "hello wor", "ABC"])
def test_counter_continues_prompt(engine: Engine, prompt: str) -> None:
    assert engine.generate(prompt, GREEDY).result() == expected_continuation(prompt)


def test_known_continuation(engine: Engine) -> None:
    gen = engine.generate("abc", GREEDY)
    assert gen.result() == "defghijklmnopqrstuvwxyz"
    assert gen.stats is not None
    assert gen.stats.done_reason == "stop"
    assert gen.stats.eval_count == 23
    assert gen.stats.prompt_eval_count >= 1


@pytest.mark.parametrize(
    ("stop", "expected"),
    [(("gh",), "def"), (("x", "k"), "defghij"), (("zz",), "defghijklmnopqrstuvwxyz"), (("d",), "")],
)
def test_stop_strings_end_generation(engine: Engine, stop: tuple[str, ...], expected: str) -> None:
    assert engine.generate("abc", greedy(stop=stop)).result() == expected


def test_num_predict_limits_tokens(engine: Engine) -> None:
    gen = engine.generate("abc", greedy(num_predict=4))
    assert gen.result() == "defg"
    assert gen.stats is not None
    assert (gen.stats.eval_count, gen.stats.done_reason) == (4, "length")


def test_streaming_yields_pieces_in_order(engine: Engine) -> None:
    chunks = list(engine.generate("abc", greedy(num_predict=5)))
    assert len(chunks) == 5
    assert "".join(chunks) == "defgh"


def test_cancel_stops_and_engine_stays_usable(engine: Engine) -> None:
    gen = engine.generate("abc", GREEDY)
    first = next(iter(gen))
    gen.cancel()
    assert first == "d"
    assert gen.stats is not None
    assert gen.stats.done_reason == "cancel"
    assert len(gen.text) < 23
    assert engine.generate("klm", GREEDY).result() == expected_continuation("klm")


def test_all_llama_calls_run_on_one_worker_thread(fixture_models: dict[str, Path]) -> None:
    results: list[str] = []

    def use(e: Engine) -> None:
        results.append(e.generate("abc", greedy(num_predict=3)).result())

    with Engine(fixture_models["counter-f32.gguf"], SMALL) as e:
        use(e)
        callers = [threading.Thread(target=use, args=(e,)) for _ in range(3)]
        for t in callers:
            t.start()
        for t in callers:
            t.join()
        e.tokenize("abc")
        e.embed("abc")
        assert e.llama_threads == {e.worker_ident}
        assert threading.get_ident() not in e.llama_threads
    assert results == ["def"] * 4


def test_prompt_longer_than_context_is_an_error(fixture_models: dict[str, Path]) -> None:
    small = dataclasses.replace(SMALL, n_ctx=32)
    with Engine(fixture_models["counter-f32.gguf"], small) as e:
        gen = e.generate("a" * 40, GREEDY)
        with pytest.raises(PromptTooLongError, match=r"4[01] tokens"):
            gen.result()


def test_context_shifts_when_full(fixture_models: dict[str, Path]) -> None:
    small = dataclasses.replace(SMALL, n_ctx=8)
    with Engine(fixture_models["counter-f32.gguf"], small) as e:
        gen = e.generate("abc", GREEDY)  # 4 prompt tokens + 23 answer tokens > 8
        assert gen.result() == "defghijklmnopqrstuvwxyz"
        assert gen.stats is not None and gen.stats.done_reason == "stop"
        assert gen.warnings == []
        # the cache is consistent afterwards: the next prompt answers right
        assert e.generate("klm", GREEDY).result() == "nopqrstuvwxyz"


def test_generation_stops_when_context_is_full(fixture_models: dict[str, Path]) -> None:
    small = dataclasses.replace(SMALL, n_ctx=8)
    with Engine(fixture_models["counter-f32.gguf"], small) as e:
        gen = e.generate("abc", greedy(num_predict=-2))
        text = gen.result()
    assert gen.stats is not None
    assert gen.stats.done_reason == "length"
    assert text == "defgh"[: len(text)] and 0 < len(text) < 23
    assert any("context window" in w for w in gen.warnings)


def _run_with(models: dict[str, Path], adapters: dict[str, float], prompt: str) -> str:
    loaded = [Adapter(models[name], scale) for name, scale in adapters.items()]
    with Engine(models["counter-f32.gguf"], SMALL, loaded) as e:
        return e.generate(prompt, greedy(num_predict=12)).result()


@pytest.mark.parametrize("adapter", ["lora-constant.gguf", "lora-shift.gguf"])
def test_adapter_changes_output_at_scale_1_not_0(
    fixture_models: dict[str, Path], adapter: str
) -> None:
    base = expected_continuation("abc", max_tokens=12)
    on = _run_with(fixture_models, {adapter: 1.0}, "abc")
    off = _run_with(fixture_models, {adapter: 0.0}, "abc")
    assert off == base
    assert on != base
    assert on == expected_continuation("abc", {adapter: 1.0}, max_tokens=12)


def test_two_adapters_stack(fixture_models: dict[str, Path]) -> None:
    both = {"lora-constant.gguf": 1.0, "lora-shift.gguf": 1.0}
    out = _run_with(fixture_models, both, "xyz")
    assert out == expected_continuation("xyz", both, max_tokens=12) == "_acegikmoqsu"
    for single in both:  # neither adapter alone explains it
        assert out != _run_with(fixture_models, {single: 1.0}, "xyz")


def test_adapter_for_another_architecture_is_refused(fixture_models: dict[str, Path]) -> None:
    bad = [Adapter(fixture_models["lora-other-arch.gguf"], 1.0)]
    with pytest.raises(EngineError, match="LoRA adapter"):
        Engine(fixture_models["counter-f32.gguf"], SMALL, bad)


def test_broken_model_file_is_an_engine_error(fixture_models: dict[str, Path]) -> None:
    with pytest.raises(EngineError, match="could not load"):
        Engine(fixture_models["not-gguf.gguf"], SMALL)


def test_json_grammar_constrains_output(engine: Engine) -> None:
    import json

    free = engine.generate("abc", greedy(num_predict=30)).result()
    out = engine.generate("abc", greedy(num_predict=30), grammar=json_grammar()).result()
    assert free.startswith("d")
    assert out.startswith("{")
    # The counter never closes what it opens, but what it wrote is JSON so far:
    # a key string that closing it and adding a value completes.
    assert isinstance(json.loads(out + '": 0}'), dict)


def test_embedding_is_normalised_and_deterministic(engine: Engine) -> None:
    a, b, c = engine.embed("abc"), engine.embed("abc"), engine.embed("xyz")
    assert len(a) == 128
    assert a == b
    assert a != c
    assert abs(sum(x * x for x in a) - 1.0) < 1e-4
    # generation still works after embedding (the context was restored)
    assert engine.generate("abc", greedy(num_predict=3)).result() == "def"


@pytest.mark.parametrize("fixture", ["counter-f16.gguf", "counter-q8_0.gguf"])
def test_other_tensor_types_count_too(fixture_models: dict[str, Path], fixture: str) -> None:
    with Engine(fixture_models[fixture], SMALL) as e:
        assert e.generate("abc", GREEDY).result() == "defghijklmnopqrstuvwxyz"


# -- the step loop: several sequences, queueing, cancel, prompt cache ---------------------


@contextlib.contextmanager
def paused(engine: Engine) -> Iterator[None]:
    """Hold the engine thread between two steps: what is submitted meanwhile is
    taken in together when the block ends."""
    entered, gate = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        gate.wait()

    holder = threading.Thread(target=engine._call, args=(hold,))
    holder.start()
    entered.wait()
    try:
        yield
    finally:
        gate.set()
        holder.join()


PROMPTS = ["abc", "m", "hello wor", "ABC", "klm", "xyz", "pqr"]


@pytest.fixture(scope="module")
def parallel(fixture_models: dict[str, Path]):
    with Engine(fixture_models["counter-f32.gguf"], SMALL, n_seq_max=4) as e:
        yield e


def test_concurrent_generations_equal_their_solo_output(parallel: Engine) -> None:
    solo = {p: parallel.generate(p, GREEDY).result() for p in PROMPTS}
    assert solo == {p: expected_continuation(p) for p in PROMPTS}
    before = parallel.counters
    results: dict[str, str] = {}
    submitted = threading.Barrier(len(PROMPTS) + 1)

    def run(prompt: str) -> None:
        gen = parallel.generate(prompt, GREEDY)
        submitted.wait()
        results[prompt] = gen.result()

    threads = [threading.Thread(target=run, args=(p,)) for p in PROMPTS]
    with paused(parallel):  # every request arrives before the next step: 4 run, 3 wait
        for t in threads:
            t.start()
        submitted.wait()
    for t in threads:
        t.join()
    assert results == solo
    after = parallel.counters
    assert after.max_sequences_in_decode == 4  # batched: every slot in one llama_decode
    assert after.generations - before.generations == len(PROMPTS)
    assert parallel.llama_threads == {parallel.worker_ident}


def test_requests_beyond_the_slots_wait_their_turn(parallel: Engine) -> None:
    # started from one thread without reading: 7 > 4 slots, the last 3 queue (FIFO)
    gens = [parallel.generate(p, greedy(num_predict=6)) for p in PROMPTS]
    assert [g.result() for g in gens] == [expected_continuation(p, max_tokens=6) for p in PROMPTS]


def test_cancel_frees_the_slot_for_a_waiting_request(fixture_models: dict[str, Path]) -> None:
    with Engine(fixture_models["counter-f32.gguf"], SMALL, n_seq_max=1) as e:
        first = e.generate("abc", GREEDY)
        waiting = e.generate("klm", GREEDY)  # no free slot until `first` ends
        assert next(iter(first)) == "d"
        first.cancel()
        assert first.stats is not None and first.stats.done_reason == "cancel"
        assert waiting.result() == expected_continuation("klm")
        # a request cancelled while still queued never takes a slot
        busy = e.generate("abc", GREEDY)
        queued = e.generate("xyz", GREEDY)
        queued.cancel()
        assert queued.stats is not None and queued.stats.done_reason == "cancel"
        assert queued.text == ""
        assert busy.result() == "defghijklmnopqrstuvwxyz"


def test_closing_the_iterator_cancels(parallel: Engine) -> None:
    gen = parallel.generate("abc", GREEDY)
    for chunk in gen:
        assert chunk == "d"
        break
    # breaking out of a for loop does not close a generator at once; close() does
    it = iter(parallel.generate("abc", GREEDY))
    next(it)
    it.close()
    assert parallel.generate("klm", greedy(num_predict=3)).result() == "nop"


def test_next_turn_reuses_the_cached_prefix(fixture_models: dict[str, Path]) -> None:
    with Engine(fixture_models["counter-f32.gguf"], SMALL) as e:
        history = "abcdefghij"
        first = e.generate(history, greedy(num_predict=3))
        assert first.result() == "klm"
        second = e.generate(history + "klmnop", greedy(num_predict=3))
        assert second.result() == "qrs"
        assert second.stats is not None
        # only the new text is decoded: BOS, the history and the answer's tokens that
        # were fed back ("kl"; "m", sampled last, never was) were still in the KV cells
        assert second.stats.prompt_eval_count == len("mnop")
        assert e.counters.prompt_tokens_reused >= 1 + len(history)


def test_embeddings_do_not_disturb_a_cached_chat(fixture_models: dict[str, Path]) -> None:
    with Engine(fixture_models["counter-f32.gguf"], SMALL) as e:
        history = "abcdefghij"
        assert e.generate(history, greedy(num_predict=3)).result() == "klm"
        vec = e.embed("something else entirely")
        assert abs(sum(x * x for x in vec) - 1.0) < 1e-4
        again = e.generate(history + "klm", greedy(num_predict=3))
        assert again.result() == "nop"
        assert again.stats is not None and again.stats.prompt_eval_count == len("m")


def test_prefix_of_a_busy_sequence_is_copied_not_recomputed(
    fixture_models: dict[str, Path],
) -> None:
    shared = "abcdefghijklmnopqrstuvwxyz" * 3  # a long common prefix (a system prompt …)
    with Engine(fixture_models["counter-f32.gguf"], SMALL, n_seq_max=2) as e:
        solo = e.generate(shared + "klm", greedy(num_predict=8)).result()
        e.generate("x", greedy(num_predict=1)).result()  # slot 0 now holds another prompt

        def both_at_once() -> tuple[Generation, Generation]:
            # on the engine thread: admit A and decode its prompt, then admit B while
            # A is still running, exactly as the step loop would between two steps
            a = e.generate(shared + "abc", greedy(num_predict=8))
            e._take_inbox(block=False)
            e._admit()
            e._step()
            b = e.generate(shared + "klm", greedy(num_predict=8))
            e._take_inbox(block=False)
            e._admit()
            return a, b

        copies = e.counters.prefix_copies
        a, b = e._call(both_at_once)
        assert a.result() == expected_continuation(shared + "abc", max_tokens=8)
        assert b.result() == solo
        assert e.counters.prefix_copies == copies + 1
        assert b.stats is not None and b.stats.prompt_eval_count == len("klm")


def test_counters_count_steps_and_tokens(fixture_models: dict[str, Path]) -> None:
    with Engine(fixture_models["counter-f32.gguf"], SMALL) as e:
        gen = e.generate("abc", greedy(num_predict=5))
        gen.result()
        c = e.counters
    # one step decodes the prompt (BOS + 3 tokens) and samples; 4 more each feed one token
    assert (c.decode_calls, c.steps, c.tokens_decoded) == (5, 5, 4 + 4)
    assert c.max_sequences_in_decode == 1


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("not-gguf.gguf", "invalid magic characters"),
        ("truncated.gguf", "not within the file bounds"),
    ],
)
def test_load_error_quotes_llama_cpp(
    fixture_models: dict[str, Path], fixture: str, reason: str
) -> None:
    with pytest.raises(EngineError, match="could not load") as info:
        Engine(fixture_models[fixture], SMALL)
    assert reason in str(info.value)
    assert "llama.cpp said:" in str(info.value)


def test_llama_log_goes_through_logging(
    fixture_models: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    with caplog.at_level(logging.ERROR, logger="mfc.llama"), pytest.raises(EngineError):
        Engine(fixture_models["not-gguf.gguf"], SMALL)
    assert any("invalid magic" in r.getMessage() for r in caplog.records)


def test_flash_attention_is_an_option(fixture_models: dict[str, Path]) -> None:
    fa = dataclasses.replace(SMALL, flash_attn=True)
    with Engine(fixture_models["counter-f32.gguf"], fa) as e:
        assert e.generate("abc", GREEDY).result() == "defghijklmnopqrstuvwxyz"


def test_an_abort_inside_llama_cpp_still_says_why(
    fixture_models: dict[str, Path], tmp_path: Path
) -> None:
    """A vocabulary with a duplicated token makes llama.cpp abort while loading (no
    Python code survives that): its reason must still reach stderr, without pages of
    gdb backtrace."""
    import os
    import signal
    import subprocess
    import sys

    data = bytearray(fixture_models["counter-f32.gguf"].read_bytes())
    at = data.find(b"\x01\x00\x00\x00\x00\x00\x00\x00b")  # the one-byte token "b"
    data[at + 8] = ord("a")  # now "a" twice
    damaged = tmp_path / "dup-vocab.gguf"
    damaged.write_bytes(data)
    code = (
        "import sys; from pathlib import Path; from mfc.runtime.engine import Engine\n"
        "from mfc.runtime.options import LoadOptions\n"
        "Engine(Path(sys.argv[1]), LoadOptions(64, 64, 1, 0, 0, True))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GGML_NO_BACKTRACE", "MFC_LLAMA_LOG")}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(damaged)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == -signal.SIGABRT
    # measured: "llama-vocab.cpp:2544: GGML_ASSERT(id_to_token.size() == token_to_id.size())"
    assert "GGML_ASSERT(" in proc.stderr and "failed" in proc.stderr
    assert "futex" not in proc.stderr and "#0 " not in proc.stderr  # no gdb backtrace


def test_shared_prefix_seen_before_is_decoded_once(fixture_models: dict[str, Path]) -> None:
    """Four requests with the same long prefix (an agent's system prompt), seen once
    before: one reuses the idle slot that holds it, the others copy it or reuse it —
    none decodes it again."""
    shared = "abcdefghijklmnopqrstuvwxyz" * 3
    suffixes = ["abc", "klm", "pqr", "xyz"]
    with Engine(fixture_models["counter-f32.gguf"], SMALL, n_seq_max=4) as e:
        solo = {s: e.generate(shared + s, greedy(num_predict=6)).result() for s in suffixes}
        gens = {s: e.generate(shared + s, greedy(num_predict=6)) for s in suffixes}
        assert {s: g.result() for s, g in gens.items()} == solo
        for g in gens.values():
            assert g.stats is not None and g.stats.prompt_eval_count <= 3


def test_long_prompts_are_read_in_chunks_beside_running_streams(
    fixture_models: dict[str, Path],
) -> None:
    """num_batch 8: a 60-token prompt takes several steps to read, and the other
    sequence keeps decoding in those same steps; both answers are unchanged."""
    tiny_batch = dataclasses.replace(SMALL, n_batch=8)
    long_prompt = "abcdefghijklmnopqrstuvwxy" * 2 + "abcdefghij"
    with Engine(fixture_models["counter-f32.gguf"], tiny_batch, n_seq_max=2) as e:
        alone = e.generate(long_prompt, GREEDY).result()
        assert alone == expected_continuation(long_prompt)
        before = e.counters
        with paused(e):  # both join the same step
            runner = e.generate("abc", GREEDY)
            reader = e.generate(long_prompt, GREEDY)
        assert reader.result() == alone
        assert runner.result() == "defghijklmnopqrstuvwxyz"
        after = e.counters
    assert after.max_sequences_in_decode == 2
    assert after.tokens_decoded - before.tokens_decoded >= len(long_prompt)
    assert after.decode_ns > 0 and after.step_ns >= after.decode_ns


def test_quantized_kv_cache_generates_the_same_greedy_text(fixture_models) -> None:
    """KV_CACHE_TYPE q8_0 (with flash attention, which llama.cpp needs for a quantized V cache)."""
    load = LoadOptions(
        n_ctx=256,
        n_batch=64,
        n_threads=1,
        n_gpu_layers=0,
        main_gpu=0,
        use_mmap=True,
        flash_attn=True,
        kv_cache_type="q8_0",
    )
    with Engine(fixture_models["counter-f32.gguf"], load) as engine:
        assert engine.generate("abc", SamplingOptions(temperature=0)).result() == (
            "defghijklmnopqrstuvwxyz"
        )
