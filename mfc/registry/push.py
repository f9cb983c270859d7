"""Push a model from the store to an OCI distribution registry (docs/registry.md "Push").

The registry gets the manifest bytes the store holds, unchanged, so the digest a user pulls
is the model ID they built (Ollama re-marshals its manifest, so its pushed digest can
differ from ``ollama list``'s). Per blob — the layers, then the config, as Ollama orders
them — the steps are:

1. ``HEAD`` the blob in the target repository: present → nothing to send;
2. else, if another repository of the same registry is known to hold it — another local
   name on that host whose manifest lists the blob, i.e. a model mfc pushed or pulled
   there — ask for a cross-repository mount (``POST …/uploads/?mount=&from=``; 201 = done,
   202 = the registry declined and handed out an upload session instead);
3. else upload: ``POST …/blobs/uploads/``, then ``PATCH`` chunks of ``chunk_size`` bytes with
   ``Content-Range: start-end`` to each response's ``Location`` (relative Locations resolved
   against the registry, their query — the registry's upload state — kept), then ``PUT
   ?digest=``; the registry checks the digest.

Then ``PUT`` the manifest with its own media type. ``format="modelpack"`` sends the same
blobs plus a ModelPack config blob, and PUTs the OCI manifest ``mfc.registry.modelpack``
translates the image to (``application/vnd.oci.image.manifest.v1+json``; its digest is the
artifact's, not the model ID). Progress uses Ollama's words:
"retrieving manifest", "pushing <12 hex>" with total/completed, "pushing manifest", "success".
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import httpx

from mfc.registry.client import RegistryClient, RegistryError, auth_for
from mfc.registry.modelpack import ModelPackError, to_modelpack
from mfc.registry.progress import LayerProgress, Progress, Status, silent
from mfc.store import Store
from mfc.store import media_types as mt
from mfc.store.manifest import Descriptor, Manifest, sha256_digest
from mfc.store.names import DEFAULT_HOST, ModelName, parse_name
from mfc.store.store import read_config

DEFAULT_CHUNK_SIZE = 32 * 1024 * 1024  # one PATCH; bounded memory, few round trips
_SEND_SLICE = 1024 * 1024  # progress granularity inside a chunk

PushFormat = Literal["ollama", "modelpack"]
FORMATS: tuple[PushFormat, ...] = ("ollama", "modelpack")


class UnsupportedRegistryError(RegistryError):
    """A registry mfc cannot push to: Ollama's own (its uploads need Ollama's key scheme)."""


def check_pushable(name: ModelName) -> None:
    """Refuse ``registry.ollama.ai`` before any network I/O: it accepts uploads only with
    requests signed by an Ollama account key, which mfc does not implement."""
    if name.host.lower() == DEFAULT_HOST:
        raise UnsupportedRegistryError(
            f"cannot push {name.display} to {DEFAULT_HOST}: its uploads need Ollama's"
            " key-signature scheme, which mfc does not implement; name the model for another"
            f" registry, e.g. `mfc cp {name.display} HOST/{name.namespace}/{name.model}:{name.tag}`"
        )


@dataclass(frozen=True)
class PushResult:
    """What a push did: the manifest digest, and per blob whether it was sent."""

    name: ModelName
    digest: str
    uploaded: tuple[str, ...]
    mounted: tuple[str, ...]
    skipped: tuple[str, ...]


def repository(name: ModelName) -> str:
    """``namespace/model``, lower-cased: registries refuse upper-case repository names, and
    mfc names match case-insensitively, so this loses nothing."""
    return f"{name.namespace}/{name.model}".lower()


def push(
    store: Store,
    name: ModelName | str,
    *,
    insecure: bool = False,
    progress: Progress = silent,
    client: RegistryClient | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    format: PushFormat = "ollama",
) -> PushResult:
    """Push ``name`` from ``store`` to the registry its host names, as the store's own
    manifest (``format="ollama"``) or as a CNCF ModelPack artifact (``"modelpack"``)."""
    progress(Status("retrieving manifest"))
    n = store.resolve(parse_name(name) if isinstance(name, str) else name)
    check_pushable(n)
    manifest = store.read_manifest(n)
    data, media_type, extra = manifest.to_bytes(), manifest.media_type, b""
    if format == "modelpack":
        try:
            pack = to_modelpack(manifest, read_config(store, manifest))
        except ModelPackError as exc:
            raise RegistryError(f"cannot push {n.display} as ModelPack: {exc}") from None
        data, media_type, extra = pack.manifest, mt.OCI_MANIFEST, pack.config
    elif format != "ollama":
        raise ValueError(f"unknown push format {format!r}")
    own = client is None
    if client is None:
        client = RegistryClient(n.host, insecure, auth_for(n.host, insecure=insecure))
    try:
        with tempfile.TemporaryDirectory(prefix="mfc-push-") as tmp:
            extras: tuple[tuple[Descriptor, Path], ...] = ()
            if extra:  # the ModelPack config: not a store blob, sent from a temp file
                path = Path(tmp) / "config"
                path.write_bytes(extra)
                extras = (
                    (Descriptor(mt.MODELPACK_CONFIG, sha256_digest(extra), len(extra)), path),
                )
            return _push(
                store, n, manifest, data, media_type, extras, client, progress, max(1, chunk_size)
            )
    except httpx.TransportError as exc:
        raise RegistryError(f"cannot reach {n.host}: {type(exc).__name__}: {exc}") from None
    finally:
        if own:
            client.close()


def _push(
    store: Store,
    n: ModelName,
    manifest: Manifest,
    data: bytes,
    media_type: str,
    extras: tuple[tuple[Descriptor, Path], ...],
    client: RegistryClient,
    progress: Progress,
    chunk_size: int,
) -> PushResult:
    repo = repository(n)
    sources = mount_sources(store, n)
    done: dict[str, list[str]] = {"uploaded": [], "mounted": [], "skipped": []}
    blobs = [(d, store.blob_path(d.digest)) for d in (*manifest.layers, manifest.config)]
    for desc, path in (*blobs, *extras):
        if desc.digest in done["uploaded"] + done["mounted"] + done["skipped"]:
            continue  # the same blob twice in one manifest (e.g. two identical licenses)
        how = push_blob(
            client,
            repo,
            desc,
            path,
            mount_from=sources.get(desc.digest),
            progress=progress,
            chunk_size=chunk_size,
        )
        done[how].append(desc.digest)
    progress(Status("pushing manifest"))
    r = client.http.put(
        f"/v2/{repo}/manifests/{n.tag}", content=data, headers={"Content-Type": media_type}
    )
    if r.status_code != 201:
        raise _error(client, r, f"pushing the manifest of {n.display}")
    digest = sha256_digest(data)
    echoed = r.headers.get("Docker-Content-Digest")
    if echoed and echoed != digest:
        raise RegistryError(
            f"{client.host} stored the manifest of {n.display} as {echoed}, not {digest}"
        )
    progress(Status("success"))
    return PushResult(
        n, digest, tuple(done["uploaded"]), tuple(done["mounted"]), tuple(done["skipped"])
    )


def mount_sources(store: Store, name: ModelName) -> dict[str, str]:
    """Digest → another repository on ``name``'s registry that holds it, from the store's
    other names on that host (models mfc pushed or pulled there)."""
    here = repository(name)
    sources: dict[str, str] = {}
    host_dir = store.manifests_dir / name.host
    for path in sorted(host_dir.glob("*/*/*")) if host_dir.is_dir() else ():
        other = f"{path.parent.parent.name}/{path.parent.name}".lower()
        if other == here or not path.is_file():
            continue
        try:
            listed = Manifest.from_bytes(path.read_bytes())
        except (OSError, ValueError):
            continue  # an unreadable manifest is `mfc verify`'s business, not push's
        for desc in listed.descriptors():
            sources.setdefault(desc.digest, other)
    return sources


def push_blob(
    client: RegistryClient,
    repo: str,
    desc: Descriptor,
    path: Path,
    *,
    mount_from: str | None = None,
    progress: Progress = silent,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> str:
    """Make ``desc``'s blob present in ``repo``: "skipped", "mounted" or "uploaded"."""
    digest, size = desc.digest, desc.size
    r = client.http.head(f"/v2/{repo}/blobs/{digest}")
    if r.status_code == 200:
        progress(LayerProgress("pushing", digest, size, size))
        return "skipped"
    if r.status_code != 404:
        raise _error(client, r, f"checking blob {digest[:19]} in {repo}")
    params = {"mount": digest, "from": mount_from} if mount_from else None
    r = client.http.post(f"/v2/{repo}/blobs/uploads/", params=params)
    if r.status_code == 201 and mount_from:
        progress(LayerProgress("pushing", digest, size, size))
        return "mounted"
    if r.status_code != 202:
        raise _error(client, r, f"starting the upload of {digest[:19]} to {repo}")
    location = _location(client, r)
    progress(LayerProgress("pushing", digest, size, 0))
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise RegistryError(f"blob {digest} is missing from the store ({path})") from None
    with f:
        offset = 0
        while offset < size:
            chunk = _read(f, min(chunk_size, size - offset))
            if not chunk:
                raise RegistryError(f"blob {path} is shorter than its {size} bytes: run mfc verify")
            request = client.http.build_request(
                "PATCH",
                location,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                },
            )
            request.headers["Content-Length"] = str(len(chunk))
            request.stream = _Chunk(chunk, offset, desc, progress)
            r = client.http.send(request)
            if r.status_code != 202:
                raise _error(client, r, f"uploading {digest[:19]} to {repo}")
            location = _location(client, r)
            offset += len(chunk)
    r = client.http.put(
        location.copy_merge_params({"digest": digest}),
        headers={"Content-Type": "application/octet-stream"},
        content=b"",
    )
    if r.status_code != 201:
        raise _error(client, r, f"finishing the upload of {digest[:19]} to {repo}")
    progress(LayerProgress("pushing", digest, size, size))
    return "uploaded"


def _read(f: IO[bytes], n: int) -> bytes:
    parts = []
    while n > 0:
        part = f.read(n)
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


class _Chunk(httpx.SyncByteStream):
    """One PATCH body, sent in slices so progress moves while it goes out; iterable again
    (an auth retry after a 401 sends it a second time)."""

    def __init__(self, data: bytes, offset: int, desc: Descriptor, progress: Progress) -> None:
        self.data, self.offset, self.desc, self.progress = data, offset, desc, progress

    def __iter__(self) -> Iterator[bytes]:
        view = memoryview(self.data)
        for start in range(0, len(view), _SEND_SLICE):
            piece = view[start : start + _SEND_SLICE]
            yield bytes(piece)
            done = self.offset + start + len(piece)
            self.progress(LayerProgress("pushing", self.desc.digest, self.desc.size, done))


def _location(client: RegistryClient, r: httpx.Response) -> httpx.URL:
    """The next upload URL: absolute, or relative to the registry, query kept."""
    location = r.headers.get("Docker-Upload-Location") or r.headers.get("Location")
    if not location:
        raise RegistryError(f"{client.host} answered {r.status_code} without an upload Location")
    return httpx.URL(client.base).join(location)


def _error(client: RegistryClient, r: httpx.Response, what: str) -> RegistryError:
    """The registry's error JSON (``{"errors": [{"code", "message", "detail"}]}``) as one line."""
    reasons = []
    try:
        for e in r.json().get("errors", []):
            reasons.append(": ".join(str(e[k]) for k in ("code", "message") if e.get(k)))
    except (ValueError, AttributeError, TypeError):
        pass
    reason = "; ".join(x for x in reasons if x) or f"HTTP {r.status_code}"
    hint = ""
    if r.status_code in (401, 403):
        hint = f" (run `mfc login {client.host}`)"
    elif any("DIGEST_INVALID" in x for x in reasons):
        hint = " (the store's copy may be damaged: run `mfc verify`)"
    return RegistryError(f"{client.host}: {what}: {reason}{hint}")
