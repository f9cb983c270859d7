"""FROM a model in the local store: ``name``, ``name@sha256:<hex>`` (that name, pinned), or
``@sha256:<hex>`` (any local model with that manifest digest)."""

from __future__ import annotations

from mfc.build.lockfile import LockedInput
from mfc.build.sources.base import Context, FromRef, Miss, Resolved
from mfc.build.sources.images import image_base
from mfc.diagnostics import codes
from mfc.store.names import InvalidNameError, ModelName, parse_ref
from mfc.store.store import ModelNotFoundError, StoreError


def name_of(req: FromRef) -> tuple[ModelName | None, str | None]:
    """(name, digest) of a FROM value that is not a path; MF202 when it is not a name either."""
    try:
        return parse_ref(req.ref)
    except InvalidNameError as exc:
        raise codes.UNRESOLVED_FROM.error(
            f"FROM `{req.ref}` is not an existing file and not a model name",
            req.span,
            hint=f"{exc}; for a file, check the path (relative to {req.base_dir})",
        ) from None


def resolve(req: FromRef, ctx: Context) -> Resolved:
    name, digest = name_of(req)
    store = ctx.store
    if name is None:  # `FROM @sha256:<hex>`: any local model with that manifest
        for entry in store.list_models():
            if entry.digest == digest:
                # no name: which local names share the digest differs between machines,
                # and the lock must not (the digest alone says what was built on)
                locked = LockedInput("FROM", req.ref, "model", digest)
                return image_base(store, ctx.cache, entry.manifest, locked, req.span)
        return Miss(f"the store {store.root}: no model has digest {digest}")
    if req.tag is not None and digest is None and name.matches(req.tag):
        return Miss(
            f"the store {store.root}: skipped, `{name.display}` is the model being "
            "built (its previous build)",
            self_reference=True,
        )
    try:
        manifest = store.read_manifest(name)
    except ModelNotFoundError:
        return Miss(f"the store {store.root}: no model `{name.display}`")
    except StoreError as exc:
        raise codes.BAD_BASE.error(
            f"FROM `{req.ref}`: the local model is unreadable", req.span, hint=str(exc)
        ) from None
    if digest is not None and manifest.digest != digest:
        return Miss(
            f"the store {store.root}: `{name.display}` is {manifest.digest}",
            digest_mismatch=True,
        )
    locked = LockedInput("FROM", req.ref, "model", manifest.digest, name=str(store.resolve(name)))
    return image_base(store, ctx.cache, manifest, locked, req.span)
