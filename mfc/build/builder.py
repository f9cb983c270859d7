"""Compile a checked Modelfile (``ModelSpec``) into a model image in the store.

The order of work is what makes builds safe and fast:

1. resolve FROM (file, directory, split set, another Modelfile built first,
   local model, ``name@sha256:``, registry cache) and every ADAPTER to blobs —
   a file is inspected (GGUF header) *before* it is copied, and copied in one
   pass while hashed; the stat cache skips unchanged files entirely;
2. assemble layers (inheritance rules in ``compose``) and the config blob;
3. compare with ``Modelfile.lock`` when ``--locked``;
4. write the manifest last, under the store lock — so a build killed at any
   point leaves no manifest pointing at a missing or partial blob — and then
   the lockfile.

The whole build holds ``Store.building()`` so ``gc`` cannot delete blobs the
new manifest is about to reference.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfc.build.adapters import adapter_problem
from mfc.build.caches import BuildCache, FileKey
from mfc.build.compose import (
    AdapterUse,
    config_json,
    merge_params,
    messages_json,
    order_layers,
)
from mfc.build.locate import (
    expand,
    find_registry_cache,
    is_modelfile_path,
    looks_like_path,
    pick_gguf,
)
from mfc.build.lockfile import (
    Drift,
    Lock,
    LockedInput,
    drift,
    lock_path,
    read_lock,
    write_lock,
)
from mfc.diagnostics import codes
from mfc.diagnostics.diagnostic import Diagnostic, DiagnosticError
from mfc.diagnostics.span import Span
from mfc.gguf_meta import GGUFFormatError, GGUFInfo, inspect, merge_split, split_set
from mfc.modelfile.spec import ModelSpec
from mfc.store import media_types as mt
from mfc.store.blobio import Blob, hash_fd
from mfc.store.manifest import Descriptor, Manifest, canonical_json
from mfc.store.names import InvalidNameError, ModelName, parse_name, parse_ref
from mfc.store.store import (
    DigestMismatchError,
    LinkMode,
    ModelNotFoundError,
    Store,
    StoreError,
    adapter_scales,
    read_config,
)

CACHE_DIRNAME = ".mfc-cache"


@dataclass(frozen=True, slots=True)
class BuildEvent:
    """Progress for a UI: ``step`` starts a (maybe long) phase, ``info`` reports a fact,
    ``bytes`` says how far the current step's file has been read (``done`` of ``total``)."""

    kind: str  # "step" | "info" | "bytes"
    message: str
    done: int | None = None
    total: int | None = None


Progress = Callable[[BuildEvent], None]


@dataclass(frozen=True)
class BuildResult:
    name: ModelName | None  # None for a dependency built without a tag
    manifest_digest: str
    manifest: Manifest
    config: Mapping[str, Any]
    lock: Lock
    lock_path: Path | None  # None when built from text
    diagnostics: tuple[Diagnostic, ...] = ()  # warnings (front-end and builder)


@dataclass(frozen=True)
class _Base:
    """What FROM resolved to: the layers and facts a new image starts from."""

    layers: tuple[Descriptor, ...]
    config: Mapping[str, Any]  # the base image's config ({} for a GGUF file)
    info: GGUFInfo  # the model layer(s)
    locked: LockedInput
    manifest: Manifest | None = None

    def layers_of_model(self) -> tuple[Descriptor, ...]:
        return tuple(d for d in self.layers if d.media_type == mt.MODEL)


@dataclass
class _Options:
    build_args: Mapping[str, str]
    locked: bool
    quantize: str | None
    link: LinkMode
    registry_cache: Path | None
    progress: Progress | None
    environ: Mapping[str, str] | None = None
    cwd: Path | None = None
    warnings: list[Diagnostic] = field(default_factory=list)


def _size_text(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError


def _relative(path: Path, base_dir: Path) -> str:
    try:
        return path.relative_to(base_dir.absolute()).as_posix()
    except ValueError:
        return str(path)


class Builder:
    """One build invocation: shares caches and the dependency memo across a build graph."""

    def __init__(
        self,
        store: Store,
        *,
        build_args: Mapping[str, str] | None = None,
        locked: bool = False,
        no_cache: bool = False,
        quantize: str | None = None,
        link: LinkMode = "auto",
        registry_cache: Path | None = None,
        progress: Progress | None = None,
        environ: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ):
        self.store = store
        self.cache = BuildCache(store.root / CACHE_DIRNAME / "build", read=not no_cache)
        self.opts = _Options(
            build_args=dict(build_args or {}),
            locked=locked,
            quantize=quantize,
            link=link,
            registry_cache=registry_cache,
            progress=progress,
            environ=environ,
            cwd=cwd,
        )
        self._memo: dict[Path, BuildResult] = {}
        # --locked: file → digest its Modelfile.lock records, so a drifted file is found by a
        # hash pass and never copied into the store; digests of such files, not stored
        self._lock_digests: dict[Path, str] = {}
        self._unstored: set[str] = set()

    # -- events --------------------------------------------------------------

    def _step(self, message: str) -> None:
        if self.opts.progress is not None:
            self.opts.progress(BuildEvent("step", message))

    def _info(self, message: str) -> None:
        if self.opts.progress is not None:
            self.opts.progress(BuildEvent("info", message))

    # -- entry points ----------------------------------------------------------

    def build_file(
        self, path: Path, tag: str | ModelName | None, *, _stack: tuple[Path, ...] = ()
    ) -> BuildResult:
        from mfc.build.frontend import check_file

        path = path.absolute()
        name = _parse_tag(tag)
        self._step(f"checking {path}")
        spec, warnings = check_file(path, self.opts.build_args)
        return self.build_spec(
            spec,
            path.parent,
            name,
            lock_file=lock_path(path),
            warnings=warnings,
            _stack=(*_stack, path.resolve()),
        )

    def build_spec(
        self,
        spec: ModelSpec,
        base_dir: Path,
        tag: str | ModelName | None,
        *,
        lock_file: Path | None = None,
        warnings: tuple[Diagnostic, ...] = (),
        top_level: bool = True,
        _stack: tuple[Path, ...] = (),
    ) -> BuildResult:
        """Build ``spec``; paths in it are relative to ``base_dir``. Raises DiagnosticError."""
        name = _parse_tag(tag)
        base_dir = base_dir.absolute()
        diags = list(warnings)
        if spec.draft is not None:
            diags.append(
                codes.DRAFT_IGNORED(
                    spec.draft.span,
                    "DRAFT is not built into the image yet; the draft model is ignored",
                    "remove the DRAFT line, or keep it for Ollama (mfc ignores it)",
                )
            )
        quantize = self.opts.quantize if top_level else None
        if quantize is not None:
            from mfc.build.quantize import normalize_type

            quantize = normalize_type(quantize) or quantize.strip().upper()  # MF212 below
        outer_lock_digests = self._lock_digests
        if self.opts.locked and lock_file is not None:
            self._lock_digests = _file_digests(_read_lock_quietly(lock_file), base_dir)
        try:
            with self.store.building():
                manifest, config, lock = self._compose(
                    spec, base_dir, name, lock_file, quantize, _stack
                )
        finally:
            self._lock_digests = outer_lock_digests
        if lock_file is not None and _read_lock_quietly(lock_file) != lock:
            try:
                write_lock(lock_file, lock)
            except OSError as exc:
                diags.append(
                    codes.LOCK_NOT_WRITTEN(
                        None,
                        f"the model was built, but {lock_file.name} could not be written",
                        f"{lock_file}: {exc.strerror or exc}",
                    )
                )
        if top_level:
            diags.extend(self.opts.warnings)  # dependencies' warnings, reported once
        return BuildResult(
            name=name,
            manifest_digest=manifest.digest,
            manifest=manifest,
            config=config,
            lock=lock,
            lock_path=lock_file,
            diagnostics=tuple(diags),
        )

    def _compose(
        self,
        spec: ModelSpec,
        base_dir: Path,
        name: ModelName | None,
        lock_file: Path | None,
        quantize: str | None,
        stack: tuple[Path, ...],
    ) -> tuple[Manifest, dict[str, Any], Lock]:
        """Resolve, assemble, check the lock and write the manifest (under ``building()``)."""
        base = self._resolve_from(spec, base_dir, name, stack)
        model_layers, info = base.layers_of_model(), base.info
        # a drifted --locked input was only hashed, not stored: MF210 follows, no quantizing
        if quantize is not None and not any(d.digest in self._unstored for d in model_layers):
            model_layers, info = self._quantize(base, quantize, spec.base.span)
        adapters, adapter_inputs = self._adapters(spec, base_dir, info)
        layers, config = self._assemble(spec, base, model_layers, info, adapters)
        config_blob = self.store.put_bytes(canonical_json(config))
        manifest = Manifest(Descriptor(mt.CONFIG, *config_blob), layers)
        lock = Lock(
            inputs=(base.locked, *adapter_inputs),
            build_args=spec.build_args,
            quantize=quantize,
            manifest=manifest.digest,
        )
        if self.opts.locked:
            self._check_lock(lock, lock_file, spec)
        if name is not None:
            self._step(f"writing manifest {name.display}")
            self.store.write_manifest(name, manifest)
        return manifest, config, lock

    # -- FROM ----------------------------------------------------------------

    def _resolve_from(
        self, spec: ModelSpec, base_dir: Path, tag: ModelName | None, stack: tuple[Path, ...]
    ) -> _Base:
        ref, span = spec.base.ref, spec.base.span
        self._step(f"resolving FROM {ref}")
        path = expand(ref, base_dir)
        if path.is_dir():
            return self._file_base(ref, _gguf_in_dir(path, span, "FROM"), base_dir, span)
        if path.is_file():
            if is_modelfile_path(path):
                return self._modelfile_base(ref, path, base_dir, span, stack)
            return self._file_base(ref, path, base_dir, span)
        if looks_like_path(ref):
            raise codes.INPUT_NOT_FOUND.error(
                f"FROM `{ref}`: no such file or directory",
                span,
                label="not found",
                hint=f"looked for {path}; paths are relative to the Modelfile's directory",
            )
        return self._named_base(ref, path, span, tag, base_dir)

    def _named_base(
        self, ref: str, path: Path, span: Span, tag: ModelName | None, base_dir: Path
    ) -> _Base:
        try:
            name, digest = parse_ref(ref)
        except InvalidNameError as exc:
            raise codes.UNRESOLVED_FROM.error(
                f"FROM `{ref}` is not an existing file and not a model name",
                span,
                hint=f"{exc}; for a file, check the path (relative to {base_dir})",
            ) from None
        searched = [f"a file or directory {path}: does not exist"]
        mismatch = False
        self_ref = tag is not None and name is not None and digest is None and name.matches(tag)
        if name is not None and self_ref:
            searched.append(
                f"the store {self.store.root}: skipped, `{name.display}` is the model being "
                "built (its previous build)"
            )
        elif name is None:  # `FROM @sha256:<hex>`: any local model with that manifest
            for entry in self.store.list_models():
                if entry.digest == digest:
                    # no name: which local names share the digest differs between machines,
                    # and the lock must not (the digest alone says what was built on)
                    locked = LockedInput("FROM", ref, "model", digest)
                    return self._model_base(entry.manifest, locked, span)
            searched.append(f"the store {self.store.root}: no model has digest {digest}")
        else:
            try:
                manifest = self.store.read_manifest(name)
            except ModelNotFoundError:
                searched.append(f"the store {self.store.root}: no model `{name.display}`")
            except StoreError as exc:
                raise codes.BAD_BASE.error(
                    f"FROM `{ref}`: the local model is unreadable", span, hint=str(exc)
                ) from None
            else:
                if digest is None or manifest.digest == digest:
                    locked = LockedInput(
                        "FROM", ref, "model", manifest.digest, name=str(self.store.resolve(name))
                    )
                    return self._model_base(manifest, locked, span)
                mismatch = True
                searched.append(
                    f"the store {self.store.root}: `{name.display}` is {manifest.digest}"
                )
        cache_dir, how = find_registry_cache(
            self.opts.registry_cache, base_dir, environ=self.opts.environ, cwd=self.opts.cwd
        )
        if cache_dir is None:
            searched.append(f"the registry cache: {how}")
        elif not cache_dir.exists():
            searched.append(f"the registry cache {cache_dir} ({how}): does not exist")
        else:
            found = self._from_registry_cache(ref, name, digest, cache_dir, span)
            if isinstance(found, _Base):
                return found
            mismatch = mismatch or found == "mismatch"
            if name is None:
                what = f"no image has digest {digest}"
            elif found == "mismatch":
                what = f"`{name.display}` has another digest"
            else:
                what = f"no image `{name.display}`"
            searched.append(f"the registry cache {cache_dir} ({how}): {what}")
        places = "searched " + "; ".join(searched) + "; "
        if mismatch:
            raise codes.DIGEST_MISMATCH.error(
                f"FROM `{ref}`: no model with digest {digest}",
                span,
                label="digest does not match",
                hint=f"{places}update the digest, or rebuild or load that exact model",
            )
        if self_ref:
            assert name is not None
            raise codes.SELF_REFERENCE.error(
                f"FROM `{ref}` names the model being built, and no other source has it",
                span,
                hint=f"{places}to build on the current `{name.display}`, pin it: "
                f"`FROM {name.display}@sha256:<digest>` (see `mfc list`), or use another tag",
            )
        raise codes.UNRESOLVED_FROM.error(
            f"FROM `{ref}` matches no file, Modelfile, local model or cached image",
            span,
            label="not found",
            hint=f"{places}build or load the model, or fix the name or path",
        )

    def _from_registry_cache(
        self, ref: str, name: ModelName | None, digest: str | None, cache_dir: Path, span: Span
    ) -> _Base | str:
        from mfc.store.oci_layout import LayoutError, OciLayout

        try:
            with OciLayout(cache_dir) as layout:
                if name is None:  # by digest alone
                    matches = [e for e in layout.entries() if e.manifest.digest == digest]
                    if not matches:
                        return "missing"
                    entry = min(matches, key=lambda e: e.name.key)  # the same on every machine
                    name, manifest = entry.name, entry.manifest
                else:
                    found = layout.find(name)
                    if found is None:
                        return "missing"
                    manifest, _ = found
                    if digest is not None and manifest.digest != digest:
                        return "mismatch"
                self._step(f"importing {name.display} from the registry cache")
                for d in manifest.descriptors():
                    if self.store.has_blob(d.digest, d.size):
                        continue
                    blob_file = layout.blob_path(d.digest)
                    if blob_file is not None and blob_file.is_file():
                        # never "hard": the cache may be on another filesystem, or be edited
                        blob = self.store.put_file(blob_file, "auto", expected=d.digest)
                    else:
                        with layout.open_blob(d.digest) as f:
                            blob = self.store.put_stream(f, expected=d.digest)
                    if blob.size != d.size:
                        raise LayoutError(f"blob {d.digest} is {blob.size} bytes, not {d.size}")
        except (LayoutError, StoreError, OSError) as exc:
            raise codes.BAD_BASE.error(
                f"FROM `{ref}`: the registry cache image is unusable",
                span,
                hint=f"{cache_dir}: {exc}",
            ) from None
        locked = LockedInput("FROM", ref, "registry_cache", manifest.digest, name=str(name))
        return self._model_base(manifest, locked, span)

    def _modelfile_base(
        self, ref: str, path: Path, base_dir: Path, span: Span, stack: tuple[Path, ...]
    ) -> _Base:
        key = path.resolve()
        if key in stack:
            chain = [*stack[stack.index(key) :], key]
            raise codes.BUILD_CYCLE.error(
                "build cycle: " + " → ".join(str(p) for p in chain),
                span,
                label="this FROM closes the cycle",
                hint="a Modelfile cannot be built FROM itself, directly or through others",
            )
        result = self._memo.get(key)
        if result is None:
            self._info(f"building dependency {path}")
            from mfc.build.frontend import check_file

            spec, warnings = check_file(key, self.opts.build_args)
            # the build args are the top-level build's; a dependency need not use them
            warnings = tuple(d for d in warnings if d.code != "MF114")
            result = self.build_spec(
                spec,
                key.parent,
                None,
                lock_file=lock_path(key),
                warnings=warnings,
                top_level=False,
                _stack=(*stack, key),
            )
            self._memo[key] = result
            self.opts.warnings.extend(result.diagnostics)
        locked = LockedInput(
            "FROM",
            ref,
            "modelfile",
            result.manifest_digest,
            path=_relative(path, base_dir),
        )
        return self._model_base(result.manifest, locked, span)

    def _model_base(self, manifest: Manifest, locked: LockedInput, span: Span) -> _Base:
        what = f"FROM `{locked.ref}`"
        missing = [d for d in manifest.descriptors() if not self.store.has_blob(d.digest, d.size)]
        if missing:
            raise codes.BAD_BASE.error(
                f"{what}: the model's blobs are missing from the store",
                span,
                hint=f"missing {', '.join(d.digest for d in missing)}; "
                "run `mfc verify`, then rebuild or re-load the model",
            )
        models = manifest.layers_of(mt.MODEL)
        if not models:
            raise codes.BAD_BASE.error(
                f"{what}: the model image has no model layer",
                span,
                hint="rebuild that model from a Modelfile whose FROM names a GGUF file",
            )
        try:
            config = read_config(self.store, manifest)
        except StoreError as exc:
            raise codes.BAD_BASE.error(f"{what}: unreadable config", span, hint=str(exc)) from None
        info = self._blob_info(models, span)
        return _Base(manifest.layers, config, info, locked, manifest)

    def _blob_info(self, models: tuple[Descriptor, ...], span: Span) -> GGUFInfo:
        infos = []
        for d in models:
            info = self.cache.gguf_info(d.digest)
            if info is None:
                try:
                    info = inspect(self.store.blob_path(d.digest))
                except GGUFFormatError as exc:
                    what, label = _gguf_problem(exc)
                    raise codes.NOT_GGUF.error(
                        f"the base model's blob {d.digest} {what}",
                        span,
                        label=label,
                        hint=f"{exc.reason}; run `mfc verify`",
                    ) from None
                self.cache.record_gguf_info(d.digest, info)
            infos.append(info)
        return infos[0] if len(infos) == 1 else merge_split(infos)

    def _file_base(self, ref: str, path: Path, base_dir: Path, span: Span) -> _Base:
        try:
            shards = split_set(path)
        except GGUFFormatError as exc:
            raise codes.SPLIT_INCOMPLETE.error(
                f"FROM `{ref}`: incomplete split GGUF set", span, hint=exc.reason
            ) from None
        files = shards or [path]

        def not_adapter(info: GGUFInfo) -> None:
            if info.is_adapter:
                raise codes.FROM_ADAPTER.error(
                    f"FROM `{ref}` is a LoRA adapter, not a model",
                    span,
                    label="an adapter",
                    hint="FROM the base model, and add this file with `ADAPTER`",
                )
            if shards is None and (info.split_count or 1) > 1:
                # llama.cpp would load this shard and then look for siblings by name
                shard = "?" if info.split_no is None else str(info.split_no + 1)
                raise codes.SPLIT_INCOMPLETE.error(
                    f"FROM `{ref}` is one shard of a split GGUF set "
                    f"(shard {shard} of {info.split_count})",
                    span,
                    label="a lone shard",
                    hint="name the set's first file, `<prefix>-00001-of-"
                    f"{info.split_count:05d}.gguf`, with all shards beside it under "
                    "their original names, or merge the set with llama.cpp's gguf-split --merge",
                )

        blobs, infos = [], []
        for f in files:
            blob, info = self._ingest_gguf(f, span, "FROM", check=not_adapter)
            blobs.append(blob)
            infos.append(info)
        if shards:
            for i, info in enumerate(infos):
                if info.split_count not in (None, len(shards)) or info.split_no not in (None, i):
                    raise codes.SPLIT_INCOMPLETE.error(
                        f"FROM `{ref}`: shard {files[i].name} does not belong to this set",
                        span,
                        hint=f"its header says shard {info.split_no} of {info.split_count}",
                    )
        info = merge_split(infos) if shards else infos[0]
        layers = tuple(Descriptor(mt.MODEL, b.digest, b.size) for b in blobs)
        locked = LockedInput(
            "FROM",
            ref,
            "file",
            blobs[0].digest,
            path=_relative(path, base_dir),
            size=sum(b.size for b in blobs),
        )
        return _Base(layers, {}, info, locked)

    # -- files -----------------------------------------------------------------

    def _ingest_gguf(
        self,
        path: Path,
        span: Span,
        instruction: str,
        check: Callable[[GGUFInfo], None] | None = None,
    ) -> tuple[Blob, GGUFInfo]:
        """Blob and header facts of a GGUF file: from the caches, or one pass over it.

        The header is read (and ``check`` run) before copying, so a wrong file
        never costs a multi-GB copy.
        """
        try:
            st = path.stat()
        except OSError as exc:
            raise codes.INPUT_NOT_FOUND.error(
                f"{instruction}: cannot read {path}", span, hint=str(exc)
            ) from None
        key = FileKey.of(st)
        hit = self.cache.file_digest(key)
        if hit is not None and self.store.has_blob(hit[0], hit[1]):
            info = self.cache.gguf_info(hit[0])
            if info is None:
                try:
                    info = inspect(self.store.blob_path(hit[0]))
                except GGUFFormatError:
                    info = None  # not a GGUF after all: the full path below says why
                else:
                    self.cache.record_gguf_info(hit[0], info)
            if info is not None:
                if check is not None:
                    check(info)
                self._info(f"{path.name}: unchanged ({hit[0][:19]}…)")
                return Blob(*hit), info
        try:
            info = inspect(path)
        except GGUFFormatError as exc:
            what, label = _gguf_problem(exc)
            raise codes.NOT_GGUF.error(
                f"{instruction} `{path.name}` {what}",
                span,
                label=label,
                hint=f"{path}: {exc.reason}",
            ) from None
        if check is not None:
            check(info)
        locked_digest = self._lock_digests.get(path.resolve())
        if locked_digest is not None and self.opts.link != "hard":
            # --locked: one hash pass first, so a drifted multi-GB file is never copied
            self._step(f"checking {path.name} against the lockfile")
            try:
                with open(path, "rb", buffering=0) as f:
                    fresh = hash_fd(f.fileno(), self._bytes_progress(f"checking {path.name}", st))
            except OSError as exc:
                raise codes.INPUT_NOT_FOUND.error(
                    f"{instruction}: cannot read {path}", span, hint=str(exc)
                ) from None
            if fresh.digest != locked_digest:
                self._unstored.add(fresh.digest)
                return fresh, info  # not stored: _check_lock reports the drift (MF210)
        self._step(f"storing {path.name} ({_size_text(st.st_size)})")
        # A blob of this very store (FROM as printed by `mfc show --modelfile`) is only
        # re-hashed: linking it in place costs no copy.
        link = "hard" if path.resolve().parent == self.store.blobs_dir.resolve() else self.opts.link
        try:
            blob = self.store.put_file(
                path,
                link,
                expected=locked_digest,
                progress=self._bytes_progress(f"storing {path.name}", st),
            )
        except DigestMismatchError as exc:  # changed between the check and the copy
            raise codes.LOCK_DRIFT.error(
                f"--locked: {instruction} `{path.name}` changed", span, hint=str(exc)
            ) from None
        except StoreError as exc:
            raise codes.INPUT_NOT_FOUND.error(
                f"{instruction}: cannot store {path.name}", span, hint=str(exc)
            ) from None
        except OSError as exc:
            raise codes.INPUT_NOT_FOUND.error(
                f"{instruction}: cannot read {path}", span, hint=str(exc)
            ) from None
        try:
            unchanged = FileKey.of(path.stat()) == key
        except OSError:
            unchanged = False
        if unchanged:
            self.cache.record_file(key, blob.digest, blob.size)
        self.cache.record_gguf_info(blob.digest, info)
        return blob, info

    def _bytes_progress(self, what: str, st: os.stat_result) -> Callable[[int], None]:
        report, total = self.opts.progress, st.st_size

        def read_so_far(done: int) -> None:
            if report is not None:
                report(BuildEvent("bytes", what, done, total))

        return read_so_far

    # -- ADAPTER -----------------------------------------------------------------

    def _adapters(
        self, spec: ModelSpec, base_dir: Path, base_info: GGUFInfo
    ) -> tuple[list[AdapterUse], list[LockedInput]]:
        uses: list[AdapterUse] = []
        inputs: list[LockedInput] = []
        errors: list[Diagnostic] = []
        for ref in spec.adapters:
            try:
                use, locked = self._adapter(ref.path, ref.scale, ref.span, base_dir, base_info)
            except DiagnosticError as exc:
                errors.extend(exc.diagnostics)
                continue
            uses.append(use)
            inputs.append(locked)
        if errors:
            raise DiagnosticError(errors)
        return uses, inputs

    def _adapter(
        self, ref: str, scale: float, span: Span, base_dir: Path, base_info: GGUFInfo
    ) -> tuple[AdapterUse, LockedInput]:
        self._step(f"resolving ADAPTER {ref}")
        path = expand(ref, base_dir)
        if path.is_dir():
            path = _gguf_in_dir(path, span, "ADAPTER")
        elif not path.exists():
            raise codes.INPUT_NOT_FOUND.error(
                f"ADAPTER `{ref}`: no such file",
                span,
                label="not found",
                hint=f"looked for {path}; paths are relative to the Modelfile's directory",
            )

        def fits(info: GGUFInfo) -> None:
            problem = adapter_problem(info, base_info)
            if problem is not None:
                reason, fix = problem
                raise codes.BAD_ADAPTER.error(
                    f"ADAPTER `{ref}` does not fit the base model: {reason}",
                    span,
                    label="incompatible adapter",
                    hint=fix or None,
                )

        blob, _ = self._ingest_gguf(path, span, "ADAPTER", check=fits)
        use = AdapterUse(Descriptor(mt.ADAPTER, blob.digest, blob.size), scale)
        locked = LockedInput(
            "ADAPTER",
            ref,
            "file",
            blob.digest,
            path=_relative(path, base_dir),
            size=blob.size,
            scale=scale,
        )
        return use, locked

    # -- quantize ----------------------------------------------------------------

    def _quantize(
        self, base: _Base, qtype_text: str, span: Span
    ) -> tuple[tuple[Descriptor, ...], GGUFInfo]:
        from mfc.build.quantize import (
            SOURCE_TYPES,
            QuantizeError,
            normalize_type,
            quant_types,
            quantize,
            supported_types,
        )

        qtype = normalize_type(qtype_text)
        if qtype is None:
            wanted, supported = qtype_text.strip().upper(), supported_types()
            if supported is None or wanted not in supported:  # else newer than gguf-py's list
                raise codes.BAD_QUANTIZE.error(
                    f"--quantize `{qtype_text}`: llama.cpp has no such type",
                    span,
                    hint="use one of " + ", ".join(supported or quant_types()),
                )
            qtype = wanted
        models = base.layers_of_model()
        if base.info.file_type == qtype:
            self._info(f"the base is already {qtype}; nothing to quantize")
            return models, base.info
        if base.info.file_type not in SOURCE_TYPES:
            raise codes.BAD_QUANTIZE.error(
                f"--quantize {qtype}: the base model is {base.info.file_type}, "
                "and only F32/F16/BF16 models can be quantized",
                span,
                hint="build FROM the unquantized (F32/F16/BF16) GGUF",
            )
        if len(models) != 1:
            raise codes.BAD_QUANTIZE.error(
                f"--quantize {qtype}: split GGUF sets cannot be quantized by the builder",
                span,
                hint="merge the set with llama.cpp's gguf-split --merge first",
            )
        source = models[0]
        cached = self.cache.quantized(source.digest, qtype)
        if cached is not None:
            path = self.store.blob_path(cached)
            if path.is_file():
                info = self._blob_info((Descriptor(mt.MODEL, cached, path.stat().st_size),), span)
                self._info(f"quantized {qtype} model from the cache")
                return (Descriptor(mt.MODEL, cached, path.stat().st_size),), info
        supported = supported_types()
        if supported is not None and qtype not in supported:
            raise codes.BAD_QUANTIZE.error(
                f"--quantize {qtype}: the installed llama.cpp cannot quantize to {qtype}",
                span,
                hint="it takes " + ", ".join(supported) + "; or install a llama.cpp that has it",
            )
        self._step(f"quantizing to {qtype}")
        self.store.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.store.tmp_dir / f"quantize-{uuid.uuid4().hex}.gguf"
        try:
            try:
                quantize(self.store.blob_path(source.digest), tmp, qtype)
            except QuantizeError as exc:
                raise codes.QUANTIZE_FAILED.error(
                    f"--quantize {qtype}: llama.cpp's quantizer failed", span, hint=str(exc)
                ) from None
            try:
                info = inspect(tmp)
            except GGUFFormatError as exc:
                raise codes.QUANTIZE_FAILED.error(
                    f"--quantize {qtype}: unreadable output", span, hint=exc.reason
                ) from None
            blob = self.store.put_file(tmp, "hard")
        finally:
            tmp.unlink(missing_ok=True)
        self.cache.record_gguf_info(blob.digest, info)
        self.cache.record_quantized(source.digest, qtype, blob.digest)
        return (Descriptor(mt.MODEL, blob.digest, blob.size),), info

    # -- layers and config -----------------------------------------------------------

    def _text_layer(self, media_type: str, text: str) -> Descriptor:
        return Descriptor(media_type, *self.store.put_bytes(text.encode("utf-8")))

    def _json_blob(self, digest: str) -> Any:
        try:
            return json.loads(self.store.read_blob(digest))
        except (StoreError, ValueError):
            return None

    def _assemble(
        self,
        spec: ModelSpec,
        base: _Base,
        model_layers: tuple[Descriptor, ...],
        info: GGUFInfo,
        new_adapters: list[AdapterUse],
    ) -> tuple[tuple[Descriptor, ...], dict[str, Any]]:
        inherited = base.layers
        layers: list[Descriptor] = list(model_layers)
        layers += [d for d in inherited if d.media_type == mt.PROJECTOR]

        adapters: list[AdapterUse] = []
        if base.manifest is not None:
            scales = adapter_scales(base.config, base.manifest)  # paired by position
            for layer, (_, scale) in zip(base.manifest.layers_of(mt.ADAPTER), scales, strict=True):
                adapters.append(AdapterUse(layer, scale))
        adapters += new_adapters
        layers += [a.layer for a in adapters]

        def text_or_inherit(media_type: str, text: str | None) -> None:
            if text is not None:
                layers.append(self._text_layer(media_type, text))
            else:
                layers.extend(d for d in inherited if d.media_type == media_type)

        text_or_inherit(mt.TEMPLATE, spec.template.value if spec.template else None)
        text_or_inherit(mt.SYSTEM, spec.system.value if spec.system else None)

        base_params = [d for d in inherited if d.media_type == mt.PARAMS]
        if spec.parameters:
            previous: dict[str, Any] = {}
            for d in base_params:
                obj = self._json_blob(d.digest)
                if isinstance(obj, dict):
                    previous.update(obj)
            params = merge_params(previous, spec.parameters)
            layers.append(Descriptor(mt.PARAMS, *self.store.put_bytes(canonical_json(params))))
        else:
            layers += base_params

        if spec.messages:
            data = canonical_json(messages_json(spec.messages))
            layers.append(Descriptor(mt.MESSAGES, *self.store.put_bytes(data)))
        else:
            layers += [d for d in inherited if d.media_type == mt.MESSAGES]

        licenses = [d for d in inherited if d.media_type == mt.LICENSE]
        licenses += [self._text_layer(mt.LICENSE, t.value) for t in spec.licenses]
        seen: set[str] = set()
        for d in licenses:
            if d.digest not in seen:
                seen.add(d.digest)
                layers.append(d)

        known = {*mt.LAYER_ORDER}
        layers += [d for d in inherited if d.media_type not in known]
        ordered = order_layers(layers)

        extras: dict[str, str] = {}
        for key, text in (
            ("requires", spec.requires),
            ("renderer", spec.renderer),
            ("parser", spec.parser),
        ):
            if text is not None:
                extras[key] = text.value
            elif isinstance(base.config.get(key), str):
                extras[key] = base.config[key]
        config = config_json(info, ordered, tuple(adapters), dict(spec.build_args), extras)
        return ordered, config

    # -- lock ------------------------------------------------------------------------

    def _check_lock(self, fresh: Lock, lock_file: Path | None, spec: ModelSpec) -> None:
        span = spec.base.span
        if lock_file is None:
            raise codes.LOCK_MISSING.error(
                "--locked needs a Modelfile on disk (there is no lockfile)",
                hint="build from a Modelfile file, or drop --locked",
            )
        try:
            locked = read_lock(lock_file)
        except ValueError as exc:
            raise codes.LOCK_MISSING.error(
                f"--locked: {lock_file} is unreadable", span, hint=str(exc)
            ) from None
        if locked is None:
            raise codes.LOCK_MISSING.error(
                f"--locked: there is no {lock_file.name} next to the Modelfile",
                span,
                hint="build once without --locked to write it, then commit it",
            )
        changes = drift(locked, fresh)
        if not changes and locked.manifest != fresh.manifest:
            changes.append(
                Drift(
                    f"the image: locked {locked.manifest}, this build gives {fresh.manifest} "
                    "(the Modelfile's text changed, or the builder did)"
                )
            )
        if changes:
            spans = [spec.base.span, *(a.span for a in spec.adapters)]
            raise DiagnosticError(
                [
                    codes.LOCK_DRIFT(
                        spans[change.input_index] if change.input_index is not None else span,
                        f"--locked: {change.message}",
                        f"rebuild without --locked to update {lock_file.name}",
                        "drifted from the lock",
                    )
                    for change in changes
                ]
            )


def _file_digests(lock: Lock | None, base_dir: Path) -> dict[Path, str]:
    """The file inputs a lock records: absolute path → digest (shard 1 for a split set)."""
    if lock is None:
        return {}
    found = {}
    for item in lock.inputs:
        if item.kind == "file" and item.path is not None:
            found[(base_dir / item.path).resolve()] = item.digest
    return found


def _gguf_problem(exc: GGUFFormatError) -> tuple[str, str]:
    """(what is wrong, span label): a file with the GGUF magic that is cut short is
    "truncated" (the reason says where), not "not GGUF" — a partial download, not a wrong file."""
    if "the file is truncated" in exc.reason:
        return "is a truncated GGUF file", "truncated"
    if "damaged or truncated" in exc.reason:
        return "has a damaged or truncated GGUF header", "damaged header"
    return "is not a usable GGUF file", "not GGUF"


def _read_lock_quietly(path: Path) -> Lock | None:
    try:
        return read_lock(path)
    except (ValueError, OSError):
        return None


def _gguf_in_dir(path: Path, span: Span, instruction: str) -> Path:
    """The model file a directory named by FROM/ADAPTER stands for; MF206 when none or several."""
    first, found = pick_gguf(path)
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


def _parse_tag(tag: str | ModelName | None) -> ModelName | None:
    if tag is None or isinstance(tag, ModelName):
        return tag
    try:
        return parse_name(tag)
    except InvalidNameError as exc:
        raise codes.INVALID_TAG.error(
            str(exc), hint="a name is `[host/][namespace/]model[:tag]`"
        ) from None
