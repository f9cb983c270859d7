"""FROM an image of the registry cache: an OCI image layout of base models, vendored like a
dependency cache (where it is: ``mfc.build.locate.find_registry_cache``). The image's blobs
are copied into the store (each re-hashed); the image is not named in the store."""

from __future__ import annotations

from mfc.build.locate import find_registry_cache
from mfc.build.lockfile import LockedInput
from mfc.build.sources.base import Context, FromRef, Miss, Resolved
from mfc.build.sources.images import image_base
from mfc.build.sources.store import name_of
from mfc.diagnostics import codes
from mfc.store.store import StoreError


def resolve(req: FromRef, ctx: Context) -> Resolved:
    from mfc.store.oci_layout import LayoutError, OciLayout

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
            for d in manifest.descriptors():
                if store.has_blob(d.digest, d.size):
                    continue
                blob_file = layout.blob_path(d.digest)
                if blob_file is not None and blob_file.is_file():
                    # never "hard": the cache may be on another filesystem, or be edited
                    blob = store.put_file(blob_file, "auto", expected=d.digest)
                else:
                    with layout.open_blob(d.digest) as f:
                        blob = store.put_stream(f, expected=d.digest)
                if blob.size != d.size:
                    raise LayoutError(f"blob {d.digest} is {blob.size} bytes, not {d.size}")
    except (LayoutError, StoreError, OSError) as exc:
        raise codes.BAD_BASE.error(
            f"FROM `{req.ref}`: the registry cache image is unusable",
            req.span,
            hint=f"{cache_dir}: {exc}",
        ) from None
    locked = LockedInput("FROM", req.ref, "registry_cache", manifest.digest, name=str(name))
    return image_base(store, ctx.cache, manifest, locked, req.span)
