"""What libmtmd needs of a projector GGUF, as tables read from its source.

The tables are transcribed from the llama.cpp that llama-cpp-python **0.3.36** vendors
(``vendor/llama.cpp/tools/mtmd/clip-impl.h`` and ``clip.cpp``); ``LIBMTMD_VERSION`` names
it, and a test fails when the installed llama-cpp-python is another version, so a
bump re-reads these files:

- ``PROJECTOR_TYPES``: the names of ``PROJECTOR_TYPE_NAMES`` (clip-impl.h). Any other
  ``clip.projector_type`` makes ``clip_model_loader`` throw "unknown projector type".
- ``OUTPUT_WIDTH``: for each type whose output width is a tensor dimension, the tensor
  and dimension ``clip_n_mmproj_embd`` (clip.cpp) reads — the width mtmd compares with
  the text model's ``n_embd`` — under the GGUF name ``load_tensors`` gives it. Types
  not listed (their width is computed: qwen3vl's deepstack, granite's query blocks, …)
  get the type check only. ``clip.vision.projection_dim`` is *not* used: it is the
  vision tower's own projection (768 in llava-1.5's mmproj, whose output is 4096 wide).
- ``required_tensors``: for the llava graph (``mlp``, its ``mlp_norm`` variant, ``ldp``,
  ``ldpv2``; ``clip_graph_llava`` in models/llava.cpp) every tensor the graph or
  ``clip_n_mmproj_embd`` dereferences, including the ones ``load_tensors`` loads as
  optional — a missing one is a null pointer inside llama.cpp, a segfault. For the
  other types of ``OUTPUT_WIDTH``, the width tensor (a null there is the same crash).
- ``REQUIRED_KEYS``: the vision keys ``load_hparams`` reads as required (a missing one
  is a clean load error in llama.cpp; at build time it is a located one).

All checks read the header only (names and shapes of tensors, metadata): no tensor data.
"""

from __future__ import annotations

from dataclasses import dataclass

from mfc.gguf_meta import GGUFInfo, ProjectorFacts

LIBMTMD_VERSION = "0.3.36"  # llama-cpp-python release whose vendored llama.cpp these mirror

# clip-impl.h PROJECTOR_TYPE_NAMES, in its order.
PROJECTOR_TYPES: tuple[str, ...] = (
    "mlp",
    "ldp",
    "ldpv2",
    "resampler",
    "adapter",
    "qwen2vl_merger",
    "qwen2.5vl_merger",
    "qwen3vl_merger",
    "ling3vl",
    "step3vl",
    "gemma3",
    "gemma3nv",
    "gemma3na",
    "gemma4v",
    "gemma4a",
    "gemma4uv",
    "gemma4ua",
    "phi4",
    "idefics3",
    "pixtral",
    "ultravox",
    "internvl",
    "llama4",
    "qwen2a",
    "qwen3a",
    "glma",
    "qwen2.5o",
    "voxtral",
    "meralion",
    "musicflamingo",
    "lfm2",
    "kimivl",
    "paddleocr",
    "lightonocr",
    "cogvlm",
    "janus_pro",
    "dots_ocr",
    "dots3note_v",
    "dots3note_a",
    "deepseekocr",
    "deepseekocr2",
    "deepseek4v",
    "lfm2a",
    "glm4v",
    "glm5v",
    "youtuvl",
    "yasa2",
    "kimik25",
    "nemotron_v2_vl",
    "exaone4_5",
    "hunyuanvl",
    "minicpmv4_6",
    "granite_speech",
    "mimovl",
    "minimax_m3",
    "granite4_vision",
    "mimo_audio",
    "parakeet",
    "qwen3tts_spkenc",
    "qwen3tts_gen",
    "pockettts_spkenc",
    "pockettts_gen",
    "muse-glimmer",
)

# type -> (tensor, dimension in GGUF order: ne[0] first) whose size is the output width.
# "mlp_norm" is what clip.cpp turns "mlp" into when the file has mm.3.weight.
OUTPUT_WIDTH: dict[str, tuple[str, int]] = {
    "mlp": ("mm.2.weight", 1),
    "mlp_norm": ("mm.3.bias", 0),
    "ldp": ("mm.model.mb_block.1.block.2.1.bias", 0),
    "ldpv2": ("mm.model.peg.0.bias", 0),
    "resampler": ("resampler.proj.weight", 0),
    "adapter": ("adapter.linear.dense_4h_to_h.weight", 1),
    "qwen2vl_merger": ("mm.2.bias", 0),
    "qwen2.5vl_merger": ("mm.2.bias", 0),
    "exaone4_5": ("mm.2.bias", 0),
    "youtuvl": ("mm.2.bias", 0),
    "ling3vl": ("mm.2.bias", 0),
    "mimovl": ("mm.2.weight", 1),
    "minimax_m3": ("mm.merger.fc2.bias", 0),
    "muse-glimmer": ("mm.2.weight", 1),
    "step3vl": ("mm.model.fc.weight", 1),
    "gemma3": ("mm.input_projection.weight", 0),
    "gemma4v": ("mm.input_projection.weight", 1),
    "gemma4uv": ("mm.input_projection.weight", 1),
    "idefics3": ("mm.model.fc.weight", 1),
    "pixtral": ("mm.2.weight", 1),
    "lightonocr": ("mm.2.weight", 1),
    "dots_ocr": ("mm.2.weight", 1),
    "dots3note_v": ("mm.2.weight", 1),
    "lfm2": ("mm.2.weight", 1),
    "kimivl": ("mm.2.weight", 1),
    "paddleocr": ("mm.2.weight", 1),
    "kimik25": ("mm.2.weight", 1),
    "deepseek4v": ("mm.2.weight", 1),
    "glm4v": ("mm.down.weight", 1),
    "glm5v": ("mm.down.weight", 1),
}

# load_hparams' required vision keys (clip-impl.h KEY_* with prefix "vision").
REQUIRED_KEYS: tuple[str, ...] = (
    "clip.vision.embedding_length",
    "clip.vision.attention.head_count",
    "clip.vision.feed_forward_length",
    "clip.vision.block_count",
    "clip.vision.projection_dim",
    "clip.vision.attention.layer_norm_epsilon",
    "clip.vision.image_size",
    "clip.vision.patch_size",
    "clip.vision.image_mean",  # at least 3 values
    "clip.vision.image_std",
)

_LLAVA_PROJECTION: dict[str, tuple[str, ...]] = {
    "mlp": ("mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias"),
    "mlp_norm": (*(f"mm.{i}.{part}" for i in (0, 1, 3, 4) for part in ("weight", "bias")),),
    "ldp": (
        "mm.model.mlp.1.weight",
        "mm.model.mlp.1.bias",
        "mm.model.mlp.3.weight",
        "mm.model.mlp.3.bias",
        *(
            f"mm.model.mb_block.{b}.block.{name}"
            for b in (1, 2)
            for name in (
                "0.0.weight",
                "0.1.weight",
                "0.1.bias",
                "1.fc1.weight",
                "1.fc1.bias",
                "1.fc2.weight",
                "1.fc2.bias",
                "2.0.weight",
                "2.1.weight",
                "2.1.bias",
            )
        ),
    ),
    "ldpv2": (
        *(
            f"mm.model.{n}.{part}"
            for n in ("mlp.0", "mlp.2", "peg.0")
            for part in ("weight", "bias")
        ),
    ),
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason libmtmd would refuse (or crash on) a projector: what, and how to fix it."""

    what: str
    fix: str


def effective_type(facts: ProjectorFacts, info: GGUFInfo) -> str | None:
    """The type clip.cpp runs: ``mlp`` with an ``mm.3.weight`` becomes ``mlp_norm``."""
    kind = facts.projector_type
    if kind == "mlp" and any(t.name == "mm.3.weight" for t in info.tensors):
        return "mlp_norm"
    return kind


def type_problem(info: GGUFInfo) -> Problem | None:
    """The projector's type is one the installed libmtmd loads, for images."""
    facts = info.projector
    assert facts is not None
    kind = facts.projector_type
    if not kind:
        return Problem(
            "it names no projector type (`clip.projector_type`)",
            "convert it again with llama.cpp's convert_hf_to_gguf.py --mmproj; an old llava "
            "projector needs `clip.projector_type` = `mlp` (Ollama writes that key on "
            "create, mfc stores inputs unchanged)",
        )
    if kind not in PROJECTOR_TYPES:
        return Problem(
            f"its projector type `{kind}` is not one libmtmd {LIBMTMD_VERSION} knows",
            "use a projector converted for this llama.cpp, or a llama-cpp-python whose "
            "libmtmd supports it",
        )
    if not facts.has_vision_encoder:
        return Problem(
            "it has no vision encoder (`clip.has_vision_encoder` is not true)",
            "mfc sends images only: use the model's image projector",
        )
    return None


def output_width(info: GGUFInfo) -> int | None:
    """The width of the embeddings the projector produces, where ``OUTPUT_WIDTH`` knows it."""
    facts = info.projector
    if facts is None:
        return None
    kind = effective_type(facts, info)
    where = OUTPUT_WIDTH.get(kind or "")
    if where is None:
        return None
    name, dim = where
    tensor = info.tensor_map().get(name)
    if tensor is None or len(tensor.shape) <= dim:
        return None
    return tensor.shape[dim]


def required_tensors(info: GGUFInfo) -> tuple[str, ...]:
    """The tensors the graph of this projector's type needs (see the module docstring)."""
    facts = info.projector
    assert facts is not None
    kind = effective_type(facts, info) or ""
    needed: list[str] = []
    if kind in _LLAVA_PROJECTION:
        needed += ["v.patch_embd.weight", "v.position_embd.weight"]
        n_layer = facts.block_count or 0
        # clip_graph_llava runs the layers below the deepest feature layer (default: all
        # but the last); load_tensors requires attn_out and the ffn of every layer
        deepest = max(facts.feature_layers, default=-1)
        run = deepest if deepest >= 0 else n_layer - 1
        names = {t.name for t in info.tensors}
        for il in range(n_layer):
            prefix = f"v.blk.{il}."
            if il < run:
                needed += [prefix + f"attn_{x}.weight" for x in ("q", "k", "v")]
            needed.append(prefix + "attn_out.weight")
            if prefix + "ffn_gate_exps.weight" not in names:
                needed += [prefix + "ffn_up.weight", prefix + "ffn_down.weight"]
        needed += _LLAVA_PROJECTION[kind]
    elif kind in OUTPUT_WIDTH:
        needed.append(OUTPUT_WIDTH[kind][0])
    return tuple(needed)


def missing_parts(info: GGUFInfo) -> tuple[list[str], list[str]]:
    """(required keys missing, required tensors missing) of a projector of a known type."""
    facts = info.projector
    assert facts is not None
    keys = []
    for key in REQUIRED_KEYS:
        value = facts.value(key) if facts.has_key(key) else None
        if not facts.has_key(key) or (key.endswith(("_mean", "_std")) and _short(value)):
            keys.append(key)
    names = {t.name for t in info.tensors}
    return keys, [n for n in required_tensors(info) if n not in names]


def _short(value: object) -> bool:
    return not isinstance(value, list) or len(value) < 3
