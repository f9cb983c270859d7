"""FROM resolution as a table: small resolvers, tried in the documented order (docs/build.md).

Each resolver (``base.Resolver``) returns the base it found (``ResolvedBase``, the same
value whatever the source), a ``Miss`` saying where it looked, or None when the value
is not its kind; it raises a located error when the value is its kind and wrong. The
first base wins; when every resolver misses, MF202/MF203/MF215 list every place
searched.

The order:

1. ``files`` — a GGUF file, a directory holding one, a split set;
2. ``modelfile`` — another Modelfile, built first (cycles are MF204);
3. ``path_only`` — a value that can only be a path (``mfc.modelfile.refs``) and does
   not exist is MF205 here: it is never tried as a name;
4. ``store`` — a local model: ``name``, ``name@sha256:…``, ``@sha256:…``;
5. ``registry_cache`` — an image of the vendored OCI layout;
6. ``registry`` — a name that spells out its registry host and is in neither: pulled
   into the store, then used like a local model (``sources.registry``).
"""

from __future__ import annotations

from mfc.build.sources import files, modelfile, registry, registry_cache, store
from mfc.build.sources.base import Context, FromRef, Miss, Resolved, ResolvedBase, Resolver
from mfc.diagnostics import codes
from mfc.modelfile.refs import looks_like_path

__all__ = ["RESOLVERS", "Context", "FromRef", "ResolvedBase", "resolve_from"]


def path_only(req: FromRef, ctx: Context) -> Resolved:
    """MF205 for a value that can only be a path, once the path resolvers found nothing."""
    if not looks_like_path(req.ref):
        return Miss(f"a file or directory {req.path}: does not exist")
    raise codes.INPUT_NOT_FOUND.error(
        f"FROM `{req.ref}`: no such file or directory",
        req.span,
        label="not found",
        hint=f"looked for {req.path}; paths are relative to the Modelfile's directory",
    )


RESOLVERS: tuple[tuple[str, Resolver], ...] = (
    ("file", files.resolve),
    ("modelfile", modelfile.resolve),
    ("path only", path_only),
    ("store", store.resolve),
    ("registry cache", registry_cache.resolve),
    ("registry", registry.resolve),
)


def resolve_from(
    req: FromRef, ctx: Context, resolvers: tuple[tuple[str, Resolver], ...] = RESOLVERS
) -> ResolvedBase:
    """The base ``req`` names: the first resolver's find; else a located error."""
    ctx.events.step(f"resolving FROM {req.ref}")
    misses: list[Miss] = []
    for _, resolver in resolvers:
        found = resolver(req, ctx)
        if isinstance(found, ResolvedBase):
            return found
        if found is not None:
            misses.append(found)
    raise _not_found(req, misses)


def _not_found(req: FromRef, misses: list[Miss]) -> Exception:
    places = "searched " + "; ".join(m.searched for m in misses) + "; "
    if any(m.digest_mismatch for m in misses):
        _, digest = store.name_of(req)
        return codes.DIGEST_MISMATCH.error(
            f"FROM `{req.ref}`: no model with digest {digest}",
            req.span,
            label="digest does not match",
            hint=f"{places}update the digest, or rebuild or load that exact model",
        )
    if any(m.self_reference for m in misses):
        name, _ = store.name_of(req)
        assert name is not None
        return codes.SELF_REFERENCE.error(
            f"FROM `{req.ref}` names the model being built, and no other source has it",
            req.span,
            hint=f"{places}to build on the current `{name.display}`, pin it: "
            f"`FROM {name.display}@sha256:<digest>` (see `mfc list`), or use another tag",
        )
    return codes.UNRESOLVED_FROM.error(
        f"FROM `{req.ref}` matches no file, Modelfile, local model or cached image",
        req.span,
        label="not found",
        hint=f"{places}build or load the model, or fix the name or path",
    )
