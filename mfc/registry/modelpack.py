"""mfc's image as a CNCF ModelPack artifact, and back (docs/registry.md "ModelPack").

ModelPack (github.com/modelpack/model-spec) is what Docker Model Runner (``docker model
package --format cncf``), KitOps and modctl write, and what CRI-O mounts as plain files
through Kubernetes image volumes. It is an OCI image manifest with ``artifactType``
``application/vnd.cncf.model.manifest.v1+json``, a ``…model.config.v1+json`` config and
layers typed weight / weight config / doc, each carrying the file path it unpacks to.

``LAYERS`` is the one mapping. A push (``to_modelpack``) sends the *same* blobs under those
types and paths, plus a new ModelPack config blob; mfc's own config blob (Ollama's fields and
mfc's provenance: adapter scales, build args) rides along as the layer ``ollama-config.json``,
so pulling the artifact back gives the original manifest byte for byte — the same model ID.
A pull (``from_modelpack``) of an artifact some other tool wrote maps its GGUF weights and
known files by path (else by type) and synthesises a config blob from the ModelPack config;
layers with no mfc counterpart (README, tokenizer files, code, datasets) are not imported.
Both directions are pure: bytes in, bytes out, sorted-key JSON, no timestamps — the same
model always gives the same ModelPack digest.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mfc.store import media_types as mt
from mfc.store.manifest import Descriptor, Manifest, canonical_json, is_digest, sha256_digest


class ModelPackError(ValueError):
    """An artifact mfc cannot translate: not GGUF, malformed, or a layer with no mapping."""


@dataclass(frozen=True)
class LayerMapping:
    """One row: an mfc (Ollama) layer type ↔ a ModelPack layer type and file path.

    ``filepath`` is for the first layer of the type; the n-th (n ≥ 2) of a repeatable type
    (adapters, licenses) gets ``-n`` before the extension: ``adapter-2.gguf``, ``LICENSE-2``."""

    ollama: str
    modelpack: str
    filepath: str

    def path(self, index: int) -> str:
        if index == 0:
            return self.filepath
        stem, ext = posixpath.splitext(self.filepath)
        return f"{stem}-{index + 1}{ext}"


LAYERS: tuple[LayerMapping, ...] = (
    LayerMapping(mt.MODEL, mt.MODELPACK_WEIGHT, "model.gguf"),
    LayerMapping(mt.PROJECTOR, mt.MODELPACK_WEIGHT, "mmproj.gguf"),
    LayerMapping(mt.ADAPTER, mt.MODELPACK_WEIGHT, "adapter.gguf"),
    LayerMapping(mt.TEMPLATE, mt.MODELPACK_WEIGHT_CONFIG, "template"),
    LayerMapping(mt.SYSTEM, mt.MODELPACK_WEIGHT_CONFIG, "system.txt"),
    LayerMapping(mt.PARAMS, mt.MODELPACK_WEIGHT_CONFIG, "params.json"),
    LayerMapping(mt.MESSAGES, mt.MODELPACK_WEIGHT_CONFIG, "messages.json"),
    LayerMapping(mt.LICENSE, mt.MODELPACK_DOC, "LICENSE"),
    # Not a layer in mfc's image: its config blob, carried so the round trip is exact.
    LayerMapping(mt.CONFIG, mt.MODELPACK_WEIGHT_CONFIG, "ollama-config.json"),
)
_BY_OLLAMA = {row.ollama: row for row in LAYERS}

MAX_CONFIG_BYTES = 1 << 20  # a ModelPack config is a few hundred bytes; read into memory

# Layer types a pull reads as GGUF weights, and ones that are weights mfc cannot run.
_GGUF_WEIGHTS = (mt.MODELPACK_WEIGHT, mt.DOCKER_AI_GGUF)
_PACKED_WEIGHTS = tuple(
    mt.MODELPACK_WEIGHT.replace(".raw", s) for s in (".tar", ".tar+gzip", ".tar+zstd")
)
_LICENSES = (mt.MODELPACK_DOC, mt.DOCKER_AI_LICENSE)
CONFIG_TYPES = (mt.MODELPACK_CONFIG, mt.DOCKER_AI_CONFIG)


def is_modelpack(manifest: Manifest, raw: Mapping[str, Any]) -> bool:
    """A ModelPack (or Docker Model Runner) artifact rather than an Ollama image."""
    return manifest.config.media_type in CONFIG_TYPES or raw.get("artifactType") in (
        mt.MODELPACK_ARTIFACT,
    )


# -- push ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelPack:
    """A translated artifact: the manifest and the new config blob (every layer is a blob
    the store already holds)."""

    manifest: bytes
    config: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)


def to_modelpack(manifest: Manifest, config: Mapping[str, Any]) -> ModelPack:
    """The ModelPack form of an mfc image (``config``: its config blob, parsed).

    Raises ModelPackError for a layer type the table has no row for (a newer Ollama's)."""
    counts: dict[str, int] = {}
    layers: list[dict[str, Any]] = []
    for desc in (*manifest.layers, manifest.config):
        row = _BY_OLLAMA.get(desc.media_type)
        if row is None or (desc is not manifest.config and row.ollama == mt.CONFIG):
            raise ModelPackError(
                f"layer {desc.digest} has the type `{desc.media_type}`, which has no"
                " ModelPack counterpart"
            )
        index = counts.get(row.ollama, 0)
        counts[row.ollama] = index + 1
        path = row.path(index)
        layers.append(
            {
                "mediaType": row.modelpack,
                "digest": desc.digest,
                "size": desc.size,
                "annotations": {mt.OCI_TITLE: path, mt.MODELPACK_FILEPATH: path},
            }
        )
    family = _str(config.get("model_family"))
    model_config = {
        "format": _str(config.get("model_format")) or "gguf",
        "paramSize": _str(config.get("model_type")),
        "quantization": _str(config.get("file_type")),
        "architecture": family,
    }
    config_bytes = canonical_json(
        {
            "descriptor": {"family": family} if family else {},
            "config": {k: v for k, v in model_config.items() if v},
            "modelfs": {"type": "layers", "diffIds": [layer["digest"] for layer in layers]},
        }
    )
    manifest_bytes = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": mt.MODELPACK_ARTIFACT,
            "config": {
                "mediaType": mt.MODELPACK_CONFIG,
                "digest": sha256_digest(config_bytes),
                "size": len(config_bytes),
            },
            "layers": layers,
        }
    )
    return ModelPack(manifest_bytes, config_bytes)


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


# -- pull ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Imported:
    """An artifact as an mfc image: the manifest to write, and blobs to add to the store
    first that the registry does not hold (a synthesised config; empty for mfc's own)."""

    manifest: Manifest
    blobs: tuple[bytes, ...] = ()


def parse_config(data: bytes) -> dict[str, Any]:
    """A ModelPack (or Docker Model Runner) config blob as a dict."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelPackError(f"the ModelPack config is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ModelPackError("the ModelPack config is not a JSON object")
    return obj


def from_modelpack(raw: Mapping[str, Any], config: Mapping[str, Any]) -> Imported:
    """The mfc image for a ModelPack manifest (``raw``: its JSON; ``config``: its config
    blob, parsed). Raises ModelPackError when the weights are not GGUF — before anything
    is fetched, so a refused pull writes nothing."""
    section = config.get("config")
    model_config: Mapping[str, Any] = section if isinstance(section, dict) else {}
    fmt = _str(model_config.get("format")).lower()
    if fmt and fmt != "gguf":
        raise ModelPackError(
            f"the model's format is `{model_config.get('format')}`; mfc runs GGUF weights only"
        )
    layers_obj = raw.get("layers")
    if not isinstance(layers_obj, list):
        raise ModelPackError("manifest `layers` missing or not an array")
    mapped: list[Descriptor] = []
    own_config: Descriptor | None = None
    for i, item in enumerate(layers_obj):
        if not isinstance(item, dict):
            raise ModelPackError(f"manifest `layers[{i}]`: expected an object")
        digest, size, media_type = item.get("digest"), item.get("size"), item.get("mediaType")
        if not is_digest(digest) or not isinstance(size, int) or isinstance(size, bool):
            raise ModelPackError(f"manifest `layers[{i}]`: bad `digest` or `size`")
        annotations = item.get("annotations")
        notes: Mapping[str, Any] = annotations if isinstance(annotations, dict) else {}
        path = _str(notes.get(mt.MODELPACK_FILEPATH)) or _str(notes.get(mt.OCI_TITLE))
        ollama = _ollama_type(_str(media_type), path, bool(fmt))
        if ollama is None:
            continue
        if ollama == mt.CONFIG:
            own_config = Descriptor(mt.CONFIG, digest, size)
        else:
            mapped.append(Descriptor(ollama, digest, size))
    if not any(d.media_type == mt.MODEL for d in mapped):
        raise ModelPackError("the artifact has no GGUF weights (no `model.gguf` layer)")
    if own_config is not None:  # pushed by mfc: the layers are already in mfc's order
        return Imported(Manifest(own_config, tuple(mapped)))
    layers = tuple(sorted(mapped, key=lambda d: mt.layer_rank(d.media_type)))
    blob = _synthesised_config(model_config, config, layers)
    return Imported(
        Manifest(Descriptor(mt.CONFIG, sha256_digest(blob), len(blob)), layers), (blob,)
    )


def _ollama_type(media_type: str, path: str, gguf_declared: bool) -> str | None:
    """The mfc layer type for one ModelPack layer, None to leave it out."""
    name = posixpath.basename(path)
    if media_type in _PACKED_WEIGHTS:
        raise ModelPackError(
            f"the weights `{path or media_type}` are packed as `{media_type}`; mfc runs raw"
            f" GGUF weights (`{mt.MODELPACK_WEIGHT}` or `{mt.DOCKER_AI_GGUF}`) only"
        )
    if media_type in _GGUF_WEIGHTS:
        is_gguf = name.lower().endswith(".gguf") or (
            not name and (gguf_declared or media_type == mt.DOCKER_AI_GGUF)
        )
        if not is_gguf and not name:
            raise ModelPackError(
                "a weight layer has no file path and the config does not say `format: gguf`;"
                " mfc runs GGUF only"
            )
        if not is_gguf:
            raise ModelPackError(f"the weights `{path}` are not a GGUF file; mfc runs GGUF only")
        for row in (_BY_OLLAMA[mt.PROJECTOR], _BY_OLLAMA[mt.ADAPTER]):
            if _matches(row, name) or (row.ollama == mt.PROJECTOR and "mmproj" in name.lower()):
                return row.ollama
        return mt.MODEL
    if media_type == mt.MODELPACK_WEIGHT_CONFIG:
        for row in LAYERS:
            if row.modelpack == media_type and _matches(row, name):
                return row.ollama
        return None  # tokenizer.json, generation_config.json, …: not used with GGUF
    if media_type in _LICENSES:
        upper = name.upper()
        return (
            mt.LICENSE
            if media_type == mt.DOCKER_AI_LICENSE or upper.startswith("LICENSE")
            else None
        )
    return None  # README, code, datasets: no mfc counterpart


def _matches(row: LayerMapping, name: str) -> bool:
    """``name`` is the row's path or its n-th variant (``adapter-2.gguf``)."""
    if name == row.filepath:
        return True
    stem, ext = posixpath.splitext(row.filepath)
    rest = name[len(stem) + 1 : len(name) - len(ext)] if ext else name[len(stem) + 1 :]
    return name.startswith(stem + "-") and name.endswith(ext) and rest.isdigit()


def _synthesised_config(
    model_config: Mapping[str, Any], config: Mapping[str, Any], layers: tuple[Descriptor, ...]
) -> bytes:
    """An Ollama config blob for an artifact another tool wrote, from what its ModelPack
    config says (the runtime reads the rest from the GGUF itself)."""
    descriptor = config.get("descriptor")
    family = _str(descriptor.get("family")) if isinstance(descriptor, dict) else ""
    family = family or _str(model_config.get("architecture"))
    return canonical_json(
        {
            "model_format": "gguf",
            "model_family": family,
            "model_families": [family] if family else [],
            "model_type": _str(model_config.get("paramSize"))
            or _str(model_config.get("parameters")),
            "file_type": _str(model_config.get("quantization")),
            "rootfs": {"type": "layers", "diff_ids": [d.digest for d in layers]},
        }
    )
