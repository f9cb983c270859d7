"""FROM a model of a registry that is not local: pull it into the store, then use it.

Tried last (after the store and the registry cache), and only for a value that names its
registry: ``host[:port]/namespace/model[:tag][@sha256:…]``, the host spelled out (a first
part with a ``.`` or a ``:``, or ``localhost``). A bare ``counter`` or ``counter@sha256:…``
is never sent to ``registry.ollama.ai`` by a build: a typo in a local name must stay a
local MF202/MF203, quickly and offline, not a network request; spell the host out
(``registry.ollama.ai/library/counter@sha256:…``) to pull from Ollama's registry.

The pull is ``mfc.registry.pull.pull`` — the same verified, resumable transfer as
``mfc pull`` — and its progress becomes build events. The pulled model is then a local
model, so the lock records it as ``kind: model`` with its manifest digest and full name:
the lock says which image the build used, not where its bytes came from, and a second
machine that already has the model locally locks the same entry.

``--locked``: the tag is looked up on the registry first (the manifest only). When it now
names another manifest than the lock's, the build stops with MF210 naming both digests, and
nothing is downloaded; when it still names the locked one, that digest is what is pulled,
so the bytes are the locked bytes even if the tag moves mid-build.

Plain http is used for loopback hosts (as ``mfc pull`` does); a non-loopback plain-http
registry needs ``mfc pull --insecure NAME`` first, after which the store has the model.
Every registry failure is MF222 on the FROM line, never a traceback.
"""

from __future__ import annotations

from mfc.build.lockfile import LockedInput
from mfc.build.sources.base import Context, FromRef, Resolved
from mfc.build.sources.images import image_base
from mfc.build.sources.store import name_of
from mfc.diagnostics import codes
from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.registry.client import RegistryClient, RegistryError, auth_for
from mfc.registry.progress import Event, LayerProgress, Progress
from mfc.registry.pull import fetch_image, pull
from mfc.registry.reference import Reference
from mfc.store.store import StoreError


def names_registry(ref: str) -> bool:
    """Whether ``ref`` spells out a registry host (``host[:port]/namespace/model…``)."""
    parts = ref.split("@", 1)[0].split("/")
    first = parts[0]
    return len(parts) == 3 and ("." in first or ":" in first or first == "localhost")


def resolve(req: FromRef, ctx: Context) -> Resolved:
    if not names_registry(req.ref):
        return None
    name, digest = name_of(req)
    if name is None:  # `@sha256:` alone has no host; names_registry refused it already
        return None
    ref = Reference(name, digest)
    locked = _locked_digest(req, ctx)
    try:
        if locked is not None and digest is None:
            current = _current_digest(ref)
            if current != locked:
                raise codes.LOCK_DRIFT.error(
                    f"--locked: FROM {req.ref}: locked {locked}, now resolves to {current}",
                    req.span,
                    label="the tag moved on the registry",
                    hint=f"`{name.display}` on the registry {name.host} names another model "
                    "than the lock; rebuild without --locked to update the lockfile",
                )
            ref = Reference(name, locked)  # pull exactly the locked bytes
        ctx.events.step(f"pulling {ref} from the registry {name.host}")
        result = pull(ctx.store, ref, progress=_to_build_events(ctx))
    except DiagnosticError:
        raise
    except (RegistryError, StoreError, OSError) as exc:
        raise codes.PULL_FAILED.error(
            f"FROM `{req.ref}`: cannot pull it from the registry {name.host}",
            req.span,
            label="not local, and the pull failed",
            hint=f"{exc}; pull it when the registry is reachable (`mfc pull {ref}`), or "
            "vendor it for offline builds (`mfc pull --to registry_cache "
            f"{ref}`)",
        ) from None
    ctx.events.info(f"pulled {name.display} {result.digest}")
    try:
        manifest = ctx.store.read_manifest(name)
    except StoreError as exc:
        raise codes.BAD_BASE.error(
            f"FROM `{req.ref}`: the pulled model is unreadable", req.span, hint=str(exc)
        ) from None
    entry = LockedInput(
        "FROM", req.ref, "model", manifest.digest, name=str(ctx.store.resolve(name))
    )
    return image_base(ctx.store, ctx.cache, manifest, entry, req.span)


def _locked_digest(req: FromRef, ctx: Context) -> str | None:
    """The digest ``--locked`` pins this FROM to (the lock's entry for the same text)."""
    base = ctx.locked_base
    if base is None or base.instruction != "FROM" or base.ref != req.ref:
        return None
    return base.digest


def _current_digest(ref: Reference) -> str:
    """The digest the registry's tag names now (the manifest only, no blobs)."""
    with RegistryClient(ref.host, False, auth_for(ref.host)) as client:
        return fetch_image(client, ref).manifest.digest


def _to_build_events(ctx: Context) -> Progress:
    """A registry ``Progress`` that reports through the build's events: a step per layer
    (``pulling 1a2b3c4d5e6f``, Ollama's naming) and its bytes."""
    started: set[str] = set()

    def report(event: Event) -> None:
        if isinstance(event, LayerProgress):
            if event.digest not in started:
                started.add(event.digest)
                ctx.events.step(event.status)
            ctx.events.bytes_read(event.status, event.total)(event.completed)

    return report
