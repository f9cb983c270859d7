"""``mfc pull`` and ``/api/pull``: a model from an OCI registry into the store, verified.

Steps, with Ollama's progress words: ``pulling manifest`` (GET with Accept for Docker v2
schema 2, OCI manifest and OCI index; an index resolves to the manifest for this platform,
else the first image manifest; over 4 MiB or malformed — e.g. a layer digest that is not
``sha256:<64 hex>`` — is refused before anything is written), then ``pulling <12 hex>`` per
blob (blobs the store has are reported done without a request; the rest download through
``mfc.registry.transfer``, hashed as they arrive), ``verifying sha256 digest`` (already done
by the transfer's hasher — the step is reported for Ollama's clients, it reads nothing),
``writing manifest`` (the registry's exact bytes, so the model ID is the pushed digest) and
``success``. A CNCF ModelPack artifact (or Docker Model Runner's) is translated by
``mfc.registry.modelpack`` after its small config blob is read into memory: the manifest
written is mfc's (Docker v2, Ollama layer types, the same layer blobs); for one mfc pushed it
is the original manifest again, byte for byte. The blobs and manifest go in through
``mfc.store.importing.import_manifest``, the same path as ``mfc load``.
"""

from __future__ import annotations

import json
import platform
import threading
import time
from dataclasses import dataclass
from typing import Any

from mfc.digest import is_digest, of_bytes
from mfc.registry.client import (
    RegistryClient,
    RegistryError,
    auth_for,
    get_manifest,
    get_small_blob,
)
from mfc.registry.modelpack import (
    MAX_CONFIG_BYTES,
    Imported,
    ModelPackError,
    from_modelpack,
    is_modelpack,
    parse_config,
)
from mfc.registry.progress import LayerProgress, Progress, Status, silent
from mfc.registry.reference import Reference, parse_reference
from mfc.registry.transfer import TransferOptions, download
from mfc.store import media_types as mt
from mfc.store.blobio import Blob
from mfc.store.importing import import_manifest
from mfc.store.manifest import Descriptor, Manifest, ManifestError
from mfc.store.names import ModelName
from mfc.store.store import Store

_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT = ", ".join((mt.MANIFEST, mt.OCI_MANIFEST, mt.OCI_INDEX, _DOCKER_LIST))
_INDEXES = (mt.OCI_INDEX, _DOCKER_LIST)
_PROGRESS_EVERY = 0.1  # seconds between LayerProgress events of one blob


@dataclass(frozen=True)
class PullResult:
    name: ModelName
    digest: str  # the manifest's: the model ID
    size: int  # config + layers
    downloaded: int  # bytes of blobs that were not in the store


def _media_type(data: bytes, header: str) -> str:
    try:
        obj = json.loads(data)
    except ValueError:
        obj = None
    declared = obj.get("mediaType") if isinstance(obj, dict) else None
    if isinstance(declared, str) and declared:
        return declared
    if isinstance(obj, dict) and isinstance(obj.get("manifests"), list):
        return mt.OCI_INDEX
    return header or mt.MANIFEST


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _choose(index: Any, where: str) -> dict[str, Any]:
    """The index entry for this platform, else the first image manifest."""
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list):
        raise RegistryError(f"{where}: the index has no `manifests` array")
    images = [
        e
        for e in entries
        if isinstance(e, dict) and e.get("mediaType") in (mt.MANIFEST, mt.OCI_MANIFEST)
    ]
    for e in images:
        plat = e.get("platform")
        if (
            isinstance(plat, dict)
            and plat.get("os") == "linux"
            and plat.get("architecture") == _arch()
        ):
            return e
    if not images:
        raise RegistryError(f"{where}: the index lists no image manifest")
    return images[0]


def fetch_image(client: RegistryClient, ref: Reference) -> Imported:
    """The manifest ``ref`` names (through an index if need be), parsed and checked; a
    ModelPack artifact comes back translated to mfc's image, with the blobs the translation
    made up (its config). Nothing is written yet."""
    where = f"{ref.repository}:{ref.reference} on the registry {client.host}"
    data, header = get_manifest(client, ref.repository, ref.reference, ACCEPT)
    if ref.digest is not None and of_bytes(data) != ref.digest:
        raise RegistryError(f"{where}: the manifest hashes to {of_bytes(data)}, not {ref.digest}")
    media_type = _media_type(data, header)
    if media_type in _INDEXES:
        entry = _choose(json.loads(data), where)
        digest = entry.get("digest")
        if not is_digest(digest):
            raise RegistryError(f"{where}: an index entry's digest is not `sha256:<64 hex>`")
        data, header = get_manifest(client, ref.repository, digest, ACCEPT)
        if of_bytes(data) != digest:
            raise RegistryError(f"{where}: manifest {digest} hashes to {of_bytes(data)}")
        media_type = _media_type(data, header)
    if media_type not in (mt.MANIFEST, mt.OCI_MANIFEST):
        raise RegistryError(f"{where}: `{media_type}` is not an image manifest mfc can pull")
    try:
        manifest = Manifest.from_bytes(data)
    except ManifestError as exc:
        raise RegistryError(f"{where}: invalid manifest: {exc}") from None
    raw = json.loads(data)
    if not is_modelpack(manifest, raw):
        return Imported(manifest)
    config = get_small_blob(client, ref.repository, manifest.config.digest, MAX_CONFIG_BYTES)
    try:
        return from_modelpack(raw, parse_config(config))
    except ModelPackError as exc:
        raise RegistryError(f"{where}: a ModelPack artifact mfc cannot pull: {exc}") from None


class _RegistrySource:
    """``BlobSource`` for import_manifest: each blob via the parallel, verified transfer."""

    def __init__(
        self,
        client: RegistryClient,
        ref: Reference,
        options: TransferOptions,
        progress: Progress,
        made: tuple[bytes, ...] = (),
    ):
        self.client, self.ref, self.options, self.progress = client, ref, options, progress
        self.made = {of_bytes(b): b for b in made}  # blobs a translation made, not the registry's
        self.downloaded = 0

    @property
    def label(self) -> str:
        return f"the registry {self.client.host}"

    def fetch(self, store: Store, desc: Descriptor) -> Blob:
        if desc.digest in self.made:
            return store.put_bytes(self.made[desc.digest])
        last = [0.0]
        lock = threading.Lock()

        def report(completed: int) -> None:
            now = time.monotonic()
            with lock:
                if now - last[0] < _PROGRESS_EVERY and completed < desc.size:
                    return
                last[0] = now
            self.progress(LayerProgress("pulling", desc.digest, desc.size, completed))

        store.blobs_dir.mkdir(parents=True, exist_ok=True)
        blob = download(
            self.client,
            self.ref.repository,
            desc,
            store.root,
            store.blob_path(desc.digest),
            options=self.options,
            progress=report,
        )
        self.downloaded += desc.size
        return blob


def pull(
    store: Store,
    reference: str | Reference,
    *,
    insecure: bool = False,
    progress: Progress = silent,
    options: TransferOptions | None = None,
) -> PullResult:
    """Pull ``reference`` into ``store`` under its name (host included); see the module doc.

    Raises InvalidNameError for a bad name, RegistryError for what the registry did, and
    StoreError for the store's refusals."""
    ref = reference if isinstance(reference, Reference) else parse_reference(reference)
    opts = options or TransferOptions()
    progress(Status("pulling manifest"))
    with RegistryClient(ref.host, insecure, auth_for(ref.host, insecure=insecure)) as client:
        image = fetch_image(client, ref)
        manifest = image.manifest
        source = _RegistrySource(client, ref, opts, progress, image.blobs)

        def present(desc: Descriptor) -> None:
            progress(LayerProgress("pulling", desc.digest, desc.size, desc.size))

        def before_write() -> None:
            progress(Status("verifying sha256 digest"))
            progress(Status("writing manifest"))

        import_manifest(
            store, manifest, source, ref.name, present=present, before_write=before_write
        )
    progress(Status("success"))
    return PullResult(ref.name, manifest.digest, manifest.size, source.downloaded)
