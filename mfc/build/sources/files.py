"""FROM a GGUF file, a directory holding one, or a split set (``x-00001-of-0000N.gguf``)."""

from __future__ import annotations

from pathlib import Path

from mfc.build.inputs import InputFile, gguf_in_dir, ingest, not_gguf
from mfc.build.lockfile import LockedInput
from mfc.build.projectors import refuse_projector
from mfc.build.sources.base import Context, FromRef, Resolved, ResolvedBase
from mfc.diagnostics import codes
from mfc.gguf_meta import GGUFFormatError, GGUFInfo, check_model, merge_split, split_set
from mfc.modelfile.refs import is_modelfile_name
from mfc.store import media_types as mt
from mfc.store.manifest import Descriptor


def relative(path: Path, base_dir: Path) -> str:
    """``path`` relative to the Modelfile's directory when inside it (the lockfile's form)."""
    try:
        return path.relative_to(base_dir.absolute()).as_posix()
    except ValueError:
        return str(path)


def resolve(req: FromRef, ctx: Context) -> Resolved:
    path = req.path
    if path.is_dir():
        path = gguf_in_dir(path, req.span, "FROM", exclude=ctx.projector_files)
    elif not path.is_file() or is_modelfile_name(path.name):
        return None
    return file_base(req, path, ctx)


def file_base(req: FromRef, path: Path, ctx: Context) -> ResolvedBase:
    ref, span = req.ref, req.span
    try:
        shards = split_set(path)  # by the name as given: the shards are its siblings
    except GGUFFormatError as exc:
        raise codes.SPLIT_INCOMPLETE.error(
            f"FROM `{ref}`: incomplete split GGUF set", span, hint=exc.reason
        ) from None
    files = [InputFile.of(p) for p in (shards or [path])]

    def not_adapter(info: GGUFInfo) -> None:
        refuse_projector(info, f"FROM `{ref}`", span)
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
        if ctx.check_model is not None and info.split_no in (None, 0):
            ctx.check_model(info)  # shard 1 holds the metadata

    def keep(info: GGUFInfo) -> bool:
        # a model --quantize replaces is quantized from where it lies, never stored
        return ctx.quantize is None or info.file_type == ctx.quantize

    inputs = [
        ingest(
            f,
            span,
            "FROM",
            store=ctx.store,
            cache=ctx.cache,
            events=ctx.events,
            link=ctx.link,
            locked_digest=ctx.locked_digests.get(f.real) if i == 0 else None,
            check=not_adapter,
            keep=keep,
        )
        for i, f in enumerate(files)
    ]
    infos = [i.info for i in inputs]
    if shards:
        for i, info in enumerate(infos):
            if info.split_count not in (None, len(shards)) or info.split_no not in (None, i):
                raise codes.SPLIT_INCOMPLETE.error(
                    f"FROM `{ref}`: shard {files[i].given.name} does not belong to this set",
                    span,
                    hint=f"its header says shard {info.split_no} of {info.split_count}",
                )
        info = merge_split(infos)
        try:
            check_model(info, files[0].given)
        except GGUFFormatError as exc:
            raise not_gguf(f"FROM `{ref}`", exc, span, f"{exc.path}: {exc.reason}") from None
    else:
        info = infos[0]
    blobs = [i.blob for i in inputs]
    return ResolvedBase(
        layers=tuple(Descriptor(mt.MODEL, b.digest, b.size) for b in blobs),
        info=info,
        locked=LockedInput(
            "FROM",
            ref,
            "file",
            blobs[0].digest,
            path=relative(path, req.base_dir),
            size=sum(b.size for b in blobs),
        ),
        model_files=tuple(f.real for f in files),
        model_file_keys=tuple(i.key for i in inputs),
        stored=all(i.stored for i in inputs),
        drifted=any(i.drifted for i in inputs),
    )
