"""A base that is a model image already in the store (a local model, a dependency built
first, an image imported from the registry cache): its layers, config, parameters and
adapters, read in one place."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mfc.build.caches import BuildCache
from mfc.build.compose import AdapterUse
from mfc.build.inputs import not_gguf
from mfc.build.lockfile import LockedInput
from mfc.build.sources.base import ResolvedBase
from mfc.diagnostics import codes
from mfc.diagnostics.diagnostic import Diagnostic
from mfc.diagnostics.span import Span
from mfc.gguf_meta import GGUFFormatError, GGUFInfo, inspect, merge_split
from mfc.store import media_types as mt
from mfc.store.image import read_params
from mfc.store.manifest import Descriptor, Manifest
from mfc.store.store import Store, StoreError, adapter_scales, read_config


def read_image(
    store: Store, manifest: Manifest, config: Mapping[str, Any] | None = None
) -> tuple[Mapping[str, Any], dict[str, Any], tuple[AdapterUse, ...]]:
    """(config, parameters, adapters with scales) of a stored image, through the store's
    one image read model (``mfc.store.image``). StoreError for an unreadable config or
    params layer. ``config``: the config, when it is not in the store (a dependency's,
    one of the registry cache).
    """
    if config is None:
        config = read_config(store, manifest)
    params: dict[str, Any] = dict(read_params(store, manifest))
    scales = adapter_scales(config, manifest)  # paired by position
    adapters = tuple(
        AdapterUse(layer, scale)
        for layer, (_, scale) in zip(manifest.layers_of(mt.ADAPTER), scales, strict=True)
    )
    return config, params, adapters


def image_base(
    store: Store,
    cache: BuildCache,
    manifest: Manifest,
    locked: LockedInput,
    span: Span,
    warnings: tuple[Diagnostic, ...] = (),
    outside: Mapping[str, Path] | None = None,
    config: Mapping[str, Any] | None = None,
) -> ResolvedBase:
    """The base a stored image gives. ``outside``: model layers deliberately not stored
    (digest → a verified file holding them; --quantize replaces them). ``config``: the
    image's config when its blob is not stored (no manifest of the store references it)."""
    what = f"FROM `{locked.ref}`"
    outside = outside or {}
    missing = [
        d
        for d in (manifest.layers if config is not None else manifest.descriptors())
        if d.digest not in outside and not store.has_blob(d.digest, d.size)
    ]
    if missing:
        raise codes.BAD_BASE.error(
            f"{what}: the model's blobs are missing from the store",
            span,
            hint=f"missing {', '.join(d.digest for d in missing)}; "
            "run `mfc verify`, then rebuild or re-load the model",
        )
    models = manifest.layers_of(mt.MODEL)
    if not models:
        raise codes.BAD_BASE.error(
            f"{what}: the model image has no model layer",
            span,
            hint="rebuild that model from a Modelfile whose FROM names a GGUF file",
        )
    try:
        config, params, adapters = read_image(store, manifest, config)
    except StoreError as exc:
        raise codes.BAD_BASE.error(f"{what}: unreadable config", span, hint=str(exc)) from None
    return ResolvedBase(
        layers=manifest.layers,
        info=blob_info(store, cache, models, span, outside),
        locked=locked,
        config=config,
        params=params,
        adapters=adapters,
        manifest=manifest,
        model_files=tuple(outside.get(d.digest, store.blob_path(d.digest)) for d in models),
        stored=not any(d.digest in outside for d in models),
        warnings=warnings,
    )


def blob_info(
    store: Store,
    cache: BuildCache,
    models: tuple[Descriptor, ...],
    span: Span,
    outside: Mapping[str, Path] | None = None,
) -> GGUFInfo:
    """Header facts of stored model layers (merged for a split set), from the info cache."""
    infos = []
    for d in models:
        info = cache.gguf_info(d.digest)
        if info is None:
            try:
                info = inspect((outside or {}).get(d.digest) or store.blob_path(d.digest))
            except GGUFFormatError as exc:
                raise not_gguf(
                    f"the base model's blob {d.digest}",
                    exc,
                    span,
                    f"{exc.reason}; run `mfc verify`",
                ) from None
            cache.record_gguf_info(d.digest, info)
        infos.append(info)
    return infos[0] if len(infos) == 1 else merge_split(infos)
