"""One way a manifest's blobs enter the store from elsewhere: ``import_manifest``.

Used by ``mfc load`` (an OCI layout), the builder's registry-cache import and ``mfc pull``
(a registry). Whatever the source, the rules are the same: a blob already stored with the
right size is reused; any other blob is fetched by the source, which must hash it while
writing it (``Store.put_*`` with ``expected``, or a verified download) so no bad bytes are
ever visible under a digest name; the sizes must match the manifest; the manifest is written
last, its exact bytes, under the store lock — all while ``Store.building()`` keeps ``gc``
away from blobs nothing references yet.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

from mfc.store.blobio import Blob
from mfc.store.manifest import Descriptor, Manifest
from mfc.store.names import ModelName
from mfc.store.store import Store, StoreError


class BlobImportError(StoreError):
    """A source served a blob that does not match the manifest (size or digest)."""


class BlobSource(Protocol):
    """Where the blobs come from; ``label`` names it in errors ("the layout x.tar",
    "the registry example.com")."""

    @property
    def label(self) -> str: ...

    def fetch(self, store: Store, desc: Descriptor) -> Blob:
        """Put the blob into ``store``, verified against ``desc.digest``; return it."""
        ...


def import_blobs(
    store: Store,
    descriptors: Collection[Descriptor],
    source: BlobSource,
    *,
    skip: Collection[str] = (),
    present: Callable[[Descriptor], None] | None = None,
) -> None:
    """Fetch every descriptor's blob the store lacks (``skip``: digests not wanted).

    ``present(desc)`` is called for each blob already stored (a pull reports it as done).
    The caller holds ``store.building()`` until the blobs are referenced."""
    for d in descriptors:
        if d.digest in skip:
            continue
        if store.has_blob(d.digest, d.size):
            if present is not None:
                present(d)
            continue
        try:
            blob = source.fetch(store, d)
        except BlobImportError:
            raise
        except StoreError as exc:
            raise BlobImportError(
                f"{source.label}: blob {d.digest} ({d.media_type}): {exc}"
            ) from None
        if blob.digest != d.digest:
            raise BlobImportError(
                f"{source.label}: blob {d.digest} ({d.media_type}) hashes to {blob.digest}"
            )
        if blob.size != d.size:
            raise BlobImportError(
                f"{source.label}: blob {d.digest} is {blob.size} bytes, the manifest says {d.size}"
            )


def import_manifest(
    store: Store,
    manifest: Manifest,
    source: BlobSource,
    name: ModelName | str,
    *,
    present: Callable[[Descriptor], None] | None = None,
    before_write: Callable[[], None] | None = None,
) -> Manifest:
    """Import every blob ``manifest`` references, then name it ``name``.

    The manifest's own bytes (``Manifest.raw`` when it was read from somewhere) are what
    gets written, so its digest — the model ID — is the source's. ``before_write`` runs
    after the blobs and before the manifest (a pull reports its steps there)."""
    with store.building():
        import_blobs(store, list(manifest.descriptors()), source, present=present)
        if before_write is not None:
            before_write()
        store.write_manifest(name, manifest)
    return manifest
