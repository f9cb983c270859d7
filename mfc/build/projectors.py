"""Projector (mmproj / CLIP) inputs: found among the FROM lines, checked, stored as a layer.

Modelfiles name a projector the way Ollama's do: several ``FROM`` lines that are local
paths merge into one model (``FROM ./model.gguf`` + ``FROM ./mmproj.gguf``, either
order), or ``FROM ./dir`` holding the model and its projector. Which file is the
projector is decided by its header, by Ollama's rule (``gguf_meta.is_projector_kv``).

``plan_froms`` reads the headers (the build cache's facts when the file is known),
picks the FROM the text model comes from and the projector, and checks the projector
on its own (its type, its tensors and keys: ``mfc.gguf_projector``) — all before anything
is stored. The check against the text model (its output width against the model's
embedding length) runs as the model's file is inspected, before it is stored
(``Context.check_model``), and again on the resolved base (a base from the store).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mfc import gguf_projector as rules
from mfc.build.caches import BuildCache, FileKey
from mfc.build.events import Events
from mfc.build.inputs import InputFile, ingest
from mfc.build.locate import gguf_files
from mfc.build.lockfile import LockedInput
from mfc.diagnostics import codes
from mfc.diagnostics.diagnostic import Diagnostic, DiagnosticError
from mfc.diagnostics.span import Span
from mfc.gguf_meta import GGUFFormatError, GGUFInfo, inspect
from mfc.modelfile.refs import expand, is_modelfile_name
from mfc.modelfile.spec import BaseRef, ModelSpec
from mfc.store import media_types as mt
from mfc.store.manifest import Descriptor
from mfc.store.store import LinkMode, Store


@dataclass(frozen=True, slots=True)
class ProjectorInput:
    """A projector file a FROM line names (itself, or inside its directory)."""

    ref: str  # the FROM value
    span: Span
    path: Path  # the file, absolute (symlinks kept)
    info: GGUFInfo  # its header; ``info.projector`` is set

    @property
    def what(self) -> str:
        named = self.ref if self.path.name in self.ref else f"{self.ref}` (`{self.path.name}`)"
        return f"FROM `{named}`"


@dataclass(frozen=True, slots=True)
class FromPlan:
    """The FROM lines read: where the text model comes from, and the projector."""

    base: BaseRef
    projector: ProjectorInput | None = None
    # projector files inside FROM directories: the model resolver skips them
    projector_files: frozenset[Path] = frozenset()
    warnings: tuple[Diagnostic, ...] = ()


def peek(path: Path, cache: BuildCache) -> GGUFInfo | None:
    """A file's header facts: the cache's when the file is one the builder saw unchanged,
    else read now; None when it is not a usable GGUF (its resolver says why, later)."""
    try:
        hit = cache.file_digest(FileKey.of(path.stat()))
    except OSError:
        return None
    if hit is not None:
        cached = cache.gguf_info(hit[0])
        if cached is not None:
            return cached
    try:
        return inspect(path)
    except GGUFFormatError:
        return None


def projectors_in(directory: Path, cache: BuildCache) -> list[tuple[Path, GGUFInfo]]:
    """The projector files directly in ``directory``, when it holds more than one GGUF (a
    lone GGUF is the model; if it is a projector, the model resolver says so)."""
    files = gguf_files(directory)
    if len(files) < 2:
        return []
    found = []
    for path in files:
        info = peek(path, cache)
        if info is not None and info.is_projector:
            found.append((path, info))
    return found


def plan_froms(spec: ModelSpec, base_dir: Path, cache: BuildCache) -> FromPlan:
    """Sort the FROM lines into the text model's and the projector's; check the projector
    on its own. Raises DiagnosticError (MF223/MF225/MF226)."""
    lines = (*spec.merged_froms, spec.base)
    models: list[BaseRef] = []
    projectors: list[ProjectorInput] = []
    in_dirs: set[Path] = set()
    for line in lines:
        path = expand(line.ref, base_dir)
        if path.is_dir():
            found = projectors_in(path, cache)
            projectors += [ProjectorInput(line.ref, line.span, p, i) for p, i in found]
            in_dirs |= {p for p, _ in found}
            if not found or len(found) < len(gguf_files(path)):
                models.append(line)
        elif spec.merged_froms and path.is_file() and not is_modelfile_name(path.name):
            info = peek(path, cache)
            if info is not None and info.is_projector:
                projectors.append(ProjectorInput(line.ref, line.span, path, info))
            else:
                models.append(line)
        else:  # a lone FROM file: the model resolver refuses it if it is a projector
            models.append(line)
    if not models:
        last = projectors[-1]
        raise _without_model(last.what, last.span)
    warnings = [_overridden("FROM", a.span, b.span) for a, b in itertools.pairwise(models)]
    warnings += [
        _overridden("projector", a.span, b.span, "a second projector")
        for a, b in itertools.pairwise(projectors)
    ]
    projector = projectors[-1] if projectors else None
    if projector is not None:
        check_alone(projector)
    return FromPlan(models[-1], projector, frozenset(in_dirs), tuple(warnings))


def _overridden(what: str, span: Span, later: Span, kind: str = "") -> Diagnostic:
    return codes.DUPLICATE_INSTRUCTION(
        span,
        f"`FROM` given again on line {later.line}; this one is ignored"
        if not kind
        else f"{kind} on line {later.line}; this {what} is ignored",
        hint="keep one FROM for the model (the last one wins, as in Ollama)"
        if not kind
        else "keep one projector: an image takes one (the last one wins)",
        label="overridden",
    )


def _without_model(what: str, span: Span) -> DiagnosticError:
    return codes.PROJECTOR_WITHOUT_MODEL.error(
        f"{what} is a projector (image encoder), not a text model",
        span,
        label="a projector",
        hint="name the text model too: `FROM ./model.gguf` and `FROM ./mmproj.gguf` on two "
        "lines, or FROM a directory holding both",
    )


def refuse_projector(info: GGUFInfo, what: str, span: Span) -> None:
    """MF226 for a projector where a model belongs (a lone FROM file)."""
    if info.is_projector:
        raise _without_model(what, span)


def check_alone(p: ProjectorInput) -> None:
    """The projector's own checks: a type libmtmd loads, every key and tensor it needs."""
    problem = rules.type_problem(p.info)
    if problem is not None:
        raise codes.PROJECTOR_UNSUPPORTED.error(
            f"{p.what}: libmtmd cannot load this projector: {problem.what}",
            p.span,
            label="unsupported projector",
            hint=problem.fix,
        )
    keys, tensors = rules.missing_parts(p.info)
    if keys or tensors:
        assert p.info.projector is not None
        kind = rules.effective_type(p.info.projector, p.info)
        parts = [f"tensor `{n}`" for n in tensors] + [f"key `{k}`" for k in keys]
        shown = ", ".join(parts[:4]) + (f" and {len(parts) - 4} more" if len(parts) > 4 else "")
        raise codes.PROJECTOR_INCOMPLETE.error(
            f"{p.what}: the `{kind}` projector lacks {shown}",
            p.span,
            label="incomplete projector",
            hint="llama.cpp's image encoder needs every one (a missing graph tensor crashes "
            "it); use a complete projector file, converted by llama.cpp's "
            "convert_hf_to_gguf.py --mmproj",
        )


def check_with_model(p: ProjectorInput, model: GGUFInfo) -> None:
    """MF224 when the projector's output width is not the text model's embedding length
    (libmtmd refuses the pair at load: "mismatch between text model and mmproj")."""
    width = rules.output_width(p.info)
    n_embd = model.embedding_length
    if width is None or n_embd is None or width == n_embd:
        return
    model_name = f"`{model.name}`" if model.name else "the text model"
    raise codes.PROJECTOR_MISMATCH.error(
        f"{p.what}: the projector's output is {width} wide, but {model_name}'s "
        f"embedding length is {n_embd}",
        p.span,
        label=f"{width} ≠ {n_embd}",
        hint="a projector is made for one text model: use the mmproj file published with "
        f"this model ({model.architecture or 'its'} architecture, embedding length {n_embd})",
    )


def model_check(p: ProjectorInput | None) -> Callable[[GGUFInfo], None] | None:
    """The hook the model resolver runs on the model's header before storing it."""
    if p is None:
        return None

    def check(info: GGUFInfo) -> None:
        check_with_model(p, info)

    return check


def store_projector(
    p: ProjectorInput,
    base_dir: Path,
    *,
    store: Store,
    cache: BuildCache,
    events: Events,
    link: LinkMode,
    locked_digest: str | None,
) -> tuple[Descriptor, LockedInput, bool]:
    """(layer, lock entry, drifted) of the projector, stored (or only hashed when drifted)."""
    from mfc.build.sources.files import relative

    events.step(f"resolving projector {p.path.name}")
    file = InputFile.of(p.path)
    got = ingest(
        file,
        p.span,
        "FROM",
        store=store,
        cache=cache,
        events=events,
        link=link,
        locked_digest=locked_digest,
    )
    locked = LockedInput(
        "FROM",
        p.ref,
        "projector",
        got.blob.digest,
        path=relative(p.path, base_dir),
        size=got.blob.size,
    )
    return Descriptor(mt.PROJECTOR, got.blob.digest, got.blob.size), locked, got.drifted
