"""Helpers shared by the builder tests (imported as `build_helpers`)."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from mfc.diagnostics.span import Span
from mfc.modelfile.spec import AdapterRef, BaseRef, Message, ModelSpec, Param, ParamValue, Text


def span(line: int, file: str = "Modelfile", width: int = 10) -> Span:
    return Span(file, line, 1, line, 1 + width)


def make_spec(
    base: str,
    *,
    adapters: tuple[tuple[str, float], ...] = (),
    params: dict[str, ParamValue] | None = None,
    template: str | None = None,
    system: str | None = None,
    licenses: tuple[str, ...] = (),
    messages: tuple[tuple[str, str], ...] = (),
    build_args: dict[str, str] | None = None,
    source: str = "Modelfile",
) -> ModelSpec:
    """A checked Modelfile as the front-end would produce it; line N+1 is instruction N."""
    line = iter(range(1, 1000))
    return ModelSpec(
        source=source,
        base=BaseRef(base, span(next(line), source)),
        adapters=tuple(AdapterRef(p, s, span(next(line), source)) for p, s in adapters),
        parameters=tuple(Param(k, v, span(next(line), source)) for k, v in (params or {}).items()),
        template=Text(template, span(next(line), source)) if template is not None else None,
        system=Text(system, span(next(line), source)) if system is not None else None,
        licenses=tuple(Text(t, span(next(line), source)) for t in licenses),
        messages=tuple(Message(r, c, span(next(line), source)) for r, c in messages),
        build_args=tuple(sorted((build_args or {}).items())),
    )


def write_split(directory: Path, stem: str = "m") -> list[Path]:
    """A real 3-shard split GGUF set written by gguf-py's splitting writer."""
    directory.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(directory / f"{stem}.gguf", "llama", split_max_tensors=1)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_tensor("token_embd.weight", np.zeros((10, 8), dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight", np.ones((8, 8), dtype=np.float32))
    w.add_tensor("output.weight", np.ones((10, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return sorted(directory.glob(f"{stem}-*-of-*.gguf"))


def write_projector(
    path: Path,
    *,
    width: int = 128,
    projector_type: str | None = "mlp",
    drop: tuple[str, ...] = (),
    general_type: str | None = "mmproj",
) -> Path:
    """A small llava-style ("mlp") projector GGUF, header-correct for the builder's checks
    (its weights are zeros: these tests never run it). ``width``: mm.2's output width;
    ``drop``: tensors or keys to leave out."""
    d, hidden, patch, image = 8, 16, 4, 8
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(path, "clip")
    kv: dict[str, object] = {
        "clip.has_vision_encoder": True,
        "clip.projector_type": projector_type,
        "clip.vision.image_size": image,
        "clip.vision.patch_size": patch,
        "clip.vision.embedding_length": d,
        "clip.vision.feed_forward_length": d,
        "clip.vision.block_count": 1,
        "clip.vision.attention.head_count": 1,
        "clip.vision.attention.layer_norm_epsilon": 1e-5,
        "clip.vision.projection_dim": d,
        "clip.vision.image_mean": [0.5, 0.5, 0.5],
        "clip.vision.image_std": [0.5, 0.5, 0.5],
    }
    if general_type is not None:
        w.add_type(general_type)
    for key, value in kv.items():
        if key in drop or value is None:
            continue
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        elif isinstance(value, list):
            w.add_array(key, value)
        else:
            w.add_string(key, str(value))
    n_pos = (image // patch) ** 2
    tensors = {
        "v.patch_embd.weight": np.zeros((d, 3, patch, patch), dtype=np.float32),
        "v.position_embd.weight": np.zeros((n_pos, d), dtype=np.float32),
        "v.blk.0.attn_out.weight": np.zeros((d, d), dtype=np.float32),
        "v.blk.0.ffn_up.weight": np.zeros((d, d), dtype=np.float32),
        "v.blk.0.ffn_down.weight": np.zeros((d, d), dtype=np.float32),
        "mm.0.weight": np.zeros((hidden, d), dtype=np.float32),
        "mm.0.bias": np.zeros((hidden,), dtype=np.float32),
        "mm.2.weight": np.zeros((width, hidden), dtype=np.float32),
        "mm.2.bias": np.zeros((width,), dtype=np.float32),
    }
    for name, array in tensors.items():
        if name not in drop:
            w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
