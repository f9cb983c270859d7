"""The projector rules: Ollama's detection, libmtmd's tables (tied to llama-cpp-python 0.3.36),
the width and required-tensor rules on real headers."""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import replace
from pathlib import Path

import pytest

from mfc import gguf_projector as rules
from mfc.gguf_meta import GGUFInfo, TensorInfo, inspect, is_projector_kv

CLIP_IMPL = Path("/work/src/llama_cpp_python-0.3.36/vendor/llama.cpp/tools/mtmd/clip-impl.h")


@pytest.mark.parametrize(
    "kv,expected",
    [
        ({"general_type": "mmproj"}, True),
        ({"general_type": "projector"}, True),
        ({"architecture": "gemma3", "vision_block_count": 27}, True),  # vision blocks only
        ({"architecture": "gemma3", "block_count": 26, "vision_block_count": 27}, False),
        ({"architecture": "clip", "has_vision_encoder": True}, True),
        ({"architecture": "clip", "has_audio_encoder": True}, True),
        ({"architecture": "clip"}, False),  # no encoder
        ({"architecture": "clip", "block_count": 2, "has_vision_encoder": True}, False),
        ({"architecture": "llama", "block_count": 2}, False),
        ({"general_type": "adapter"}, False),
    ],
)
def test_ollamas_projector_rule(kv: dict[str, object], expected: bool) -> None:
    args = {
        "general_type": None,
        "architecture": None,
        "block_count": None,
        "vision_block_count": None,
        "has_vision_encoder": False,
        "has_audio_encoder": False,
        **kv,
    }
    assert is_projector_kv(**args) is expected  # type: ignore[arg-type]


def test_tables_are_for_the_installed_llama_cpp_python() -> None:
    """The tables mirror one llama.cpp: a new llama-cpp-python means reading them again."""
    assert importlib.metadata.version("llama_cpp_python") == rules.LIBMTMD_VERSION


@pytest.mark.skipif(not CLIP_IMPL.is_file(), reason="the vendored llama.cpp source is not here")
def test_projector_types_are_clip_impl_names() -> None:
    text = CLIP_IMPL.read_text()
    table = text[text.index("PROJECTOR_TYPE_NAMES") :]
    table = table[: table.index("};")]
    names = re.findall(r'\{\s*PROJECTOR_TYPE_\w+,\s*"([^"]+)"\s*\}', table)
    assert tuple(names) == rules.PROJECTOR_TYPES


def test_width_table_names_known_types() -> None:
    assert set(rules.OUTPUT_WIDTH) <= {*rules.PROJECTOR_TYPES, "mlp_norm"}


def test_fixture_projectors(fixture_models: dict[str, Path]) -> None:
    good = inspect(fixture_models["vision-proj.gguf"])
    assert good.is_projector and good.projector is not None
    assert good.projector.projector_type == "mlp"
    assert rules.output_width(good) == 128
    assert rules.type_problem(good) is None
    assert rules.missing_parts(good) == ([], [])
    assert rules.output_width(inspect(fixture_models["vision-proj-wide.gguf"])) == 64
    missing = inspect(fixture_models["vision-proj-missing.gguf"])
    assert rules.missing_parts(missing) == ([], ["mm.0.weight"])
    assert not inspect(fixture_models["counter-f32.gguf"]).is_projector

    # the facts survive the build cache's JSON
    assert GGUFInfo.from_json(good.to_json()) == good


def _with_tensors(info: GGUFInfo, *extra: str) -> GGUFInfo:
    return replace(info, tensors=(*info.tensors, *(TensorInfo(n, (4,), "F32") for n in extra)))


def test_mlp_with_mm3_is_mlp_norm(fixture_models: dict[str, Path]) -> None:
    """clip.cpp turns `mlp` with an `mm.3.weight` into `mlp_norm`: other tensors, other width."""
    info = _with_tensors(inspect(fixture_models["vision-proj.gguf"]), "mm.3.weight")
    assert info.projector is not None
    assert rules.effective_type(info.projector, info) == "mlp_norm"
    _, missing = rules.missing_parts(info)
    assert missing == ["mm.1.weight", "mm.1.bias", "mm.3.bias", "mm.4.weight", "mm.4.bias"]
    assert rules.output_width(info) is None  # mm.3.bias is missing


def test_layers_the_llava_graph_runs_need_attention(fixture_models: dict[str, Path]) -> None:
    """With 3 blocks, llava runs blocks 0 and 1 (all but the last): their q/k/v are needed;
    an explicit feature layer decides instead."""
    info = inspect(fixture_models["vision-proj.gguf"])
    assert info.projector is not None
    three = replace(info, projector=replace(info.projector, block_count=3))
    needed = rules.required_tensors(three)
    assert "v.blk.1.attn_q.weight" in needed and "v.blk.2.attn_q.weight" not in needed
    assert "v.blk.2.ffn_down.weight" in needed
    first_only = replace(three, projector=replace(three.projector, feature_layers=(1,)))  # type: ignore[arg-type]
    needed = rules.required_tensors(first_only)
    assert "v.blk.0.attn_k.weight" in needed and "v.blk.1.attn_k.weight" not in needed
