"""Pure assembly of layer contents and the config blob.

No I/O: everything here maps values to values, so the rules that decide a
model's digest (inheritance, parameter merging, config fields) are testable
without a store. Config and params are canonical JSON (see ``canonical_json``)
and carry no timestamps, paths or host details: the same inputs give the same
bytes on every machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mfc.gguf_meta import GGUFInfo, parameter_count_label
from mfc.modelfile.spec import Message, Param, ParamValue
from mfc.store import media_types
from mfc.store.manifest import Descriptor


@dataclass(frozen=True, slots=True)
class AdapterUse:
    """One applied adapter: its layer and the scale the runtime applies it with."""

    layer: Descriptor
    scale: float


def param_json_value(value: ParamValue) -> Any:
    return list(value) if isinstance(value, tuple) else value


def merge_params(base: Mapping[str, Any], params: Iterable[Param]) -> dict[str, Any]:
    """Per key, the Modelfile wins; a list value (``stop``) replaces the base's list whole."""
    merged = dict(base)
    for p in params:
        merged[p.name] = param_json_value(p.value)
    return merged


def messages_json(messages: Iterable[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def order_layers(layers: Iterable[Descriptor]) -> tuple[Descriptor, ...]:
    """LAYER_ORDER, keeping the relative order of several adapters/licenses."""
    return tuple(sorted(layers, key=lambda d: media_types.layer_rank(d.media_type)))


def config_json(
    info: GGUFInfo,
    layers: tuple[Descriptor, ...],
    adapters: tuple[AdapterUse, ...],
    build_args: Mapping[str, str],
    extras: Mapping[str, str],
) -> dict[str, Any]:
    """The config blob: Ollama's fields plus mfc's provenance.

    ``extras`` carries REQUIRES/RENDERER/PARSER (Ollama keeps them in the config
    too). Provenance holds only what the layers cannot say themselves — adapter
    scales and build args — so the Modelfile ``mfc show --modelfile`` prints
    rebuilds to the same digest.
    """
    config: dict[str, Any] = {
        "model_format": "gguf",
        "model_family": info.architecture or "",
        "model_families": [info.architecture] if info.architecture else [],
        "model_type": parameter_count_label(info.parameter_count),
        "file_type": info.file_type,
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
        "mfc": {
            "adapters": [{"digest": a.layer.digest, "scale": a.scale} for a in adapters],
            "build_args": dict(sorted(build_args.items())),
        },
    }
    if info.context_length is not None:
        config["context_length"] = info.context_length
    if info.embedding_length is not None:
        config["embedding_length"] = info.embedding_length
    for key, value in sorted(extras.items()):
        config[key] = value
    return config
