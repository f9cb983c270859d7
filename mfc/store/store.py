"""The content-addressed store, in Ollama's on-disk layout.

::

    <root>/manifests/<host>/<namespace>/<model>/<tag>   manifest JSON
    <root>/blobs/sha256-<hex>                           content-addressed blobs
    <root>/.mfc-tmp/                                    temp files (same filesystem)
    <root>/.mfc-lock, <root>/.mfc-gc-lock               lock files

so ``MFC_MODELS=~/.ollama/models mfc list`` works on an Ollama store.

Invariants: a blob's name is the sha256 of its bytes; a manifest is written
only after every blob it references is complete on disk (temp + fsync +
rename), under the store lock. Writers of blobs hold the gc lock *shared*
(``Store.building()``), gc holds it exclusively, so gc never deletes a blob
that a build in progress is about to reference.

Errors::

    StoreError
     ├── ModelNotFoundError   (also a LookupError)
     ├── MissingBlobError     a manifest would reference an absent blob
     ├── DigestMismatchError  content does not hash to the expected digest
     ├── InvalidDigestError   (also a ValueError) not `sha256:<64 hex>`
     └── StoreBusyError       gc while a build holds the store
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from mfc.digest import is_digest, of_bytes
from mfc.store import locking, partial
from mfc.store.blobio import (
    Blob,
    Progress,
    copy_file_hashing,
    copy_hashing,
    hash_fd,
    readinto,
    reflink,
)
from mfc.store.fsutil import atomic_write_bytes, fsync_dir, write_all
from mfc.store.manifest import Manifest, ManifestError
from mfc.store.names import InvalidNameError, ModelName, parse_name

LinkMode = Literal["auto", "copy", "hard"]

_TMP_DIR = ".mfc-tmp"


class StoreError(Exception):
    """Base of store errors; messages say what happened and how to fix it."""


class ModelNotFoundError(StoreError, LookupError):
    """No manifest for a name; ``hint`` says where the store looked and how to get the model."""

    def __init__(self, display: str, hint: str):
        super().__init__(f"model `{display}` not found: {hint}")
        self.display = display
        self.hint = hint


class MissingBlobError(StoreError):
    pass


class DigestMismatchError(StoreError):
    pass


class InvalidDigestError(StoreError, ValueError):
    pass


class StoreBusyError(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: ModelName
    manifest: Manifest
    modified: float  # manifest mtime, seconds since the epoch

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def size(self) -> int:
        return self.manifest.size


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing `verify` found wrong."""

    kind: str  # "missing" | "corrupt" | "size" | "manifest"
    message: str
    digest: str | None = None
    name: ModelName | None = None


@dataclass(frozen=True, slots=True)
class GcItem:
    path: Path
    size: int
    digest: str | None  # None for temp files


def _name(name: ModelName | str) -> ModelName:
    return name if isinstance(name, ModelName) else parse_name(name)


class Store:
    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Store:
        """``$MFC_MODELS``, else ``~/.mfc/models``."""
        env = os.environ if environ is None else environ
        root = env.get("MFC_MODELS")
        if root:
            return cls(Path(root))
        home = env.get("HOME")
        base = Path(home) if home else Path.home()
        return cls(base / ".mfc" / "models")

    # -- paths -------------------------------------------------------------

    @property
    def blobs_dir(self) -> Path:
        return self.root / "blobs"

    @property
    def manifests_dir(self) -> Path:
        return self.root / "manifests"

    @property
    def tmp_dir(self) -> Path:
        return self.root / _TMP_DIR

    def blob_path(self, digest: str) -> Path:
        """``blobs/sha256-<hex>``; the digest is validated before touching a path."""
        if not isinstance(digest, str) or not is_digest(digest):
            raise InvalidDigestError(
                f"invalid digest {digest!r}: expected `sha256:` and 64 lowercase hex digits"
            )
        return self.blobs_dir / digest.replace(":", "-", 1)

    def manifest_path(self, name: ModelName | str) -> Path:
        """Where ``name``'s manifest is (an existing case-insensitive match) or would go."""
        n = _name(name)
        found = self._find_manifest(n)
        return found if found is not None else self.manifests_dir.joinpath(*n.manifest_parts)

    def _find_manifest(self, name: ModelName) -> Path | None:
        exact = self.manifests_dir.joinpath(*name.manifest_parts)
        if exact.is_file():
            return exact
        cur = self.manifests_dir
        for part in name.manifest_parts:
            try:
                entries = os.listdir(cur)
            except (FileNotFoundError, NotADirectoryError):
                return None
            folded = part.lower()
            match = sorted(e for e in entries if e.lower() == folded)
            if not match:
                return None
            cur = cur / match[0]
        return cur if cur.is_file() else None

    # -- locks -------------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive store lock: manifest writes, rm, cp and gc happen under it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with locking.exclusive(self.root / ".mfc-lock"):
            yield

    @contextmanager
    def building(self) -> Iterator[None]:
        """Hold while writing blobs that a manifest will reference later.

        Several builds (processes or threads) may hold it at once; gc waits
        for none of them and refuses to run instead. A builder should wrap the
        whole build (put blobs … write_manifest) in it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with locking.shared(self.root / ".mfc-gc-lock"):
            yield

    # -- blobs -------------------------------------------------------------

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        """Is the blob stored (and, given ``size``, of that size)?"""
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def open_blob(self, digest: str) -> IO[bytes]:
        path = self.blob_path(digest)
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise MissingBlobError(f"blob {digest} is missing from {self.blobs_dir}") from None

    def read_blob(self, digest: str) -> bytes:
        with self.open_blob(digest) as f:
            return f.read()

    def put_bytes(self, data: bytes) -> Blob:
        digest = of_bytes(data)
        blob = Blob(digest, len(data))
        with self.building():
            if self._blob_ok(blob):
                return blob
            self._prepare_dirs()

            def fill(fd: int) -> Blob:
                write_all(fd, data)
                return blob

            return self._put_via_temp(fill)

    def put_stream(
        self, src: IO[bytes], expected: str | None = None, progress: Progress | None = None
    ) -> Blob:
        """Copy a readable binary stream into the store, hashing as it goes.

        With ``expected``, the content must hash to it (DigestMismatchError otherwise).
        """
        with self.building():
            self._prepare_dirs()
            return self._put_via_temp(
                lambda fd: copy_hashing(readinto(src), fd, progress), expected
            )

    def put_file(
        self,
        path: Path | str,
        link: LinkMode = "auto",
        expected: str | None = None,
        progress: Progress | None = None,
    ) -> Blob:
        """Add a file in one pass over its bytes.

        ``auto``: reflink (FICLONE) when the filesystem can, then hash the
        source once; else copy while hashing (the mapped file is hashed while writer
        threads send the same pages to the blob).
        ``copy``: always copy. ``hard``: hard-link the file into the store
        (same filesystem only; the store then shares the inode, so editing the
        original later corrupts the blob — `mfc verify` detects it).
        ``progress(bytes_done)`` is called as the pass advances.
        """
        if link not in ("auto", "copy", "hard"):
            raise ValueError(f"link must be auto, copy or hard, not {link!r}")
        src_path = Path(path)
        with self.building():
            self._prepare_dirs()
            if link == "hard":
                return self._put_hardlink(src_path, expected, progress)
            with open(src_path, "rb", buffering=0) as src:

                def fill(fd: int) -> Blob:
                    if link == "auto" and reflink(src.fileno(), fd):
                        # The source's pages are likely cached, the clone's never are.
                        return hash_fd(src.fileno(), progress)
                    return copy_file_hashing(src, fd, progress)

                return self._put_via_temp(fill, expected)

    def _put_hardlink(
        self, src_path: Path, expected: str | None, progress: Progress | None
    ) -> Blob:
        tmp = self.tmp_dir / f"link-{uuid.uuid4().hex}"
        try:
            os.link(src_path, tmp)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise StoreError(
                    f"cannot hard-link {src_path} into {self.root}: different filesystems;"
                    " use --link copy (or auto)"
                ) from None
            raise
        try:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                blob = hash_fd(fd, progress)
                os.fsync(fd)  # the input may have been written just now
            finally:
                os.close(fd)
            self._check_expected(blob, expected)
            if not self._blob_ok(blob):
                os.replace(tmp, self.blob_path(blob.digest))
                fsync_dir(self.blobs_dir)
        finally:
            _unlink_quietly(tmp)
        return blob

    def _check_expected(self, blob: Blob, expected: str | None) -> None:
        if expected is not None and blob.digest != expected:
            raise DigestMismatchError(
                f"content hashes to {blob.digest}, expected {expected}: the input is corrupt"
                " or was changed"
            )

    def _blob_ok(self, blob: Blob) -> bool:
        """An existing blob of the right size is reused (verify re-hashes)."""
        return self.has_blob(blob.digest, blob.size)

    def _prepare_dirs(self) -> None:
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def _put_via_temp(self, fill: Callable[[int], Blob], expected: str | None = None) -> Blob:
        """Write a blob through a temp file in tmp_dir: ``fill(fd)`` writes it and returns its Blob.

        The temp file is checked against ``expected``, fsynced and renamed into
        place — or dropped if the blob is already stored (maybe by another
        process) or anything fails, so no partial blob is ever visible.
        """
        fd, tmp = tempfile.mkstemp(dir=self.tmp_dir, prefix="blob-")
        try:
            blob = fill(fd)
            self._check_expected(blob, expected)
            if not self._blob_ok(blob):
                os.fchmod(fd, 0o644)
                os.fsync(fd)
                os.replace(tmp, self.blob_path(blob.digest))
                fsync_dir(self.blobs_dir)
        finally:
            _close_quietly(fd)
            _unlink_quietly(tmp)
        return blob

    # -- manifests -----------------------------------------------------------

    def write_manifest(self, name: ModelName | str, manifest: Manifest) -> Path:
        """Point ``name`` at ``manifest``, atomically; every blob must be present."""
        n = _name(name)
        data = manifest.to_bytes()
        with self.lock():
            missing = [
                d for d in manifest.descriptors() if not self._blob_ok(Blob(d.digest, d.size))
            ]
            if missing:
                listed = ", ".join(f"{d.digest} ({d.media_type})" for d in missing)
                raise MissingBlobError(
                    f"refusing to write manifest for {n.display}: blobs missing or of the"
                    f" wrong size in {self.blobs_dir}: {listed}"
                )
            old = self._find_manifest(n)
            target = self.manifests_dir.joinpath(*n.manifest_parts)
            atomic_write_bytes(target, data, tmp_dir=self.tmp_dir)
            if old is not None and old != target:
                self._unlink_manifest(old)  # the same name in another case
        return target

    def read_manifest(self, name: ModelName | str) -> Manifest:
        n = _name(name)
        path = self._find_manifest(n)
        if path is None:
            raise ModelNotFoundError(
                n.display,
                f"no manifest at {self.manifests_dir.joinpath(*n.manifest_parts)}"
                f" (store {self.root}, set by $MFC_MODELS); build it with `mfc build -t NAME`,"
                " load it with `mfc load -i FILE.tar`, or see `mfc list`",
            )
        try:
            return Manifest.from_bytes(path.read_bytes())
        except ManifestError as exc:
            raise StoreError(f"manifest {path} is unreadable: {exc}") from None

    def resolve(self, name: ModelName | str) -> ModelName:
        """The stored spelling of ``name`` (matching is case-insensitive)."""
        n = _name(name)
        path = self._find_manifest(n)
        if path is None:
            self.read_manifest(n)  # raises ModelNotFoundError with the full message
            raise AssertionError("unreachable")
        rel = path.relative_to(self.manifests_dir).parts
        return ModelName(*rel)

    def _manifest_files(self) -> Iterator[tuple[ModelName | None, Path]]:
        """Every manifest file, with its name (None when the path is not a valid name)."""
        root = self.manifests_dir
        if not root.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = Path(dirpath).relative_to(root).parts
            if len(rel) != 3:
                continue
            for fname in sorted(filenames):
                if fname.startswith("."):
                    continue
                host, namespace, model = rel
                try:
                    n = parse_name(f"{host}/{namespace}/{model}:{fname}")
                except InvalidNameError:
                    n = None
                yield n, Path(dirpath) / fname

    def list_models(self, skipped: list[Problem] | None = None) -> list[ModelEntry]:
        """Every readable model, sorted by name. Unreadable manifests are left
        out (and appended to ``skipped`` when given; ``verify`` reports them too)."""
        entries = []
        for n, path in self._manifest_files():
            if n is None:
                if skipped is not None:
                    message = f"{path} is not under a valid model name; ignored"
                    skipped.append(Problem("manifest", message))
                continue
            try:
                manifest = Manifest.from_bytes(path.read_bytes())
                mtime = path.stat().st_mtime
            except (OSError, ManifestError) as exc:
                if skipped is not None:
                    message = f"manifest {path} is unreadable: {exc}"
                    skipped.append(Problem("manifest", message, name=n))
                continue
            entries.append(ModelEntry(n, manifest, mtime))
        entries.sort(key=lambda e: e.name.key)
        return entries

    def remove(self, name: ModelName | str) -> ModelName:
        """Delete the manifest (blobs stay until gc); returns the removed name."""
        n = _name(name)
        with self.lock():
            path = self._find_manifest(n)
            if path is None:
                self.read_manifest(n)  # raises ModelNotFoundError
            assert path is not None
            removed = ModelName(*path.relative_to(self.manifests_dir).parts)
            self._unlink_manifest(path)
        return removed

    def _unlink_manifest(self, path: Path) -> None:
        path.unlink()
        fsync_dir(path.parent)
        parent = path.parent
        while parent != self.manifests_dir:  # prune now-empty model/namespace/host dirs
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def copy(self, src: ModelName | str, dst: ModelName | str) -> Manifest:
        """Give ``src``'s model the name ``dst`` too; the same bytes, so the same ID."""
        with self.lock():
            manifest = self.read_manifest(src)
            self.write_manifest(dst, manifest)
        return manifest

    # -- gc and verify -------------------------------------------------------

    def referenced_digests(self) -> set[str]:
        """Blobs any manifest references; raises if a manifest is unreadable
        (its blobs cannot be known, so nothing may be collected)."""
        refs: set[str] = set()
        for _, path in self._manifest_files():
            try:
                manifest = Manifest.from_bytes(path.read_bytes())
            except ManifestError as exc:
                raise StoreError(
                    f"manifest {path} is unreadable ({exc}); fix or remove it before gc"
                ) from None
            refs.update(d.digest for d in manifest.descriptors())
        return refs

    def gc(self, dry_run: bool = False) -> list[GcItem]:
        """Remove blobs no manifest references and leftover temp files.

        Refuses (StoreBusyError) while a build or pull holds ``building()``: its
        blobs are not referenced yet. mfc's abandoned partial downloads (no pull holds
        their lock, ``mfc.store.partial``) are removed; Ollama's are left alone.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            with locking.exclusive(self.root / ".mfc-gc-lock", blocking=False), self.lock():
                return self._gc_locked(dry_run)
        except locking.LockBusyError:
            raise StoreBusyError(
                f"a build or import is writing to {self.root}; run gc when it has finished"
            ) from None

    def _gc_locked(self, dry_run: bool) -> list[GcItem]:
        refs = self.referenced_digests()
        items: list[GcItem] = []
        if self.blobs_dir.is_dir():
            for entry in sorted(os.scandir(self.blobs_dir), key=lambda e: e.name):
                digest = entry.name.replace("-", ":", 1)
                if not entry.is_file(follow_symlinks=False) or not is_digest(digest):
                    continue
                if digest not in refs:
                    items.append(GcItem(Path(entry.path), entry.stat().st_size, digest))
        if self.tmp_dir.is_dir():
            for entry in sorted(os.scandir(self.tmp_dir), key=lambda e: e.name):
                if entry.is_file(follow_symlinks=False):
                    items.append(GcItem(Path(entry.path), entry.stat().st_size, None))
        for path, size in partial.abandoned(self.root, remove=not dry_run):
            items.append(GcItem(path, size, None))
        if not dry_run:
            for item in items:
                _unlink_quietly(str(item.path))
            if items and self.blobs_dir.is_dir():
                fsync_dir(self.blobs_dir)
        return items

    def verify(self, name: ModelName | str | None = None) -> list[Problem]:
        """Re-hash blobs: one model's, or (no name) every manifest's and every
        blob in the store. Each blob is hashed once."""
        problems: list[Problem] = []
        targets: list[tuple[ModelName | None, Path]]
        if name is not None:
            n = _name(name)
            path = self._find_manifest(n)
            if path is None:
                self.read_manifest(n)  # raises ModelNotFoundError
            assert path is not None
            targets = [(self.resolve(n), path)]
        else:
            targets = list(self._manifest_files())
        checked: dict[str, Problem | None] = {}
        for owner, path in targets:
            try:
                manifest = Manifest.from_bytes(path.read_bytes())
            except (OSError, ManifestError) as exc:
                message = f"manifest {path} is unreadable: {exc}"
                problems.append(Problem("manifest", message, name=owner))
                continue
            for d in manifest.descriptors():
                if d.digest not in checked:
                    checked[d.digest] = self._check_blob(d.digest, d.size)
                problem = checked[d.digest]
                if problem is not None:
                    who = owner.display if owner is not None else str(path)
                    problems.append(
                        Problem(
                            problem.kind,
                            f"{who}: {d.media_type} {problem.message}",
                            d.digest,
                            owner,
                        )
                    )
        if name is None and self.blobs_dir.is_dir():
            for entry in sorted(os.scandir(self.blobs_dir), key=lambda e: e.name):
                digest = entry.name.replace("-", ":", 1)
                if digest in checked or not is_digest(digest):
                    continue
                problem = self._check_blob(digest, None)
                if problem is not None:
                    message = f"unreferenced {problem.message}"
                    problems.append(Problem(problem.kind, message, digest))
        return problems

    def _check_blob(self, digest: str, size: int | None) -> Problem | None:
        path = self.blob_path(digest)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return Problem("missing", f"blob {digest} is missing ({path})", digest)
        try:
            actual = hash_fd(fd)
        finally:
            os.close(fd)
        if actual.digest != digest:
            return Problem(
                "corrupt",
                f"blob {digest} is corrupt: its content hashes to {actual.digest} ({path});"
                " rebuild or re-load the model",
                digest,
            )
        if size is not None and actual.size != size:
            return Problem(
                "size", f"blob {digest} is {actual.size} bytes, the manifest says {size}", digest
            )
        return None


def read_config(store: Store, manifest: Manifest) -> dict[str, Any]:
    """The config blob as a dict (model_format, model_family, …, and mfc's own
    ``"mfc"`` provenance when mfc built it)."""
    data = store.read_blob(manifest.config.digest)
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"config blob {manifest.config.digest} is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise StoreError(f"config blob {manifest.config.digest} is not a JSON object")
    return obj


def adapter_scales(config: Mapping[str, Any], manifest: Manifest) -> list[tuple[str, float]]:
    """(digest, scale) for each adapter layer, in manifest order; 1.0 when the
    config does not say (e.g. a model Ollama built).

    The config's ``mfc.adapters`` list pairs with the manifest's adapter layers
    by position, not by digest: the same adapter may be applied twice with two
    scales (two layers with one digest). Each layer takes the first recorded
    entry with its digest not taken yet, which is the positional pairing when
    the lists agree and still sensible when they do not.
    """
    from mfc.store import media_types

    recorded: list[tuple[str, float]] = []
    mfc_meta = config.get("mfc")
    if isinstance(mfc_meta, dict):
        for item in mfc_meta.get("adapters") or ():
            if isinstance(item, dict) and isinstance(item.get("digest"), str):
                scale = item.get("scale", 1.0)
                if isinstance(scale, (int, float)) and not isinstance(scale, bool):
                    recorded.append((item["digest"], float(scale)))
    taken = [False] * len(recorded)
    pairs = []
    for d in manifest.layers_of(media_types.ADAPTER):
        scale = 1.0
        for i, (digest, value) in enumerate(recorded):
            if not taken[i] and digest == d.digest:
                taken[i], scale = True, value
                break
        pairs.append((d.digest, scale))
    return pairs


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _unlink_quietly(path: str | Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
