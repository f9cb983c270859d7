"""ADAPTER lines → adapter layers: each file found, checked against the base, stored."""

from __future__ import annotations

from pathlib import Path

from mfc.build.adapters import adapter_problem
from mfc.build.compose import AdapterUse
from mfc.build.inputs import InputFile, gguf_in_dir, ingest
from mfc.build.lockfile import LockedInput
from mfc.build.sources.base import Context
from mfc.build.sources.files import relative
from mfc.diagnostics import codes
from mfc.diagnostics.diagnostic import Diagnostic, DiagnosticError
from mfc.diagnostics.span import Span
from mfc.gguf_meta import GGUFInfo
from mfc.modelfile.refs import expand
from mfc.modelfile.spec import ModelSpec
from mfc.store import media_types as mt
from mfc.store.manifest import Descriptor


def resolve_adapters(
    spec: ModelSpec, base_dir: Path, base_info: GGUFInfo, ctx: Context
) -> tuple[list[AdapterUse], list[LockedInput]]:
    """Every ADAPTER of ``spec``; all bad lines are reported in one DiagnosticError."""
    uses: list[AdapterUse] = []
    inputs: list[LockedInput] = []
    errors: list[Diagnostic] = []
    for ref in spec.adapters:
        try:
            use, locked = _adapter(ref.path, ref.scale, ref.span, base_dir, base_info, ctx)
        except DiagnosticError as exc:
            errors.extend(exc.diagnostics)
            continue
        uses.append(use)
        inputs.append(locked)
    if errors:
        raise DiagnosticError(errors)
    return uses, inputs


def _adapter(
    ref: str, scale: float, span: Span, base_dir: Path, base_info: GGUFInfo, ctx: Context
) -> tuple[AdapterUse, LockedInput]:
    ctx.events.step(f"resolving ADAPTER {ref}")
    path = expand(ref, base_dir)
    if path.is_dir():
        path = gguf_in_dir(path, span, "ADAPTER")
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

    file = InputFile.of(path)
    got = ingest(
        file,
        span,
        "ADAPTER",
        store=ctx.store,
        cache=ctx.cache,
        events=ctx.events,
        link=ctx.link,
        locked_digest=ctx.locked_digests.get(file.real),
        check=fits,
    )
    blob = got.blob
    use = AdapterUse(Descriptor(mt.ADAPTER, blob.digest, blob.size), scale)
    locked = LockedInput(
        "ADAPTER",
        ref,
        "file",
        blob.digest,
        path=relative(path, base_dir),
        size=blob.size,
        scale=scale,
    )
    return use, locked
