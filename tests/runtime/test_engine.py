"""The engine on real llama.cpp with the counter fixtures (greedy decoding)."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from mfc.runtime.engine import Engine, EngineError, PromptTooLongError, json_grammar
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
