"""Put a stored model into a test registry without ``mfc push``: the distribution API by hand.

Each blob is uploaded monolithically (POST, then PUT ``?digest=`` on the Location, keeping its
query: distribution keeps upload state there) and the manifest is PUT with its own media type
as Content-Type and the store's exact bytes, so the registry's digest is the model ID.
"""

from __future__ import annotations

import httpx

from mfc.store.manifest import Manifest
from mfc.store.store import Store


def upload_blob(url: str, repository: str, digest: str, data: bytes) -> None:
    if httpx.head(f"{url}/v2/{repository}/blobs/{digest}").status_code == 200:
        return
    start = httpx.post(f"{url}/v2/{repository}/blobs/uploads/")
    start.raise_for_status()
    location = httpx.URL(url).join(start.headers["Location"])
    put = httpx.put(location.copy_merge_params({"digest": digest}), content=data, timeout=120)
    put.raise_for_status()


def put_manifest(url: str, repository: str, tag: str, manifest: Manifest) -> str:
    data = manifest.to_bytes()
    r = httpx.put(
        f"{url}/v2/{repository}/manifests/{tag}",
        content=data,
        headers={"Content-Type": manifest.media_type},
    )
    r.raise_for_status()
    return r.headers["Docker-Content-Digest"]


def seed(url: str, store: Store, name: str, repository: str, tag: str) -> str:
    """Upload ``name``'s blobs and manifest as ``repository:tag``; returns the digest."""
    manifest = store.read_manifest(name)
    for d in manifest.descriptors():
        upload_blob(url, repository, d.digest, store.read_blob(d.digest))
    return put_manifest(url, repository, tag, manifest)
