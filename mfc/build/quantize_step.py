"""The ``--quantize TYPE`` step: the base's model layer → a quantized model layer.

The source is read where it lies — the input file for a FROM file (it is hashed for the
cache key but never stored), the blob for a stored image — and only the output enters
the store. llama.cpp's quantizer runs in a child process (``mfc.build.quantize``).
"""

from __future__ import annotations

import uuid
from pathlib import Path

from mfc.build.caches import BuildCache, FileKey
from mfc.build.events import Events
from mfc.build.sources.base import ResolvedBase
from mfc.build.sources.images import blob_info
from mfc.diagnostics import codes
from mfc.diagnostics.span import Span
from mfc.gguf_meta import GGUFFormatError, GGUFInfo, inspect
from mfc.store import media_types as mt
from mfc.store.manifest import Descriptor
from mfc.store.store import Store


def requested_type(text: str) -> str:
    """``q8_0`` → ``Q8_0`` (an unknown type stays upper-cased: MF212 says so later)."""
    from mfc.build.quantize import normalize_type

    return normalize_type(text) or text.strip().upper()


def quantize_base(
    base: ResolvedBase,
    qtype_text: str,
    span: Span,
    *,
    store: Store,
    cache: BuildCache,
    events: Events,
) -> tuple[tuple[Descriptor, ...], GGUFInfo]:
    """The model layers and facts of ``base`` quantized to ``qtype_text``."""
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
    models = base.model_layers()
    if base.info.file_type == qtype:
        events.info(f"the base is already {qtype}; nothing to quantize")
        if not base.stored:  # left where it lay for a quantizer that is not needed after all
            for layer, path in zip(models, base.model_files, strict=True):
                store.put_file(path, "auto", expected=layer.digest)
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
    cached = cache.quantized(source.digest, qtype)
    if cached is not None:
        path = store.blob_path(cached)
        if path.is_file():
            layer = Descriptor(mt.MODEL, cached, path.stat().st_size)
            info = blob_info(store, cache, (layer,), span)
            events.info(f"quantized {qtype} model from the cache")
            return (layer,), info
    supported = supported_types()
    if supported is not None and qtype not in supported:
        raise codes.BAD_QUANTIZE.error(
            f"--quantize {qtype}: the installed llama.cpp cannot quantize to {qtype}",
            span,
            hint="it takes " + ", ".join(supported) + "; or install a llama.cpp that has it",
        )
    source_file = base.model_files[0] if base.model_files else store.blob_path(source.digest)
    events.step(f"quantizing to {qtype}")
    store.tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = store.tmp_dir / f"quantize-{uuid.uuid4().hex}.gguf"
    try:
        try:
            quantize(source_file, tmp, qtype)
        except QuantizeError as exc:
            raise codes.QUANTIZE_FAILED.error(
                f"--quantize {qtype}: llama.cpp's quantizer failed", span, hint=str(exc)
            ) from None
        if base.model_file_keys and not _unchanged(source_file, base.model_file_keys[0]):
            raise codes.QUANTIZE_FAILED.error(
                f"--quantize {qtype}: {source_file.name} changed while it was read",
                span,
                hint="build again once nothing writes to the file",
            )
        try:
            info = inspect(tmp)
        except GGUFFormatError as exc:
            raise codes.QUANTIZE_FAILED.error(
                f"--quantize {qtype}: unreadable output", span, hint=exc.reason
            ) from None
        blob = store.put_file(tmp, "hard")
    finally:
        tmp.unlink(missing_ok=True)
    cache.record_gguf_info(blob.digest, info)
    cache.record_quantized(source.digest, qtype, blob.digest)
    return (Descriptor(mt.MODEL, blob.digest, blob.size),), info


def _unchanged(path: Path, key: FileKey) -> bool:
    try:
        return FileKey.of(path.stat()) == key
    except OSError:
        return False
