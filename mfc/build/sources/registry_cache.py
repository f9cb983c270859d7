"""FROM an image of the registry cache: an OCI image layout of base models, vendored like a
dependency cache (where it is: ``mfc.build.locate.find_registry_cache``). The image's blobs
are copied into the store (each re-hashed); the image is not named in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mfc.build.locate import find_registry_cache
from mfc.build.lockfile import LockedInput
from mfc.build.sources.base import Context, FromRef, Miss, Resolved
from mfc.build.sources.images import image_base
from mfc.build.sources.store import name_of
from mfc.diagnostics import codes
from mfc.store import media_types as mt
from mfc.store.importing import import_blobs
from mfc.store.manifest import Manifest
from mfc.store.oci_layout import LayoutError, OciLayout
from mfc.store.store import StoreError


def resolve(req: FromRef, ctx: Context) -> Resolved:

    name, digest = name_of(req)
    search = ctx.registry_cache
    cache_dir, how = find_registry_cache(
        search.explicit, req.base_dir, environ=search.environ, cwd=search.cwd
    )
    if cache_dir is None:
        return Miss(f"the registry cache: {how}")
    if not cache_dir.exists():
        return Miss(f"the registry cache {cache_dir} ({how}): does not exist")
    where = f"the registry cache {cache_dir} ({how})"
    store = ctx.store
    try:
        with OciLayout(cache_dir) as layout:
            if name is None:  # by digest alone
                matches = [e for e in layout.entries() if e.manifest.digest == digest]
                if not matches:
                    return Miss(f"{where}: no image has digest {digest}")
                entry = min(matches, key=lambda e: e.name.key)  # the same on every machine
                name, manifest = entry.name, entry.manifest
            else:
                found = layout.find(name)
                if found is None:
                    return Miss(f"{where}: no image `{name.display}`")
                manifest, _ = found
                if digest is not None and manifest.digest != digest:
                    return Miss(
                        f"{where}: `{name.display}` has another digest", digest_mismatch=True
                    )
            ctx.events.step(f"importing {name.display} from the registry cache")
            config = _config(layout, manifest)
            outside = _replaced_models(layout, manifest, config, ctx)
            # The config is read, not stored: nothing references it.
            import_blobs(store, manifest.layers, layout, skip=outside)
    except (LayoutError, StoreError, OSError) as exc:
        raise codes.BAD_BASE.error(
            f"FROM `{req.ref}`: the registry cache image is unusable",
            req.span,
            hint=f"{cache_dir}: {exc}",
        ) from None
    locked = LockedInput("FROM", req.ref, "registry_cache", manifest.digest, name=str(name))
    return image_base(store, ctx.cache, manifest, locked, req.span, outside=outside, config=config)


def _config(layout: OciLayout, manifest: Manifest) -> dict[str, Any]:
    import json

    from mfc.digest import of_bytes

    with layout.open_blob(manifest.config.digest) as f:
        data = f.read()
    if of_bytes(data) != manifest.config.digest:
        raise LayoutError(f"config blob {manifest.config.digest} does not match its digest")
    try:
        config = json.loads(data)
    except ValueError as exc:
        raise LayoutError(f"config blob {manifest.config.digest} is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise LayoutError(f"config blob {manifest.config.digest} is not a JSON object")
    return config


def _replaced_models(
    layout: OciLayout, manifest: Manifest, config: dict[str, Any], ctx: Context
) -> dict[str, Path]:
    """Model layers --quantize replaces, left in the cache (digest → verified blob file).

    The image's config says its file type; a model of another type is quantized from
    the cache's blob file (hashed once here, never copied), so the store gets only the
    quantized layer. A layout in a tar file, or a type that needs no quantizing: {}.
    """
    from mfc.store.blobio import hash_fd

    if ctx.quantize is None or config.get("file_type") in (None, ctx.quantize):
        return {}
    outside = {}
    for d in manifest.layers_of(mt.MODEL):
        path = layout.blob_path(d.digest)
        if path is None or not path.is_file() or ctx.store.has_blob(d.digest, d.size):
            return {}
        done = ctx.cache.quantized(d.digest, ctx.quantize)
        if done is not None and ctx.store.has_blob(done):  # a warm rebuild reads nothing
            outside[d.digest] = path
            continue
        with open(path, "rb", buffering=0) as f:
            blob = hash_fd(f.fileno(), ctx.events.bytes_read(f"hashing {d.digest[:19]}", d.size))
        if blob != (d.digest, d.size):
            raise LayoutError(f"blob {d.digest} does not match its digest (it hashes to {blob[0]})")
        outside[d.digest] = path
    return outside
