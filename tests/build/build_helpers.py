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
