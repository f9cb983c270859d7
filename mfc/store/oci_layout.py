"""OCI image layouts: `mfc save`/`mfc load`, and the read-only view of
``registry_cache/`` the builder resolves ``FROM name`` against.

A layout is ``oci-layout``, ``index.json`` (one entry per model, named by the
``org.opencontainers.image.ref.name`` annotation) and ``blobs/sha256/<hex>``
(manifests, configs and layers). Output is deterministic: the same models
give the same bytes (canonical JSON, sorted tar members, fixed mtime, owner
and mode, GNU format so there are no pax timestamps). Input is untrusted:
every blob is re-hashed on import, and tar member names are only ever looked
up, never used as paths.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mfc.digest import of_bytes, of_hash
from mfc.store import media_types
from mfc.store.blobio import Blob
from mfc.store.fsutil import atomic_write_bytes, fsync_dir
from mfc.store.importing import BlobImportError, import_manifest
from mfc.store.manifest import Descriptor, Manifest, ManifestError, canonical_json, is_digest
from mfc.store.names import InvalidNameError, ModelName, parse_name
from mfc.store.store import Store, StoreError

BlobOpener = Callable[[str], IO[bytes]]
_MAX_JSON = 16 << 20  # index.json and manifests are small; refuse absurd ones
_LAYOUT_JSON = canonical_json({"imageLayoutVersion": media_types.OCI_LAYOUT_VERSION})


class LayoutError(StoreError):
    """An OCI layout (directory or tarball) that is malformed or fails verification."""


@dataclass(frozen=True, slots=True)
class LayoutEntry:
    name: ModelName
    manifest: Manifest


def _blob_member(digest: str) -> str:
    return "blobs/sha256/" + digest.split(":", 1)[1]


# -- writing ------------------------------------------------------------------


def _collect(store: Store, names: Iterable[ModelName | str]) -> list[LayoutEntry]:
    entries: dict[tuple[str, ...], LayoutEntry] = {}
    for name in names:
        resolved = store.resolve(name)
        entries[resolved.key] = LayoutEntry(resolved, store.read_manifest(resolved))
    if not entries:
        raise LayoutError("nothing to save: name at least one model")
    return sorted(entries.values(), key=lambda e: e.name.key)


def _index_json(entries: list[LayoutEntry]) -> bytes:
    manifests = [
        {
            "mediaType": e.manifest.media_type,
            "digest": e.manifest.digest,
            "size": len(e.manifest.to_bytes()),
            "annotations": {media_types.OCI_REF_NAME: e.name.display},
        }
        for e in entries
    ]
    return canonical_json(
        {"schemaVersion": 2, "mediaType": media_types.OCI_INDEX, "manifests": manifests}
    )


def _blob_digests(entries: list[LayoutEntry]) -> list[tuple[str, int]]:
    """Every blob the layout holds (manifests included), sorted by digest."""
    blobs: dict[str, int] = {}
    for e in entries:
        blobs[e.manifest.digest] = len(e.manifest.to_bytes())
        for d in e.manifest.descriptors():
            blobs[d.digest] = d.size
    return sorted(blobs.items())


def save(
    store: Store,
    names: Iterable[ModelName | str],
    tar_path: Path | str | None = None,
    layout_dir: Path | str | None = None,
) -> list[LayoutEntry]:
    """Write the named models as an OCI layout tarball and/or directory."""
    if tar_path is None and layout_dir is None:
        raise ValueError("save needs tar_path or layout_dir")
    entries = _collect(store, names)
    if layout_dir is not None:
        _write_dir(store, entries, Path(layout_dir))
    if tar_path is not None:
        _write_tar(store, entries, Path(tar_path))
    return entries


def _write_dir(store: Store, entries: list[LayoutEntry], root: Path) -> None:
    if root.exists() and any(root.iterdir()) and not (root / media_types.OCI_LAYOUT_FILE).is_file():
        raise LayoutError(f"{root} is not empty and not an OCI layout; choose an empty directory")
    blob_dir = root / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    manifests = {e.manifest.digest: e.manifest.to_bytes() for e in entries}
    wanted = _blob_digests(entries)
    for digest, size in wanted:
        target = root / _blob_member(digest)
        if target.is_file() and target.stat().st_size == size and _file_digest(target) == digest:
            continue
        if digest in manifests:
            atomic_write_bytes(target, manifests[digest])
        else:
            _copy_blob(store, digest, target)
    fsync_dir(blob_dir)
    atomic_write_bytes(root / media_types.OCI_LAYOUT_FILE, _LAYOUT_JSON)
    atomic_write_bytes(root / "index.json", _index_json(entries))
    # Only now that the new index is in place: drop blobs it no longer references.
    keep = {_blob_member(d).rsplit("/", 1)[1] for d, _ in wanted}
    for stale in sorted(p for p in blob_dir.iterdir() if p.name not in keep):
        stale.unlink()


def _copy_blob(store: Store, digest: str, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out, store.open_blob(digest) as src:
            h = hashlib.sha256()
            while chunk := src.read(8 << 20):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fchmod(out.fileno(), 0o644)
            os.fsync(out.fileno())
        if of_hash(h) != digest:
            raise LayoutError(f"blob {digest} in the store is corrupt; run `mfc verify`")
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return of_hash(h)


class _HashingReader:
    """Wraps a blob file so a tar member is verified as it is written."""

    def __init__(self, f: IO[bytes]):
        self._f = f
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.hash.update(data)
        return data


def _tarinfo(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_tar(store: Store, entries: list[LayoutEntry], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    manifests = {e.manifest.digest: e.manifest.to_bytes() for e in entries}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix="-" + path.name)
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
                tar.addfile(_tarinfo("blobs", directory=True))
                tar.addfile(_tarinfo("blobs/sha256", directory=True))
                for digest, size in _blob_digests(entries):
                    member = _tarinfo(_blob_member(digest), size)
                    if digest in manifests:
                        tar.addfile(member, io.BytesIO(manifests[digest]))
                        continue
                    with store.open_blob(digest) as src:
                        reader = _HashingReader(src)
                        tar.addfile(member, reader)
                    if of_hash(reader.hash) != digest:
                        raise LayoutError(
                            f"blob {digest} in the store is corrupt; run `mfc verify`"
                        )
                index = _index_json(entries)
                tar.addfile(_tarinfo("index.json", len(index)), io.BytesIO(index))
                tar.addfile(
                    _tarinfo(media_types.OCI_LAYOUT_FILE, len(_LAYOUT_JSON)),
                    io.BytesIO(_LAYOUT_JSON),
                )
            raw.flush()
            os.fchmod(raw.fileno(), 0o644)
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(path.parent)


# -- reading ------------------------------------------------------------------


class _Source:
    """Files of a layout by their path inside it (a directory or a tarball)."""

    label: str

    def open(self, member: str) -> IO[bytes]:
        raise NotImplementedError

    def size(self, member: str) -> int | None:
        raise NotImplementedError

    def local_path(self, member: str) -> Path | None:
        return None

    def close(self) -> None:
        pass

    def read_json(self, member: str) -> Any:
        size = self.size(member)
        if size is None:
            raise LayoutError(f"{self.label}: `{member}` is missing; not an OCI image layout")
        if size > _MAX_JSON:
            raise LayoutError(f"{self.label}: `{member}` is {size} bytes, too large")
        with self.open(member) as f:
            data = f.read()
        try:
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LayoutError(f"{self.label}: `{member}` is not valid JSON: {exc}") from None


class _DirSource(_Source):
    def __init__(self, root: Path):
        self.root = root
        self.label = str(root)

    def open(self, member: str) -> IO[bytes]:
        return open(self.root / member, "rb")

    def size(self, member: str) -> int | None:
        try:
            st = (self.root / member).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st.st_size

    def local_path(self, member: str) -> Path | None:
        return self.root / member


class _TarSource(_Source):
    def __init__(self, path: Path):
        self.label = str(path)
        try:
            self._tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by close()
        except (tarfile.TarError, OSError) as exc:
            raise LayoutError(f"{path}: not a readable tar archive: {exc}") from None
        self._members: dict[str, tarfile.TarInfo] = {}
        for info in self._tar.getmembers():
            if info.isfile():
                self._members[info.name.removeprefix("./")] = info

    def open(self, member: str) -> IO[bytes]:
        f = self._tar.extractfile(self._members[member])
        assert f is not None
        return f

    def size(self, member: str) -> int | None:
        info = self._members.get(member)
        return None if info is None else info.size

    def close(self) -> None:
        self._tar.close()


class OciLayout:
    """Read-only view of an OCI image layout directory or tarball.

    ``find(name)`` returns the model's verified manifest and an opener for its
    blobs; ``import_model``/``load`` copy models into a store, re-hashing
    every blob.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if self.path.is_dir():
            self._src: _Source = _DirSource(self.path)
        elif self.path.is_file():
            self._src = _TarSource(self.path)
        else:
            raise LayoutError(f"{self.path}: no such OCI layout directory or tarball")
        self._entries: list[tuple[ModelName, dict[str, Any]]] | None = None

    def close(self) -> None:
        self._src.close()

    def __enter__(self) -> OciLayout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _index(self) -> list[tuple[ModelName, dict[str, Any]]]:
        if self._entries is not None:
            return self._entries
        layout = self._src.read_json(media_types.OCI_LAYOUT_FILE)
        if not isinstance(layout, dict) or "imageLayoutVersion" not in layout:
            raise LayoutError(f"{self._src.label}: `oci-layout` has no `imageLayoutVersion`")
        index = self._src.read_json("index.json")
        manifests = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(manifests, list):
            raise LayoutError(f"{self._src.label}: `index.json` has no `manifests` array")
        entries = []
        for i, desc in enumerate(manifests):
            where = f"{self._src.label}: index.json manifests[{i}]"
            if not isinstance(desc, dict) or not is_digest(desc.get("digest")):
                raise LayoutError(f"{where}: no valid `digest`")
            ref = (desc.get("annotations") or {}).get(media_types.OCI_REF_NAME)
            if not isinstance(ref, str):
                continue  # unnamed manifests cannot be addressed by name
            try:
                name = parse_name(ref)
            except InvalidNameError as exc:
                raise LayoutError(f"{where}: {exc}") from None
            entries.append((name, desc))
        self._entries = entries
        return entries

    def names(self) -> list[ModelName]:
        return [name for name, _ in self._index()]

    def find(self, name: ModelName | str) -> tuple[Manifest, BlobOpener] | None:
        """The manifest named ``name`` (case-insensitive) and a blob opener, or None."""
        wanted = name if isinstance(name, ModelName) else parse_name(name)
        for found, desc in self._index():
            if found.matches(wanted):
                return self._manifest(desc), self.open_blob
        return None

    def entries(self) -> Iterator[LayoutEntry]:
        for name, desc in self._index():
            yield LayoutEntry(name, self._manifest(desc))

    def open_blob(self, digest: str) -> IO[bytes]:
        if not is_digest(digest):
            raise LayoutError(f"invalid digest {digest!r}")
        member = _blob_member(digest)
        if self._src.size(member) is None:
            raise LayoutError(f"{self._src.label}: blob {digest} is missing")
        return self._src.open(member)

    def blob_path(self, digest: str) -> Path | None:
        """The blob's file when the layout is a directory (so it can be reflinked)."""
        return self._src.local_path(_blob_member(digest)) if is_digest(digest) else None

    def _manifest(self, desc: dict[str, Any]) -> Manifest:
        digest = desc["digest"]
        member = _blob_member(digest)
        size = self._src.size(member)
        if size is None:
            raise LayoutError(f"{self._src.label}: manifest blob {digest} is missing")
        if size > _MAX_JSON:
            raise LayoutError(f"{self._src.label}: manifest blob {digest} is too large")
        with self._src.open(member) as f:
            data = f.read()
        if of_bytes(data) != digest:
            raise LayoutError(
                f"{self._src.label}: manifest blob {digest} does not match its digest"
                " (the layout was modified or corrupted)"
            )
        try:
            return Manifest.from_bytes(data)
        except ManifestError as exc:
            raise LayoutError(f"{self._src.label}: manifest {digest}: {exc}") from None

    @property
    def label(self) -> str:
        """Names the layout in errors (``BlobSource``)."""
        return self._src.label

    def fetch(self, store: Store, desc: Descriptor) -> Blob:
        """Copy one blob into ``store``, re-hashed on the way (``BlobSource``): a directory's
        file by reflink or copy (never a hard link: the layout may be edited later)."""
        path = self.blob_path(desc.digest)
        if path is not None and path.is_file():
            return store.put_file(path, "auto", expected=desc.digest)
        with self.open_blob(desc.digest) as f:
            return store.put_stream(f, expected=desc.digest)

    def import_model(
        self, store: Store, entry: LayoutEntry, as_name: ModelName | None = None
    ) -> LayoutEntry:
        """Copy one model's blobs into ``store`` (each re-hashed) and name it."""
        try:
            import_manifest(store, entry.manifest, self, as_name or entry.name)
        except BlobImportError as exc:
            raise LayoutError(str(exc)) from None
        except LayoutError:
            raise
        except StoreError as exc:
            raise LayoutError(f"{self._src.label}: {exc}") from None
        return entry


def load(store: Store, tar_or_dir: Path | str) -> list[LayoutEntry]:
    """Import every named model of a layout tarball or directory, verifying digests."""
    with OciLayout(tar_or_dir) as layout:
        entries = list(layout.entries())
        if not entries:
            raise LayoutError(f"{tar_or_dir}: the layout names no models")
        for entry in entries:
            layout.import_model(store, entry)
    return entries
