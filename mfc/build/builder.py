"""Compile a checked Modelfile (``ModelSpec``) into a model image in the store.

``Builder`` orchestrates; each step is a module with one job:

0. read the FROM lines (``projectors``): which one the text model comes from, which
   file is a projector (its header says), and check the projector on its own;
1. resolve FROM through the resolver table (``sources``: file or directory or split
   set, another Modelfile built first, a store name or digest, the registry cache)
   into a ``ResolvedBase``, and every ADAPTER (``adapter_inputs``) — a file is
   inspected (GGUF header) *before* it is copied, copied in one pass while hashed, or
   only hashed when the build does not keep it (``inputs``); the projector is checked
   against the model's header before the model is stored, then stored itself;
2. quantize the model layer (``quantize_step``), from the input where it lies;
3. assemble layers and the config blob (``assemble``, inheritance rules in ``compose``);
4. compare with ``Modelfile.lock`` when ``--locked`` (``lockcheck``);
5. write the manifest last, under the store lock — so a build killed at any point
   leaves no manifest pointing at a missing or partial blob — and then the lockfile.

The lock's digests and the warnings flow as values: each Modelfile of a build graph
gets its own resolver ``Context`` (its own lock), and a dependency's warnings come back
with its base. The whole build holds ``Store.building()`` so ``gc`` cannot delete blobs
the new manifest is about to reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mfc.build.adapter_inputs import resolve_adapters
from mfc.build.assemble import assemble
from mfc.build.caches import BuildCache
from mfc.build.events import BuildEvent, Events, Progress
from mfc.build.lockcheck import check_lock, file_digests, read_lock_quietly
from mfc.build.lockfile import Lock, lock_path, write_lock
from mfc.build.projectors import (
    FromPlan,
    check_with_model,
    model_check,
    plan_froms,
    store_projector,
)
from mfc.build.result import BuildResult
from mfc.build.sources import resolve_from
from mfc.build.sources.base import Context, FromRef, RegistryCacheSearch, ResolvedBase
from mfc.diagnostics import codes
from mfc.diagnostics.diagnostic import Diagnostic
from mfc.digest import of_bytes
from mfc.modelfile.spec import ModelSpec
from mfc.store import media_types as mt
from mfc.store.blobio import Blob
from mfc.store.manifest import Descriptor, Manifest, canonical_json
from mfc.store.names import InvalidNameError, ModelName, parse_name
from mfc.store.store import LinkMode, Store

__all__ = ["BuildEvent", "BuildResult", "Builder", "Progress"]

CACHE_DIRNAME = ".mfc-cache"


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
        self.build_args: Mapping[str, str] = dict(build_args or {})
        self.locked = locked
        self.quantize = quantize
        self.link: LinkMode = link
        self.registry_cache = RegistryCacheSearch(registry_cache, environ, cwd)
        self.events = Events(progress)
        self._memo: dict[Path, BuildResult] = {}  # dependency Modelfile (real path) → result

    # -- entry points ----------------------------------------------------------

    def build_file(
        self, path: Path, tag: str | ModelName | None, *, _stack: tuple[Path, ...] = ()
    ) -> BuildResult:
        from mfc.build.frontend import check_file

        path = path.absolute()
        name = _parse_tag(tag)
        self.events.step(f"checking {path}")
        spec, warnings = check_file(path, self.build_args)
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
        quantize = None
        if top_level and self.quantize is not None:
            from mfc.build.quantize_step import requested_type

            quantize = requested_type(self.quantize)
        locked_digests: Mapping[Path, str] = {}
        locked_base = None
        if self.locked and lock_file is not None:
            previous = read_lock_quietly(lock_file)
            locked_digests = file_digests(previous, base_dir)
            locked_base = previous.inputs[0] if previous and previous.inputs else None
        plan = plan_froms(spec, base_dir, self.cache)
        diags.extend(plan.warnings)
        ctx = Context(
            store=self.store,
            cache=self.cache,
            events=self.events,
            link=self.link,
            build_dependency=self._dependency,
            registry_cache=self.registry_cache,
            locked_digests=locked_digests,
            quantize=quantize,
            locked_base=locked_base,
            projector_files=plan.projector_files,
            check_model=model_check(plan.projector),
        )
        req = FromRef(plan.base.ref, plan.base.span, base_dir, name, _stack)
        with self.store.building():
            manifest, config, lock, base = self._compose(
                spec, req, ctx, lock_file, plan, store_config=top_level or name is not None
            )
        if lock_file is not None and read_lock_quietly(lock_file) != lock:
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
        diags.extend(base.warnings)  # the dependencies', after this Modelfile's own
        return BuildResult(
            name=name,
            manifest_digest=manifest.digest,
            manifest=manifest,
            config=config,
            lock=lock,
            lock_path=lock_file,
            diagnostics=tuple(diags),
        )

    # -- steps -------------------------------------------------------------------

    def _compose(
        self,
        spec: ModelSpec,
        req: FromRef,
        ctx: Context,
        lock_file: Path | None,
        plan: FromPlan,
        *,
        store_config: bool,
    ) -> tuple[Manifest, dict[str, Any], Lock, ResolvedBase]:
        """Resolve, assemble, check the lock and write the manifest (under ``building()``)."""
        base = resolve_from(req, ctx)
        model_layers, info = base.model_layers(), base.info
        projector, projector_inputs = None, []
        if plan.projector is not None:
            p = plan.projector
            check_with_model(p, info)  # a base from the store was not checked as it was read
            projector, locked_projector, _ = store_projector(
                p,
                req.base_dir,
                store=self.store,
                cache=self.cache,
                events=self.events,
                link=self.link,
                locked_digest=ctx.locked_digests.get(p.path.resolve()),
            )
            projector_inputs.append(locked_projector)
        # a drifted --locked input was only hashed: MF210 follows, no quantizing
        if ctx.quantize is not None and not base.drifted:
            from mfc.build.quantize_step import quantize_base

            model_layers, info = quantize_base(
                base,
                ctx.quantize,
                spec.base.span,
                store=self.store,
                cache=self.cache,
                events=self.events,
            )
        adapters, adapter_inputs = resolve_adapters(spec, req.base_dir, info, ctx)
        layers, config = assemble(
            spec, base, model_layers, info, adapters, self.store.put_bytes, projector
        )
        config_bytes = canonical_json(config)
        # a dependency's config is passed on as a value: no manifest will reference its blob
        config_blob = (
            self.store.put_bytes(config_bytes)
            if store_config
            else Blob(of_bytes(config_bytes), len(config_bytes))
        )
        manifest = Manifest(Descriptor(mt.CONFIG, *config_blob), layers)
        lock = Lock(
            inputs=(base.locked, *projector_inputs, *adapter_inputs),
            build_args=spec.build_args,
            quantize=ctx.quantize,
            manifest=manifest.digest,
        )
        if self.locked:
            spans = [
                req.span,
                *(p.span for p in [plan.projector] if p is not None),
                *(a.span for a in spec.adapters),
            ]
            check_lock(lock, lock_file, spec, spans)
        if req.tag is not None:
            self.events.step(f"writing manifest {req.tag.display}")
            self.store.write_manifest(req.tag, manifest)
        return manifest, config, lock, base

    def _dependency(self, path: Path, stack: tuple[Path, ...]) -> tuple[BuildResult, bool]:
        """Build the Modelfile at ``path`` (a real path) untagged, once per build graph."""
        result = self._memo.get(path)
        if result is not None:
            return result, False
        self.events.info(f"building dependency {path}")
        from mfc.build.frontend import check_file

        spec, warnings = check_file(path, self.build_args)
        # the build args are the top-level build's; a dependency need not use them
        warnings = tuple(d for d in warnings if d.code != codes.UNUSED_BUILD_ARG.code)
        result = self.build_spec(
            spec,
            path.parent,
            None,
            lock_file=lock_path(path),
            warnings=warnings,
            top_level=False,
            _stack=(*stack, path),
        )
        self._memo[path] = result
        return result, True


def _parse_tag(tag: str | ModelName | None) -> ModelName | None:
    if tag is None or isinstance(tag, ModelName):
        return tag
    try:
        return parse_name(tag)
    except InvalidNameError as exc:
        raise codes.INVALID_TAG.error(
            str(exc), hint="a name is `[host/][namespace/]model[:tag]`"
        ) from None
