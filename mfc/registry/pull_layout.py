"""``mfc pull --to DIR``: a model from a registry into an OCI image layout, not the store.

The layout is the one ``mfc save --dir`` writes and the builder's registry cache reads
(``oci-layout``, ``index.json`` naming each manifest with
``org.opencontainers.image.ref.name``, ``blobs/sha256/<hex>``), so a CI job can vendor
its bases once — ``mfc pull --to registry_cache host/ns/base:v1`` — and later builds
resolve ``FROM host/ns/base:v1`` from ``registry_cache/`` with no registry at all.

The blobs go through the same transfer as ``mfc pull`` (parallel parts, hashed as they
arrive, resumable): its partial files live in ``DIR/.mfc-partial/`` while a download runs
and the directory is removed once empty. A blob the layout already holds with the right
size is re-hashed, not downloaded (a layout is a plain directory that anyone may edit).
The manifest's exact bytes are written last of the blobs, then ``index.json`` — atomically,
keeping every other entry and replacing one of the same name — so an interrupted pull leaves
the previous index in place. One writer per layout at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from mfc.digest import hex_of, of_bytes, of_hash
from mfc.registry.client import RegistryClient, RegistryError, auth_for
from mfc.registry.progress import LayerProgress, Progress, Status, silent
from mfc.registry.pull import PullResult, fetch_image
from mfc.registry.reference import Reference, parse_reference
from mfc.registry.transfer import TransferOptions, download
from mfc.store import media_types as mt
from mfc.store.fsutil import atomic_write_bytes, fsync_dir
from mfc.store.manifest import Manifest, canonical_json
from mfc.store.names import InvalidNameError, parse_name
from mfc.store.store import StoreError

_PARTIAL_DIR = ".mfc-partial"


class LayoutTargetError(StoreError):
    """DIR cannot take the model: not empty and not an OCI layout, or a damaged index."""


def pull_to_layout(
    layout_dir: Path | str,
    reference: str | Reference,
    *,
    insecure: bool = False,
    progress: Progress = silent,
    options: TransferOptions | None = None,
) -> PullResult:
    """Pull ``reference`` into the OCI layout at ``layout_dir`` (created if need be).

    Raises InvalidNameError for a bad name, RegistryError for what the registry did and
    LayoutTargetError when the directory is not a layout to add to."""
    ref = reference if isinstance(reference, Reference) else parse_reference(reference)
    root = Path(layout_dir)
    entries = _existing_index(root)
    blob_dir = root / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    downloaded = 0
    progress(Status("pulling manifest"))
    with RegistryClient(ref.host, insecure, auth_for(ref.host, insecure=insecure)) as client:
        image = fetch_image(client, ref)  # a ModelPack artifact comes back as mfc's image
        manifest = image.manifest
        for made in image.blobs:  # blobs the translation made up (its config): not on the registry
            atomic_write_bytes(blob_dir / hex_of(of_bytes(made)), made)
        for desc in manifest.descriptors():
            target = blob_dir / hex_of(desc.digest)
            if _holds(target, desc.digest, desc.size):
                progress(LayerProgress("pulling", desc.digest, desc.size, desc.size))
                continue

            def report(completed: int, digest: str = desc.digest, total: int = desc.size) -> None:
                progress(LayerProgress("pulling", digest, total, completed))

            download(client, ref.repository, desc, root, target, options=options, progress=report)
            downloaded += desc.size
    progress(Status("verifying sha256 digest"))
    progress(Status("writing manifest"))
    atomic_write_bytes(blob_dir / hex_of(manifest.digest), manifest.to_bytes())
    fsync_dir(blob_dir)
    atomic_write_bytes(
        root / mt.OCI_LAYOUT_FILE, canonical_json({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION})
    )
    atomic_write_bytes(root / "index.json", _index_with(entries, ref, manifest))
    _drop_empty_partials(root)
    progress(Status("success"))
    return PullResult(ref.name, manifest.digest, manifest.size, downloaded)


def _existing_index(root: Path) -> list[dict[str, Any]]:
    """The manifests ``index.json`` lists now ([] for a new or empty directory)."""
    if not root.exists() or not any(p.name != _PARTIAL_DIR for p in root.iterdir()):
        return []
    if not (root / mt.OCI_LAYOUT_FILE).is_file():
        raise LayoutTargetError(
            f"{root} is not empty and not an OCI layout; choose an empty directory or a layout"
        )
    try:
        index = json.loads((root / "index.json").read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise LayoutTargetError(f"{root}/index.json is unreadable: {exc}") from None
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
        raise LayoutTargetError(f"{root}/index.json has no `manifests` array")
    return manifests


def _index_with(entries: list[dict[str, Any]], ref: Reference, manifest: Manifest) -> bytes:
    """``index.json`` with ``ref``'s entry added (an entry of the same name replaced)."""
    kept = [e for e in entries if not _names(e, ref)]
    kept.append(
        {
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": len(manifest.to_bytes()),
            "annotations": {mt.OCI_REF_NAME: ref.name.display},
        }
    )
    kept.sort(key=lambda e: str((e.get("annotations") or {}).get(mt.OCI_REF_NAME, "")))
    return canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": kept})


def _names(entry: dict[str, Any], ref: Reference) -> bool:
    annotations = entry.get("annotations")
    name = annotations.get(mt.OCI_REF_NAME) if isinstance(annotations, dict) else None
    if not isinstance(name, str):
        return False
    try:
        return parse_name(name).matches(ref.name)
    except InvalidNameError:
        return False


def _holds(path: Path, digest: str, size: int) -> bool:
    """Whether ``path`` is the blob (right size, and it hashes to ``digest``)."""
    try:
        if path.stat().st_size != size:
            return False
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError:
        return False
    return of_hash(h) == digest


def _drop_empty_partials(root: Path) -> None:
    partials = root / _PARTIAL_DIR
    with contextlib.suppress(OSError):  # another download still running there, or none
        partials.rmdir()


__all__ = ["LayoutTargetError", "RegistryError", "pull_to_layout"]
