"""Logprobs and the grammar fast path on real llama.cpp (the counter fixture, whose logits are
known exactly: the successor scores 10, every other token 0)."""

from __future__ import annotations

import dataclasses
import json
import queue
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mfc.runtime.engine import Engine
from mfc.runtime.options import LoadOptions, SamplingOptions
from mfc.runtime.structured import grammar_for
from mfc.server import protocol
from mfc.server.runner import serve
from mfc.testing import counter

GREEDY = SamplingOptions(temperature=0.0)
SMALL = LoadOptions(n_ctx=512, n_batch=512, n_threads=1, n_gpu_layers=0, main_gpu=0, use_mmap=True)
SCHEMA = {
    "type": "object",
    "properties": {
        "kind": {"enum": ["cat", "dog"]},
        "tags": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3},
        "name": {"type": "string", "maxLength": 6},
    },
    "required": ["kind", "tags", "name"],
}


def greedy(**changes: Any) -> SamplingOptions:
    return dataclasses.replace(GREEDY, **changes)


@pytest.fixture(scope="module")
def engine(fixture_models: dict[str, Path]) -> Iterator[Engine]:
    with Engine(fixture_models["counter-f32.gguf"], SMALL) as e:
        yield e


@pytest.fixture(scope="module")
def reference(fixture_models: dict[str, Path]) -> Iterator[Engine]:
    """The grammar applied to every candidate at every token (no fast path)."""
    with Engine(fixture_models["counter-f32.gguf"], SMALL, grammar_fast_path=False) as e:
        yield e


def log_softmax(logits: np.ndarray) -> np.ndarray:
    peak = logits.max()
    return logits - (peak + np.log(np.exp(logits - peak).sum()))


class Items:
    """A sink recording the engine's items in order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []
        self.done = threading.Event()

    def put(self, item: tuple[str, Any], /) -> None:
        self.items.append(item)
        if item[0] in ("done", "error"):
            self.done.set()


# -- logprobs -----------------------------------------------------------------------------------


def test_greedy_token_is_the_top_logprob(engine: Engine) -> None:
    gen = engine.generate("abc", greedy(num_predict=8), logprobs=True, top_logprobs=5)
    text = gen.result()
    assert text == "defghijk"
    assert [e["token"] for e in gen.logprobs] == list(text)
    for entry in gen.logprobs:
        top = entry["top_logprobs"]
        assert len(top) == 5
        values = [t["logprob"] for t in top]
        assert values == sorted(values, reverse=True)
        assert (top[0]["token"], top[0]["logprob"]) == (entry["token"], entry["logprob"])
        for t in (entry, *top):
            # byte tokens hold part of a character: their text shows U+FFFD
            assert bytes(t["bytes"]).decode("utf-8", "replace") == t["token"]


def test_logprobs_are_the_log_softmax_of_the_raw_logits(engine: Engine) -> None:
    # temperature and penalties change the sampling, not the reported distribution (Ollama)
    sampling = greedy(num_predict=3, repeat_penalty=1.5, temperature=0.0)
    gen = engine.generate("m", sampling, logprobs=True, top_logprobs=2)
    assert gen.result() == "nop"
    last = counter.char_token("m")
    for entry, char in zip(gen.logprobs, "nop", strict=True):
        expected = log_softmax(counter.reference_logits(last))
        token = counter.char_token(char)
        assert entry["logprob"] == pytest.approx(expected[token], abs=1e-4)
        assert entry["logprob"] == pytest.approx(
            10 - np.log(np.exp(10) + counter.n_vocab() - 1), abs=1e-4
        )
        # the runner-up scores 0: log-softmax with margin 10
        assert entry["top_logprobs"][1]["logprob"] == pytest.approx(expected.min(), abs=1e-4)
        last = token


def test_logprobs_cost_nothing_unless_asked(engine: Engine) -> None:
    sink = Items()
    engine.generate("abc", greedy(num_predict=5), out=sink)
    sink.done.wait(10)
    assert not [kind for kind, _ in sink.items if kind == "logprobs"]
    gen = engine.generate("abc", greedy(num_predict=5), logprobs=True)
    gen.result()
    assert len(gen.logprobs) == 5
    assert all("top_logprobs" not in e for e in gen.logprobs)


def test_logprobs_precede_the_text_of_their_tokens(engine: Engine) -> None:
    # "ghx" holds "g" and "h" back (a possible stop string) until "i" releases "ghi"
    sink = Items()
    engine.generate("c", greedy(num_predict=8, stop=("ghx",)), out=sink, logprobs=True)
    assert sink.done.wait(10)
    pieces = []
    for (kind, value), (next_kind, text) in zip(sink.items, sink.items[1:], strict=False):
        if kind == "logprobs":
            assert next_kind == "text"
            assert "".join(e["token"] for e in value) == text
            pieces.append(text)
    assert pieces == ["d", "e", "f", "ghi", "j", "k"]


def test_a_stop_string_drops_the_logprobs_of_its_tokens(engine: Engine) -> None:
    gen = engine.generate("abc", greedy(stop=("gh",)), logprobs=True)
    assert gen.result() == "def"
    assert [e["token"] for e in gen.logprobs] == ["d", "e", "f"]


def test_the_end_token_has_no_entry(engine: Engine) -> None:
    gen = engine.generate("x", GREEDY, logprobs=True)
    assert gen.result() == "yz"
    assert [e["token"] for e in gen.logprobs] == ["y", "z"]


@pytest.mark.parametrize("top", [-1, 21])
def test_top_logprobs_is_0_to_20(engine: Engine, top: int) -> None:
    with pytest.raises(ValueError, match="between 0 and 20"):
        engine.generate("abc", GREEDY, logprobs=True, top_logprobs=top)


def test_the_runner_sends_logprobs_in_texts_items(fixture_models: dict[str, Path]) -> None:
    ours, theirs = socket.socketpair()
    thread = threading.Thread(target=serve, args=(theirs,), daemon=True)
    thread.start()
    frames: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()

    def read() -> None:
        while (msg := protocol.recv(ours)) is not None:
            frames.put(msg)

    threading.Thread(target=read, daemon=True).start()
    try:
        path = str(fixture_models["counter-f32.gguf"])
        load = dataclasses.asdict(SMALL)
        ours.sendall(protocol.encode({"op": "load", "model_path": path, "load": load}))
        assert frames.get(timeout=30)["t"] == "loaded"
        sampling = {"temperature": 0.0, "num_predict": 4}
        request = {"op": "generate", "id": 7, "prompt": "abc", "sampling": sampling}
        ours.sendall(protocol.encode({**request, "logprobs": True, "top_logprobs": 2}))
        items = []
        while (msg := frames.get(timeout=30))["t"] != "done":
            assert msg["t"] == "texts"
            items.extend(msg["items"])
        assert [(i[0], i[1]) for i in items] == [(7, c) for c in "defg"]
        for item in items:
            (entry,) = item[2]
            assert entry["token"] == item[1] and len(entry["top_logprobs"]) == 2
        ours.sendall(
            protocol.encode({"op": "generate", "id": 8, "prompt": "abc", "sampling": sampling})
        )
        plain = []
        while (msg := frames.get(timeout=30))["t"] != "done":
            plain.extend(msg["items"])
        assert plain == [[8, c] for c in "defg"]
    finally:
        ours.sendall(protocol.encode({"op": "exit"}))
        thread.join(30)
        ours.close()


# -- the grammar fast path ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", SCHEMA], ids=["json", "schema"])
@pytest.mark.parametrize("prompt", ["abc", "{", "[", "0", "c", '"'])
def test_fast_path_matches_grammar_first_greedy(
    engine: Engine, reference: Engine, fmt: Any, prompt: str
) -> None:
    grammar = grammar_for(fmt)
    sampling = greedy(num_predict=120, repeat_penalty=1.3, presence_penalty=0.5)
    fast = engine.generate(prompt, sampling, grammar=grammar)
    slow = reference.generate(prompt, sampling, grammar=grammar)
    assert fast.result() == slow.result()
    assert fast.stats is not None and slow.stats is not None
    assert fast.stats.done_reason == slow.stats.done_reason


def test_fast_path_sampling_stays_in_the_grammar(engine: Engine) -> None:
    grammar = grammar_for(SCHEMA)
    finished = 0
    for seed in range(12):
        sampling = SamplingOptions(temperature=1.5, seed=seed, num_predict=200)
        gen = engine.generate("abc", sampling, grammar=grammar)
        text = gen.result()
        assert gen.stats is not None
        if gen.stats.done_reason == "stop":
            finished += 1
            value = json.loads(text)
            assert value["kind"] in ("cat", "dog") and 1 <= len(value["tags"]) <= 3
    assert finished


def test_fast_path_sampling_is_reproducible_with_a_seed(engine: Engine) -> None:
    grammar = grammar_for(SCHEMA)
    sampling = SamplingOptions(temperature=1.0, seed=42, num_predict=60)
    first = engine.generate("abc", sampling, grammar=grammar).result()
    assert engine.generate("abc", sampling, grammar=grammar).result() == first


def test_constrained_generations_decode_together(fs_engine: Engine) -> None:
    grammar = grammar_for(SCHEMA)
    sampling = greedy(num_predict=80)
    solo = fs_engine.generate("abc", sampling, grammar=grammar).result()
    gens = [
        fs_engine.generate(p, sampling, grammar=grammar if p == "abc" else None)
        for p in ("abc", "m", "abc")
    ]
    outs = [g.result() for g in gens]
    assert outs == [solo, counter.expected_continuation("m"), solo]


@pytest.fixture(scope="module")
def fs_engine(fixture_models: dict[str, Path]) -> Iterator[Engine]:
    with Engine(fixture_models["counter-f32.gguf"], SMALL, n_seq_max=3) as e:
        yield e
