"""Adapter validation: the checks llama.cpp makes when it loads a LoRA, done at build time."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mfc.build.adapters import adapter_problem
from mfc.gguf_meta import GGUFInfo, TensorInfo, inspect


@pytest.fixture(scope="module")
def base(fixture_models: dict[str, Path]) -> GGUFInfo:
    return inspect(fixture_models["counter-f32.gguf"])


def lora(tensors: dict[str, tuple[int, ...]], arch: str = "llama") -> GGUFInfo:
    return GGUFInfo(
        architecture=arch,
        general_type="adapter",
        adapter_type="lora",
        parameter_count=0,
        file_type="F32",
        context_length=None,
        embedding_length=None,
        chat_template=None,
        split_no=None,
        split_count=None,
        tensors=tuple(TensorInfo(n, s, "F32") for n, s in tensors.items()),
    )


@pytest.mark.parametrize("name", ["lora-constant.gguf", "lora-shift.gguf"])
def test_fixture_adapters_fit(fixture_models: dict[str, Path], base: GGUFInfo, name: str) -> None:
    assert adapter_problem(inspect(fixture_models[name]), base) is None


def test_other_architecture(fixture_models: dict[str, Path], base: GGUFInfo) -> None:
    problem = adapter_problem(inspect(fixture_models["lora-other-arch.gguf"]), base)
    assert problem is not None
    assert problem[0] == "the adapter is for architecture `qwen2` but the base model is `llama`"


def test_a_model_is_not_an_adapter(fixture_models: dict[str, Path], base: GGUFInfo) -> None:
    problem = adapter_problem(inspect(fixture_models["counter-f16.gguf"]), base)
    assert problem is not None
    assert problem[0] == "not a LoRA adapter: its `general.type` is `model`"


def test_shapes(base: GGUFInfo) -> None:
    out = base.tensor_map()["output.weight"].shape  # (n_embd, n_vocab)
    ok = {"output.weight.lora_a": (out[0], 4), "output.weight.lora_b": (4, out[1])}
    assert adapter_problem(lora(ok), base) is None

    wide = {"output.weight.lora_a": (out[0] + 1, 4), "output.weight.lora_b": (4, out[1])}
    problem = adapter_problem(lora(wide), base)
    assert problem is not None and "do not fit the base tensor" in problem[0]

    rank = {"output.weight.lora_a": (out[0], 4), "output.weight.lora_b": (8, out[1])}
    problem = adapter_problem(lora(rank), base)
    assert problem is not None and "rank 4 differs from lora_b rank 8" in problem[0]

    missing = {"blk.7.attn_q.weight.lora_a": (1, 1), "blk.7.attn_q.weight.lora_b": (1, 1)}
    problem = adapter_problem(lora(missing), base)
    assert problem is not None
    assert (
        problem[0]
        == "the adapter targets `blk.7.attn_q.weight`, which the base model does not have"
    )

    half = {"output.weight.lora_a": (out[0], 4)}
    problem = adapter_problem(lora(half), base)
    assert problem == ("the adapter tensor `output.weight.lora_b` is missing", "")

    problem = adapter_problem(lora({}), base)
    assert problem is not None and "no LoRA tensors" in problem[0]


def test_token_embd_is_transposed(base: GGUFInfo) -> None:
    emb = base.tensor_map()["token_embd.weight"].shape  # (n_embd, n_vocab)
    ok = {"token_embd.weight.lora_a": (4, emb[1]), "token_embd.weight.lora_b": (4, emb[0])}
    assert adapter_problem(lora(ok), base) is None


def test_unsupported_adapter_type(fixture_models: dict[str, Path], base: GGUFInfo) -> None:
    other = dataclasses.replace(inspect(fixture_models["lora-shift.gguf"]), adapter_type="alora2")
    problem = adapter_problem(other, base)
    assert problem is not None and "unsupported adapter type `alora2`" in problem[0]
