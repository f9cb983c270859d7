"""What `mfc show` tells about a model, and the Modelfile that rebuilds it.

Facts come from the config blob (what mfc or Ollama recorded at build time);
for models whose config lacks them (older Ollama builds), from the model
GGUF's header, read by ``mfc.gguf_meta`` (no tensor data, no vocabulary decoded).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from mfc.gguf_meta import GGUFFormatError, inspect
from mfc.store import media_types as mt
from mfc.store.manifest import Manifest
from mfc.store.names import ModelName
from mfc.store.store import Store, StoreError, adapter_scales, read_config

# Config keys Ollama (and the builder) use for REQUIRES / RENDERER / PARSER.
_EXTRA_INSTRUCTIONS = (("requires", "REQUIRES"), ("renderer", "RENDERER"), ("parser", "PARSER"))


@dataclass(frozen=True)
class AdapterInfo:
    digest: str
    size: int
    scale: float


@dataclass(frozen=True)
class ModelDetails:
    name: ModelName
    manifest: Manifest
    config: dict[str, Any]
    architecture: str | None
    parameters: str | None  # e.g. "8.0B"
    context_length: int | None
    embedding_length: int | None
    quantization: str | None  # e.g. "Q4_K_M"
    adapters: tuple[AdapterInfo, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    licenses: tuple[str, ...] = ()
    messages: tuple[dict[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name.display,
            "id": self.manifest.digest,
            "size": self.manifest.size,
            "details": {
                "architecture": self.architecture,
                "parameters": self.parameters,
                "context_length": self.context_length,
                "embedding_length": self.embedding_length,
                "quantization": self.quantization,
            },
            "adapters": [
                {"digest": a.digest, "size": a.size, "scale": a.scale} for a in self.adapters
            ],
            "parameters": self.params,
            "template": self.template,
            "system": self.system,
            "license": list(self.licenses),
            "messages": list(self.messages),
            "manifest": self.manifest.to_json(),
            "config": self.config,
        }


def _text(store: Store, digest: str) -> str:
    return store.read_blob(digest).decode("utf-8")


def _json_layer(store: Store, digest: str, kind: type) -> Any:
    try:
        value = json.loads(store.read_blob(digest))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"layer {digest} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise StoreError(f"layer {digest} is not a JSON {kind.__name__}")
    return value


def _gguf_facts(store: Store, manifest: Manifest) -> dict[str, Any]:
    """Header facts from the model GGUF, for configs that do not record them."""
    model = manifest.layer(mt.MODEL)
    if model is None:
        return {}
    try:
        info = inspect(store.blob_path(model.digest))
    except (GGUFFormatError, StoreError):  # not a GGUF we can read: show what the config has
        return {}
    return {
        "model_family": info.architecture,
        "context_length": info.context_length,
        "embedding_length": info.embedding_length,
    }


def describe(store: Store, name: ModelName | str) -> ModelDetails:
    resolved = store.resolve(name)
    manifest = store.read_manifest(resolved)
    config = read_config(store, manifest)
    facts = dict(config)
    if any(facts.get(k) is None for k in ("model_family", "context_length", "embedding_length")):
        for key, value in _gguf_facts(store, manifest).items():
            if facts.get(key) is None:
                facts[key] = value
    scales = adapter_scales(config, manifest)  # by position: one adapter may appear twice
    adapters = tuple(
        AdapterInfo(d.digest, d.size, scale)
        for d, (_, scale) in zip(manifest.layers_of(mt.ADAPTER), scales, strict=True)
    )
    params_layer = manifest.layer(mt.PARAMS)
    template = manifest.layer(mt.TEMPLATE)
    system = manifest.layer(mt.SYSTEM)
    messages_layer = manifest.layer(mt.MESSAGES)
    return ModelDetails(
        name=resolved,
        manifest=manifest,
        config=config,
        architecture=facts.get("model_family") or None,
        parameters=facts.get("model_type") or None,
        context_length=facts.get("context_length"),
        embedding_length=facts.get("embedding_length"),
        quantization=facts.get("file_type") or None,
        adapters=adapters,
        params=_json_layer(store, params_layer.digest, dict) if params_layer else {},
        template=_text(store, template.digest) if template else None,
        system=_text(store, system.digest) if system else None,
        licenses=tuple(_text(store, d.digest) for d in manifest.layers_of(mt.LICENSE)),
        messages=tuple(_json_layer(store, messages_layer.digest, list) if messages_layer else ()),
    )


# -- Modelfile rendering ---------------------------------------------------------


class UnrepresentableError(StoreError):
    """A layer value no Modelfile quoting can hold (Modelfiles have no escapes)."""


def _line(keyword: str, value: str, **kw: Any) -> str:
    from mfc.modelfile.format import UnrepresentableValue, render_instruction

    try:
        return render_instruction(keyword, value, **kw)
    except (UnrepresentableValue, ValueError) as exc:
        raise UnrepresentableError(f"cannot write {keyword} {value[:40]!r}…: {exc}") from None


def format_number(value: int | float) -> str:
    """Numbers that parse back to the same value: ints in full, floats by repr.

    The parameter table's printer, plus a refusal of inf/nan (no Modelfile reads them back).
    """
    from mfc.modelfile.params import format_param_value

    if isinstance(value, float) and not math.isfinite(value):
        raise UnrepresentableError(f"cannot write {value!r} as a parameter")
    return format_param_value(value)


def _param_lines(params: dict[str, Any]) -> list[str]:
    lines = []
    for key in sorted(params):
        value = params[key]
        values = value if isinstance(value, list) else [value]
        for v in values:
            text = format_number(v) if isinstance(v, (int, float)) else str(v)
            lines.append(_line("PARAMETER", text, name=key))
    return lines


def _check_representable(details: ModelDetails) -> None:
    """Refuse images a Modelfile cannot rebuild rather than print one that builds
    something else: FROM names one blob by path, so a split model's other shards
    and a projector layer would be silently dropped."""
    m = details.manifest
    lost = []
    shards = len(m.layers_of(mt.MODEL))
    if shards > 1:
        lost.append(f"its model is split into {shards} GGUF shards")
    projectors = len(m.layers_of(mt.PROJECTOR))
    if projectors:
        lost.append("it has a projector layer" + ("s" if projectors > 1 else ""))
    if lost:
        name = details.name.display
        raise UnrepresentableError(
            f"cannot write a Modelfile that rebuilds `{name}`: {' and '.join(lost)}, which a"
            f" Modelfile cannot name by path; to build on it, start a Modelfile with"
            f" `FROM {name}@{m.digest}`; to copy it elsewhere, use `mfc save -o FILE.tar {name}`"
        )


def render_modelfile(store: Store, details: ModelDetails) -> str:
    """A Modelfile that, built again, gives the same model (same digest).

    FROM names the model blob by path (its digest is in the file name); every
    other layer's content is written out, quoted by ``mfc.modelfile.format``;
    build args recorded in the config come back as ``ARG NAME=value``.
    """
    m = details.manifest
    model = m.layer(mt.MODEL)
    _check_representable(details)
    lines = [
        f'# Modelfile generated by "mfc show" for {details.name.display} ({m.digest})',
        f"# To build a new model based on this one, replace FROM with: FROM {details.name.display}",
        "",
    ]
    mfc_meta = details.config.get("mfc")
    build_args = mfc_meta.get("build_args") if isinstance(mfc_meta, dict) else None
    if isinstance(build_args, dict):
        for key in sorted(build_args):
            lines.append(_line("ARG", f"{key}={build_args[key]}"))
    if model is not None:
        lines.append(_line("FROM", str(store.blob_path(model.digest))))
    for a in details.adapters:
        flags = () if a.scale == 1.0 else (f"--scale={format_number(a.scale)}",)
        lines.append(_line("ADAPTER", str(store.blob_path(a.digest)), flags=flags))
    if details.template is not None:
        lines.append(_line("TEMPLATE", details.template))
    if details.system is not None:
        lines.append(_line("SYSTEM", details.system))
    lines.extend(_param_lines(details.params))
    for message in details.messages:
        lines.append(_line("MESSAGE", message.get("content", ""), role=message.get("role", "user")))
    for text in details.licenses:
        lines.append(_line("LICENSE", text))
    for key, instruction in _EXTRA_INSTRUCTIONS:
        value = details.config.get(key)
        if isinstance(value, str) and value:
            lines.append(_line(instruction, value))
    return "\n".join(lines) + "\n"
