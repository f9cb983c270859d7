"""Helpers for store tests: stage small models with the store API alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mfc.store import Descriptor, Manifest, Store, canonical_json
from mfc.store import media_types as mt

StageFn = Callable[..., Manifest]


def stage(
    store: Store,
    name: str,
    model: Path,
    *,
    template: str | None = "{{ .Prompt }}",
    params: dict | None = None,
    adapters: tuple[tuple[Path, float], ...] = (),
    license_text: str | None = None,
    system: str | None = None,
) -> Manifest:
    """Write a model the way the builder lays it out (config + ordered layers)."""
    model_blob = store.put_file(model)
    layers = [Descriptor(mt.MODEL, *model_blob)]
    adapter_meta = []
    for path, scale in adapters:
        blob = store.put_file(path)
        layers.append(Descriptor(mt.ADAPTER, *blob))
        adapter_meta.append({"digest": blob.digest, "scale": scale})
    if template is not None:
        layers.append(Descriptor(mt.TEMPLATE, *store.put_bytes(template.encode())))
    if system is not None:
        layers.append(Descriptor(mt.SYSTEM, *store.put_bytes(system.encode())))
    if params:
        layers.append(Descriptor(mt.PARAMS, *store.put_bytes(canonical_json(params))))
    if license_text is not None:
        layers.append(Descriptor(mt.LICENSE, *store.put_bytes(license_text.encode())))
    config = {
        "model_format": "gguf",
        "model_family": "llama",
        "model_families": ["llama"],
        "model_type": "1M",
        "file_type": "F32",
        "context_length": 512,
        "embedding_length": 128,
        "mfc": {"adapters": adapter_meta, "build_args": {}},
    }
    config_blob = store.put_bytes(canonical_json(config))
    manifest = Manifest(Descriptor(mt.CONFIG, *config_blob), tuple(layers))
    store.write_manifest(name, manifest)
    return manifest


@pytest.fixture
def store(mfc_home: Path) -> Store:
    return Store(mfc_home)


@pytest.fixture
def counter(fixture_models: dict[str, Path]) -> Path:
    return fixture_models["counter-f32.gguf"]
