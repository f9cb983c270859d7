"""The values FROM resolution works with: the request, the resolvers' context, the result.

Every resolver (``mfc.build.sources``) is a function ``(FromRef, Context) -> ResolvedBase
| Miss | None``: the base it found, where it looked without finding one (for MF202's
``help:``), or None when the value is not its kind at all. A resolver raises a
``DiagnosticError`` when it recognised the value and it is wrong (a damaged file, a
build cycle): later resolvers must not try it as something else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfc.build.caches import BuildCache, FileKey
from mfc.build.compose import AdapterUse
from mfc.build.events import Events
from mfc.build.lockfile import LockedInput
from mfc.build.result import BuildResult
from mfc.diagnostics.diagnostic import Diagnostic
from mfc.diagnostics.span import Span
from mfc.gguf_meta import GGUFInfo
from mfc.modelfile.refs import expand
from mfc.store import media_types as mt
from mfc.store.manifest import Descriptor, Manifest
from mfc.store.names import ModelName
from mfc.store.store import LinkMode, Store


@dataclass(frozen=True)
class FromRef:
    """One FROM line to resolve."""

    ref: str  # the value, after ARG substitution
    span: Span
    base_dir: Path  # the Modelfile's directory (absolute): paths are relative to it
    tag: ModelName | None  # the name being built (`FROM x` while building `x` skips the store)
    stack: tuple[Path, ...] = ()  # Modelfiles being built, outermost first (cycle detection)

    @property
    def path(self) -> Path:
        """The value read as a path (it may not exist)."""
        return expand(self.ref, self.base_dir)


@dataclass(frozen=True)
class ResolvedBase:
    """What FROM resolved to: the layers and facts a new image starts from."""

    layers: tuple[Descriptor, ...]
    info: GGUFInfo  # the model layer(s)
    locked: LockedInput  # what the lockfile records for this FROM
    config: Mapping[str, Any] = field(default_factory=dict)  # the base image's ({} for a file)
    params: Mapping[str, Any] = field(default_factory=dict)  # the base image's parameters
    adapters: tuple[AdapterUse, ...] = ()  # the base image's adapters, with their scales
    manifest: Manifest | None = None  # the base image (None for a GGUF file)
    # where the model layers' bytes are: the input files (real paths) or store blobs
    model_files: tuple[Path, ...] = ()
    # input files only: their identity when hashed (a file quantized where it lies must
    # not change between the hash, which names the result in the caches, and the quantizer)
    model_file_keys: tuple[FileKey, ...] = ()
    # False when the model layers were only hashed, not stored: a --locked input that
    # drifted (MF210 follows) or an input --quantize replaces (quantized from where it lies)
    stored: bool = True
    drifted: bool = False  # --locked: the input differs from the lock
    warnings: tuple[Diagnostic, ...] = ()  # a dependency build's warnings

    def model_layers(self) -> tuple[Descriptor, ...]:
        return tuple(d for d in self.layers if d.media_type == mt.MODEL)


@dataclass(frozen=True)
class Miss:
    """A resolver that did not find the base: where it looked (``help:`` of MF202)."""

    searched: str
    digest_mismatch: bool = False  # a name matched but with another digest (MF203)
    self_reference: bool = False  # skipped the store: `FROM x` while building `x` (MF215)


# (modelfile path, the stack including it) -> its build result, and whether it was built
# now (False: from this build graph's memo, its warnings were reported already)
BuildDependency = Callable[[Path, tuple[Path, ...]], tuple[BuildResult, bool]]


@dataclass(frozen=True)
class RegistryCacheSearch:
    """How to find the registry cache (see ``mfc.build.locate.find_registry_cache``)."""

    explicit: Path | None = None
    environ: Mapping[str, str] | None = None
    cwd: Path | None = None


@dataclass(frozen=True)
class Context:
    """What resolvers may use. One per Modelfile of a build graph (its lock differs)."""

    store: Store
    cache: BuildCache
    events: Events
    link: LinkMode
    build_dependency: BuildDependency
    registry_cache: RegistryCacheSearch = RegistryCacheSearch()
    # --locked: real path of a file input -> the digest this Modelfile's lock records
    locked_digests: Mapping[Path, str] = field(default_factory=dict)
    quantize: str | None = None  # the type this build quantizes the model to (top level only)
    # --locked: the lock's FROM entry (a registry FROM pulls the locked digest, or is MF210)
    locked_base: LockedInput | None = None
    # projector files inside FROM directories (``mfc.build.projectors``): not the model
    projector_files: frozenset[Path] = frozenset()
    # run on a model file's header before it is stored (the projector's width check)
    check_model: Callable[[GGUFInfo], None] | None = None


Resolved = ResolvedBase | Miss | None
Resolver = Callable[[FromRef, Context], Resolved]
