"""File inputs (FROM and ADAPTER GGUFs): where they really are, what they hold, into the store.

Every input path is resolved to its real path once, here (``InputFile``): all I/O uses
the real path, messages and the lockfile use the path as the Modelfile names it. A
symlink — relative or absolute, or a chain — to a blob of this very store is then
linked in place, not copied.

A file is inspected (GGUF header) and checked *before* anything is copied, then stored
in one pass while hashed — or only hashed, when the build does not keep it (an input
``--quantize`` replaces is quantized from where it lies; a ``--locked`` input that
drifted is reported, never stored): only what a manifest references enters the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mfc.build.caches import BuildCache, FileKey
from mfc.build.events import Events, size_text
from mfc.diagnostics import codes
from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.diagnostics.span import Span
from mfc.gguf_meta import GGUFFormatError, GGUFInfo, ProblemKind, inspect
from mfc.store.blobio import Blob, hash_fd
from mfc.store.store import DigestMismatchError, LinkMode, Store, StoreError


@dataclass(frozen=True, slots=True)
class InputFile:
    """A file a Modelfile names: as named (absolute, symlinks kept) and as it really is."""

    given: Path
    real: Path

    @classmethod
    def of(cls, path: Path) -> InputFile:
        return cls(path, path.resolve())


@dataclass(frozen=True, slots=True)
class Ingested:
    """A GGUF input after ``ingest``."""

    blob: Blob  # digest and size of its bytes
    info: GGUFInfo
    file: InputFile
    key: FileKey  # the file's identity when it was read (to notice a later change)
    stored: bool  # False: only hashed (see the module docstring)
    drifted: bool = False  # --locked: the digest differs from the lock's


def gguf_problem(kind: ProblemKind) -> tuple[str, str]:
    """(what is wrong, span label) for a GGUFFormatError's kind: a file with the GGUF magic
    cut short is "truncated" (a partial download), not "not GGUF" (a wrong file)."""
    if kind == "truncated":
        return "is a truncated GGUF file", "truncated"
    if kind == "damaged-header":
        return "has a damaged or truncated GGUF header", "damaged header"
    if kind == "layout":
        return "has a damaged tensor table", "damaged tensor table"
    if kind == "vocab":
        return "has a damaged vocabulary", "damaged vocabulary"
    if kind == "shape":
        return "has tensor shapes that contradict its header", "inconsistent tensors"
    return "is not a usable GGUF file", "not GGUF"


def not_gguf(what: str, exc: GGUFFormatError, span: Span, hint: str) -> DiagnosticError:
    """MF201 for ``what`` (e.g. "FROM `x.gguf`"), worded from the error's kind."""
    problem, label = gguf_problem(exc.kind)
    return codes.NOT_GGUF.error(f"{what} {problem}", span, label=label, hint=hint)


def ingest(
    file: InputFile,
    span: Span,
    instruction: str,
    *,
    store: Store,
    cache: BuildCache,
    events: Events,
    link: LinkMode,
    locked_digest: str | None = None,
    check: Callable[[GGUFInfo], None] | None = None,
    keep: Callable[[GGUFInfo], bool] | None = None,
) -> Ingested:
    """Blob and header facts of a GGUF file: from the caches, or one pass over it.

    ``check(info)`` runs before any copy (it raises to refuse the file). ``keep(info)``
    False: hash the file, do not store it. ``locked_digest``: the lock's digest for it
    (--locked); a drifted file is hashed, never stored.
    """
    path, name = file.real, file.given.name
    try:
        st = path.stat()
    except OSError as exc:
        raise codes.INPUT_NOT_FOUND.error(
            f"{instruction}: cannot read {file.given}", span, hint=str(exc)
        ) from None
    key = FileKey.of(st)
    hit = cache.file_digest(key)
    if hit is not None:
        stored = store.has_blob(hit[0], hit[1])
        info = cache.gguf_info(hit[0])
        if info is None and stored:
            try:
                info = inspect(store.blob_path(hit[0]))
            except GGUFFormatError:
                info = None  # not a GGUF after all: the full path below says why
            else:
                cache.record_gguf_info(hit[0], info)
        if info is not None and (stored or (keep is not None and not keep(info))):
            if check is not None:
                check(info)
            events.info(f"{name}: unchanged ({hit[0][:19]}…)")
            drifted = locked_digest is not None and hit[0] != locked_digest
            return Ingested(Blob(*hit), info, file, key, stored, drifted)
    try:
        info = inspect(path)
    except GGUFFormatError as exc:
        hint = f"{file.given}: {exc.reason}"
        raise not_gguf(f"{instruction} `{name}`", exc, span, hint) from None
    if check is not None:
        check(info)
    store_it = keep is None or keep(info)
    if not store_it or (locked_digest is not None and link != "hard"):
        # one hash pass: the input is not kept, or (--locked) a drifted multi-GB file is
        # found without being copied
        what = "checking" if store_it else "hashing"
        events.step(f"{what} {name}" + (" against the lockfile" if store_it else ""))
        try:
            with open(path, "rb", buffering=0) as f:
                fresh = hash_fd(f.fileno(), events.bytes_read(f"{what} {name}", st.st_size))
        except OSError as exc:
            raise codes.INPUT_NOT_FOUND.error(
                f"{instruction}: cannot read {file.given}", span, hint=str(exc)
            ) from None
        _remember(cache, path, key, fresh, info)
        if locked_digest is not None and fresh.digest != locked_digest:
            return Ingested(fresh, info, file, key, stored=False, drifted=True)
        if not store_it:
            stored = store.has_blob(fresh.digest, fresh.size)
            return Ingested(fresh, info, file, key, stored)
    events.step(f"storing {name} ({size_text(st.st_size)})")
    # A blob of this very store (FROM as printed by `mfc show --modelfile`, or a symlink to
    # one) is only re-hashed: linking it in place costs no copy.
    if path.parent == store.blobs_dir.resolve():
        link = "hard"
    try:
        blob = store.put_file(
            path,
            link,
            expected=locked_digest,
            progress=events.bytes_read(f"storing {name}", st.st_size),
        )
    except DigestMismatchError as exc:  # changed between the check and the copy
        raise codes.LOCK_DRIFT.error(
            f"--locked: {instruction} `{name}` changed", span, hint=str(exc)
        ) from None
    except StoreError as exc:
        raise codes.INPUT_NOT_FOUND.error(
            f"{instruction}: cannot store {name}", span, hint=str(exc)
        ) from None
    except OSError as exc:
        raise codes.INPUT_NOT_FOUND.error(
            f"{instruction}: cannot read {file.given}", span, hint=str(exc)
        ) from None
    _remember(cache, path, key, blob, info)
    return Ingested(blob, info, file, key, stored=True)


def _remember(cache: BuildCache, path: Path, key: FileKey, blob: Blob, info: GGUFInfo) -> None:
    """Record the digest (only if the file did not change during the pass) and the facts."""
    try:
        unchanged = FileKey.of(path.stat()) == key
    except OSError:
        unchanged = False
    if unchanged:
        cache.record_file(key, blob.digest, blob.size)
    cache.record_gguf_info(blob.digest, info)


def gguf_in_dir(
    path: Path, span: Span, instruction: str, exclude: frozenset[Path] = frozenset()
) -> Path:
    """The model file a directory named by FROM/ADAPTER stands for; MF206 when none or several.

    ``exclude``: files that are not the model (the projector beside it)."""
    from mfc.build.locate import pick_gguf

    first, found = pick_gguf(path, exclude)
    if first is not None:
        return first
    if not found:
        raise codes.AMBIGUOUS_DIRECTORY.error(
            f"{instruction} directory `{path.name}` holds no GGUF file",
            span,
            hint=f"{path}: put one `.gguf` file there, or name the file itself",
        )
    names = ", ".join(p.name for p in found)
    raise codes.AMBIGUOUS_DIRECTORY.error(
        f"{instruction} directory `{path.name}` holds several GGUF files",
        span,
        hint=f"found {names}; name the file to use",
    )
