"""GGUF header facts for every part of mfc: one fast reader over ``gguf.GGUFReader``.

The header is never hand-parsed: gguf-py owns the format. This leaf module
(it imports nothing from mfc, so the store and the runtime can use it without
pulling in the builder) turns the reader's fields into a small frozen record
(cacheable as JSON, so a warm rebuild never re-reads a multi-GB header) and
turns the reader's failures into a plain ``GGUFFormatError`` whose ``reason``
the builder places on the Modelfile line that named the file, and whose ``kind``
says what class of damage it is (the builder words its diagnostic from the kind,
never from the text).

Besides reading, ``inspect`` checks what llama.cpp would refuse or crash on that
the header alone shows (no tensor data is read): tensor data offsets as llama.cpp
lays them out (aligned, contiguous, inside the file), tensor dimensions, the
vocabulary arrays (equal lengths, no duplicate token — a duplicate makes
llama.cpp abort), and tensor shapes against the hyper-parameters
(``token_embd`` is ``[n_embd, n_vocab]``, ``blk.N`` for N < ``block_count``, no gap).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from struct import error as struct_error
from typing import Any, Literal

GGUF_MAGIC = b"GGUF"

# `model-00001-of-00003.gguf`: llama.cpp's gguf-split naming.
SPLIT_RE = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


ProblemKind = Literal[
    "unreadable",  # the file cannot be read (permissions, I/O error)
    "empty",
    "not-gguf",  # no GGUF magic: a wrong file (an HTML error page, a safetensors file, ...)
    "damaged-header",  # the magic is there but the metadata or tensor table does not parse
    "truncated",  # tensor data runs past the end of the file: a partial download
    "layout",  # tensor data offsets are not where llama.cpp expects them
    "vocab",  # the tokenizer arrays disagree, or a token repeats
    "shape",  # tensor shapes contradict the hyper-parameters or each other
    "split",  # a shard of a split set is missing
]


class GGUFFormatError(Exception):
    """The file is not a usable GGUF; ``reason`` says why in user terms, ``kind`` what class
    of problem it is (for callers that choose a wording or a label)."""

    def __init__(self, path: Path, reason: str, kind: ProblemKind = "damaged-header"):
        self.path = path
        self.reason = reason
        self.kind: ProblemKind = kind
        super().__init__(f"{path}: {reason}")


class _TableProblem(Exception):
    """Raised inside the reader (which knows no path) for a bad tensor table entry."""

    def __init__(self, kind: ProblemKind, reason: str):
        self.kind: ProblemKind = kind
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # GGUF order: ne0 (fastest-varying) first, like llama.cpp
    type: str  # ggml type name, e.g. "F32", "Q8_0"


# Ollama's non-verbose /api/show replaces an array of more than this many items by [].
SHOWN_ARRAY_MAX = 5


@dataclass(frozen=True, slots=True)
class ProjectorFacts:
    """What a projector (mmproj / CLIP) GGUF says about itself: libmtmd's keys.

    ``metadata`` keeps every key/value of the file (an array of more than
    ``SHOWN_ARRAY_MAX`` items as ``[]``, as Ollama's /api/show does): a projector has a
    few dozen keys, and /api/show's ``projector_info`` and the builder's key checks
    read them without opening the file again.
    """

    projector_type: str | None = None  # clip.projector_type, else clip.vision.projector_type
    has_vision_encoder: bool = False
    has_audio_encoder: bool = False
    image_size: int | None = None  # clip.vision.image_size
    patch_size: int | None = None  # clip.vision.patch_size
    projection_dim: int | None = None  # clip.vision.projection_dim (not the output width)
    embedding_length: int | None = None  # clip.vision.embedding_length (the encoder's width)
    block_count: int | None = None  # clip.vision.block_count
    feature_layers: tuple[int, ...] = ()  # clip.vision.feature_layer
    metadata: tuple[tuple[str, Any], ...] = ()

    def has_key(self, key: str) -> bool:
        return any(k == key for k, _ in self.metadata)

    def value(self, key: str) -> Any:
        return next((v for k, v in self.metadata if k == key), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "projector_type": self.projector_type,
            "has_vision_encoder": self.has_vision_encoder,
            "has_audio_encoder": self.has_audio_encoder,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "projection_dim": self.projection_dim,
            "embedding_length": self.embedding_length,
            "block_count": self.block_count,
            "feature_layers": list(self.feature_layers),
            "metadata": [[k, v] for k, v in self.metadata],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProjectorFacts:
        fields = {name: data[name] for name in cls.__dataclass_fields__}
        fields["feature_layers"] = tuple(data["feature_layers"])
        fields["metadata"] = tuple((str(k), v) for k, v in data["metadata"])
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    """What the builder, the runtime and ``mfc show`` know about a GGUF file before loading it.

    Every field has a default so the runtime can describe a model it has no file
    for (tests, a bare prompt render).
    """

    architecture: str | None = None
    name: str | None = None  # general.name
    general_type: str = "model"  # "model" unless the file says otherwise (e.g. "adapter")
    adapter_type: str | None = None  # "lora" for LoRA adapters
    parameter_count: int = 0
    file_type: str | None = None  # Ollama's names: F32, F16, BF16, Q8_0, Q4_K_M, …
    context_length: int | None = None
    embedding_length: int | None = None
    chat_template: str | None = None
    bos_token: str = ""  # the BOS/EOS token's text ("" if the file names none)
    eos_token: str = ""
    split_no: int | None = None  # 0-based shard index of a split set
    split_count: int | None = None
    token_count: int | None = None  # entries of tokenizer.ggml.tokens (None: no vocabulary)
    block_count: int | None = None  # <arch>.block_count
    tensors: tuple[TensorInfo, ...] = ()
    # set when the file is a projector by Ollama's rules (``is_projector_kv``)
    projector: ProjectorFacts | None = None

    @property
    def is_adapter(self) -> bool:
        return self.general_type == "adapter"

    @property
    def is_projector(self) -> bool:
        return self.projector is not None

    def tensor_map(self) -> dict[str, TensorInfo]:
        return {t.name: t for t in self.tensors}

    def to_json(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "name": self.name,
            "general_type": self.general_type,
            "adapter_type": self.adapter_type,
            "parameter_count": self.parameter_count,
            "file_type": self.file_type,
            "context_length": self.context_length,
            "embedding_length": self.embedding_length,
            "chat_template": self.chat_template,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "split_no": self.split_no,
            "split_count": self.split_count,
            "token_count": self.token_count,
            "block_count": self.block_count,
            "tensors": [[t.name, list(t.shape), t.type] for t in self.tensors],
            "projector": self.projector.to_json() if self.projector is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GGUFInfo:
        """Raises KeyError for a record missing any field (e.g. one cached by an older mfc)."""
        fields = {name: data[name] for name in cls.__dataclass_fields__}
        fields["tensors"] = tuple(
            TensorInfo(name, tuple(shape), type_) for name, shape, type_ in data["tensors"]
        )
        if data["projector"] is not None:
            fields["projector"] = ProjectorFacts.from_json(data["projector"])
        return cls(**fields)


def file_type_name(value: int) -> str:
    """Ollama's spelling of ``general.file_type`` (``MOSTLY_Q4_K_M`` → ``Q4_K_M``)."""
    from gguf import LlamaFileType

    try:
        name = LlamaFileType(value).name
    except ValueError:
        return f"unknown({value})"
    if name == "ALL_F32":
        return "F32"
    return name.removeprefix("MOSTLY_")


def parameter_count_label(count: int) -> str:
    """Ollama's ``model_type``: 8030261248 → ``8.0B``, 1235814400 → ``1.2B``, 135M → ``135M``."""
    if count >= 1_000:
        for unit, scale, decimals in (("B", 1e9, 1), ("M", 1e6, 2), ("K", 1e3, 0)):
            if count >= scale:
                value = count / scale
                if unit == "K" or value == math.floor(value):
                    return f"{value:.0f}{unit}"
                return f"{value:.{decimals}f}{unit}"
    return str(count)


def _field(reader: Any, key: str) -> Any:
    field = reader.get_field(key)
    if field is None:
        return None
    try:
        return field.contents()
    except (ValueError, UnicodeDecodeError, IndexError):
        return None


def _token_text(reader: Any, id_key: str) -> str:
    """The text of the token ``id_key`` names ("" if none), without decoding the vocabulary.

    The fast reader keeps ``tokenizer.ggml.tokens`` as raw bytes, so this steps over the
    length prefixes of the tokens before it and decodes just the one string.
    """
    import struct

    from gguf import GGUFValueType

    token_id = _field(reader, id_key)
    tokens = reader.get_field("tokenizer.ggml.tokens")
    if (
        tokens is None
        or not isinstance(token_id, int)
        or tokens.types != [GGUFValueType.ARRAY, GGUFValueType.STRING]
        or not 0 <= token_id < int(tokens.parts[-2][0])  # parts end: count, raw bytes
    ):
        return ""
    u64 = struct.Struct("<Q" if reader.endianess.name == "LITTLE" else ">Q")
    buf = memoryview(tokens.parts[-1]).cast("B")
    offs = 0
    for _ in range(token_id):
        offs += 8 + u64.unpack_from(buf, offs)[0]
    (n,) = u64.unpack_from(buf, offs)
    return bytes(buf[offs + 8 : offs + 8 + n]).decode("utf-8", errors="replace")


def _guess_file_type(tensors: list[TensorInfo]) -> str:
    """Without ``general.file_type``: the most common type among the weight matrices."""
    matrices = [t.type for t in tensors if len(t.shape) >= 2]
    if not matrices:
        return "F32"
    return Counter(matrices).most_common(1)[0][0]


def _check_magic(path: Path) -> int:
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise GGUFFormatError(path, f"cannot read the file: {exc.strerror}", "unreadable") from exc
    if size == 0:
        raise GGUFFormatError(path, "the file is empty", "empty")
    if magic != GGUF_MAGIC:
        raise GGUFFormatError(
            path,
            f"not a GGUF file (it starts with {magic!r}, a GGUF file starts with b'GGUF')",
            "not-gguf",
        )
    return size


def _reader_class() -> type:
    """``GGUFReader`` with arrays read in bulk instead of one numpy view per element.

    Why: gguf-py materialises every element of every array field separately, which takes
    about 20 s for a llama-3-sized vocabulary (128k tokens, 280k merges) — longer than
    hashing the model. The builder never reads those arrays, so this subclass keeps the
    reader's field/tensor machinery and only changes how arrays are stored: numeric arrays
    become one numpy view (``contents()`` still works), string arrays are stepped over by
    their length prefixes and kept as raw bytes (their ``contents()`` is empty).
    """
    import struct

    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFValueType

    class HeaderReader(GGUFReader):
        def _build_tensors(self, start_offs: int, fields: list[Any]) -> None:
            """Check each tensor's place as llama.cpp's ``gguf_init`` does, then let gguf-py
            map the data: a bad entry is a ``_TableProblem`` with a kind, not a numpy error."""
            expected, size, align = 0, len(self.data), int(self.alignment)
            for field in fields:
                _, name_data, n_dims, dims, raw_dtype, offset = field.parts
                name = bytes(name_data).decode("utf-8", errors="replace")
                if int(n_dims[0]) > 4:
                    raise _TableProblem("layout", f"tensor `{name}` has {n_dims[0]} dimensions")
                try:
                    qtype = GGMLQuantizationType(int(raw_dtype[0]))
                except ValueError:
                    raise _TableProblem(
                        "layout", f"tensor `{name}` has unknown type {int(raw_dtype[0])}"
                    ) from None
                block, type_size = GGML_QUANT_SIZES[qtype]
                shape = [int(d) for d in dims]
                if shape and shape[0] % block:
                    raise _TableProblem(
                        "shape",
                        f"tensor `{name}` ({qtype.name}) has {shape[0]} columns, "
                        f"not a multiple of its block size {block}",
                    )
                n_bytes = math.prod(shape) // block * type_size
                start = int(offset[0])
                if start != expected:
                    raise _TableProblem(
                        "layout",
                        f"tensor `{name}` starts at data offset {start}, but the tensors "
                        f"before it end at {expected} (llama.cpp needs them back to back, "
                        f"aligned to {align} bytes)",
                    )
                end = start_offs + start + n_bytes
                if end > size:
                    raise _TableProblem(
                        "truncated",
                        f"the file is truncated: tensor data stops early at byte {size} "
                        f"(tensor `{name}` ends at byte {end})",
                    )
                expected = start + (n_bytes + align - 1) // align * align
            super()._build_tensors(start_offs, fields)

        def _get_field_parts(self, orig_offs: int, raw_type: int) -> Any:
            if GGUFValueType(raw_type) != GGUFValueType.ARRAY:
                return super()._get_field_parts(orig_offs, raw_type)
            offs = orig_offs
            raw_itype = self._get(offs, np.uint32)
            offs += int(raw_itype.nbytes)
            alen = self._get(offs, np.uint64)
            offs += int(alen.nbytes)
            itype = GGUFValueType(int(raw_itype[0]))
            count = int(alen[0])
            types = [GGUFValueType.ARRAY, itype]
            nptype = self.gguf_scalar_to_np.get(itype)
            if nptype is not None:
                values = self._get(offs, nptype, count)
                if len(values) != count:
                    raise ValueError(f"array field at byte {orig_offs} runs past the end")
                end = offs + int(values.nbytes)
                return end - orig_offs, [raw_itype, alen, values], [2], types
            if itype != GGUFValueType.STRING:
                return super()._get_field_parts(orig_offs, raw_type)
            u64 = struct.Struct("<Q" if self.endianess.name == "LITTLE" else ">Q")
            buf, limit = memoryview(self.data.data), len(self.data)
            end = offs
            for _ in range(count):
                (n,) = u64.unpack_from(buf, end)
                end += 8 + n
                if end > limit:
                    raise ValueError(f"array field at byte {orig_offs} runs past the end")
            raw = self._get(offs, np.uint8, end - offs)
            return end - orig_offs, [raw_itype, alen, raw], [], types

    return HeaderReader


def inspect(path: Path) -> GGUFInfo:
    """Read the header and tensor table of one GGUF file (or one shard of a split set)."""
    from gguf import GGMLQuantizationType

    size = _check_magic(path)
    try:
        reader = _reader_class()(path)
    except _TableProblem as exc:
        raise GGUFFormatError(path, exc.reason, exc.kind) from None
    except (
        ValueError,
        IndexError,
        KeyError,
        OverflowError,
        UnicodeDecodeError,
        struct_error,
    ) as exc:
        reason = f"the GGUF header is damaged or truncated ({size} bytes): {exc}"
        raise GGUFFormatError(path, reason, "damaged-header") from exc
    except OSError as exc:
        raise GGUFFormatError(path, f"cannot read the file: {exc}", "unreadable") from exc

    tensors: list[TensorInfo] = []
    parameter_count = 0
    for t in reader.tensors:
        tensors.append(
            TensorInfo(
                t.name, tuple(int(d) for d in t.shape), GGMLQuantizationType(t.tensor_type).name
            )
        )
        parameter_count += int(t.n_elements)

    arch = _field(reader, "general.architecture")
    raw_file_type = _field(reader, "general.file_type")
    split_no = _field(reader, "split.no")
    split_count = _field(reader, "split.count")
    token_count = _check_vocabulary(reader, path)
    info = GGUFInfo(
        architecture=arch,
        name=_field(reader, "general.name"),
        general_type=_field(reader, "general.type") or "model",
        adapter_type=_field(reader, "adapter.type"),
        parameter_count=parameter_count,
        file_type=(
            file_type_name(int(raw_file_type))
            if raw_file_type is not None
            else _guess_file_type(tensors)
        ),
        context_length=_int_or_none(_field(reader, f"{arch}.context_length")) if arch else None,
        embedding_length=_int_or_none(_field(reader, f"{arch}.embedding_length")) if arch else None,
        chat_template=_field(reader, "tokenizer.chat_template"),
        bos_token=_token_text(reader, "tokenizer.ggml.bos_token_id"),
        eos_token=_token_text(reader, "tokenizer.ggml.eos_token_id"),
        split_no=_int_or_none(split_no),
        split_count=_int_or_none(split_count),
        token_count=token_count,
        block_count=_int_or_none(_field(reader, f"{arch}.block_count")) if arch else None,
        tensors=tuple(tensors),
        projector=_projector_facts(reader) if _is_projector(reader, arch) else None,
    )
    if (info.split_count or 1) == 1:  # a shard alone lacks the others' tensors
        check_model(info, path)
    return info


def is_projector_kv(
    general_type: str | None,
    architecture: str | None,
    block_count: int | None,
    vision_block_count: int | None,
    has_vision_encoder: bool,
    has_audio_encoder: bool,
) -> bool:
    """Ollama's rule (server/create.go ``isProjectorGGUF``): ``general.type`` is
    ``projector`` or ``mmproj``; or ``<arch>.vision.block_count`` without
    ``<arch>.block_count`` (a standalone vision model); or architecture ``clip`` without
    ``clip.block_count`` and with a vision or audio encoder."""
    if general_type in ("projector", "mmproj"):
        return True
    if not block_count and (vision_block_count or 0) > 0:
        return True
    return architecture == "clip" and not block_count and (has_vision_encoder or has_audio_encoder)


def _is_projector(reader: Any, arch: str | None) -> bool:
    prefix = arch or "unknown"  # Ollama's Architecture() default

    def flag(key: str) -> bool:
        return _field(reader, key) is True

    return is_projector_kv(
        _field(reader, "general.type"),
        arch,
        _int_or_none(_field(reader, f"{prefix}.block_count")),
        _int_or_none(_field(reader, f"{prefix}.vision.block_count")),
        flag(f"{prefix}.has_vision_encoder"),
        flag(f"{prefix}.has_audio_encoder"),
    )


def _shown_value(field: Any) -> Any:
    """A metadata value as JSON: scalars as they are, short arrays as lists, long arrays
    (and string arrays, which the fast reader keeps raw) as ``[]``."""
    if field.types and field.types[0].name == "ARRAY":
        count = int(field.parts[4][0])  # parts: key length, key, type, item type, count, …
        if count > SHOWN_ARRAY_MAX or field.types[-1].name == "STRING":
            return []
    try:
        value = field.contents()
    except (ValueError, UnicodeDecodeError, IndexError):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [v if not isinstance(v, float) or math.isfinite(v) else None for v in value]
    return value


def _projector_facts(reader: Any) -> ProjectorFacts:
    """libmtmd's keys of a projector (clip-impl.h's ``KEY_*``), and all of its metadata."""
    metadata = tuple(
        (name, _shown_value(field))
        for name, field in reader.fields.items()
        if not name.startswith("GGUF.")
    )
    layers = _field(reader, "clip.vision.feature_layer")
    return ProjectorFacts(
        projector_type=_field(reader, "clip.projector_type")
        or _field(reader, "clip.vision.projector_type"),
        has_vision_encoder=_field(reader, "clip.has_vision_encoder") is True,
        has_audio_encoder=_field(reader, "clip.has_audio_encoder") is True,
        image_size=_int_or_none(_field(reader, "clip.vision.image_size")),
        patch_size=_int_or_none(_field(reader, "clip.vision.patch_size")),
        projection_dim=_int_or_none(_field(reader, "clip.vision.projection_dim")),
        embedding_length=_int_or_none(_field(reader, "clip.vision.embedding_length")),
        block_count=_int_or_none(_field(reader, "clip.vision.block_count")),
        feature_layers=tuple(int(v) for v in layers) if isinstance(layers, list) else (),
        metadata=metadata,
    )


def _array_count(reader: Any, key: str) -> int | None:
    field = reader.get_field(key)
    if field is None or not field.types or field.types[0].name != "ARRAY":
        return None
    return int(field.parts[4][0])  # parts: key length, key, type, item type, count, items


def _check_vocabulary(reader: Any, path: Path) -> int | None:
    """The number of tokens; GGUFFormatError ("vocab") when llama.cpp could not load them.

    llama.cpp indexes scores and token types by token id without checking their length,
    and aborts (GGML_ASSERT, SIGABRT) when a token text repeats — what a flipped byte
    inside the vocabulary most often does. One pass over the raw token strings.
    """
    import struct

    tokens = reader.get_field("tokenizer.ggml.tokens")
    if tokens is None:
        return None
    count = _array_count(reader, "tokenizer.ggml.tokens")
    if count is None or tokens.types[-1].name != "STRING":
        raise GGUFFormatError(path, "tokenizer.ggml.tokens is not an array of strings", "vocab")
    for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        n = _array_count(reader, key)
        if n is not None and n != count:
            raise GGUFFormatError(
                path,
                f"the vocabulary is damaged: {key} has {n} entries, "
                f"tokenizer.ggml.tokens has {count}",
                "vocab",
            )
    u64 = struct.Struct("<Q" if reader.endianess.name == "LITTLE" else ">Q")
    buf = memoryview(tokens.parts[-1]).cast("B")
    seen: dict[bytes, int] = {}
    offs = 0
    for token_id in range(count):
        (n,) = u64.unpack_from(buf, offs)
        text = bytes(buf[offs + 8 : offs + 8 + n])
        offs += 8 + n
        first = seen.setdefault(text, token_id)
        if first != token_id:
            shown = text.decode("utf-8", errors="replace")
            raise GGUFFormatError(
                path,
                f"the vocabulary is damaged: token {token_id} repeats token {first} "
                f"({shown!r}); llama.cpp aborts on a repeated token",
                "vocab",
            )
    return count


_BLOCK_RE = re.compile(r"^blk\.(\d+)\.")


def check_model(info: GGUFInfo, path: Path) -> None:
    """Tensor shapes against the hyper-parameters, for a whole model (all shards merged).

    GGUFFormatError ("shape"): the vocabulary size against ``token_embd``/``output``
    (``[n_embd, n_vocab]``), ``n_embd`` against ``<arch>.embedding_length``, the
    ``blk.N`` tensors against ``<arch>.block_count`` (none beyond it, no gap). Adapters
    and files without these keys pass: only what the file states is compared.
    """
    if info.is_adapter:
        return
    tensors = info.tensor_map()
    for name in ("token_embd.weight", "output.weight"):
        t = tensors.get(name)
        if t is None or len(t.shape) != 2:
            continue
        n_embd, n_vocab = t.shape
        if info.token_count is not None and n_vocab != info.token_count:
            raise GGUFFormatError(
                path,
                f"tensor `{name}` is {list(t.shape)}: room for {n_vocab} tokens, "
                f"but the vocabulary has {info.token_count}",
                "shape",
            )
        if info.embedding_length is not None and n_embd != info.embedding_length:
            raise GGUFFormatError(
                path,
                f"tensor `{name}` is {list(t.shape)}: {n_embd} wide, but "
                f"{info.architecture}.embedding_length is {info.embedding_length}",
                "shape",
            )
    if info.block_count is None:
        return
    blocks = {int(m[1]) for t in info.tensors if (m := _BLOCK_RE.match(t.name))}
    if not blocks:
        return
    if max(blocks) >= info.block_count:
        raise GGUFFormatError(
            path,
            f"tensors for block {max(blocks)} exist, but {info.architecture}.block_count "
            f"is {info.block_count}",
            "shape",
        )
    # a gap, not missing trailing blocks: a converter may drop trailing MTP/next-n blocks
    # that block_count still counts, and llama.cpp loads those as optional
    missing = sorted(set(range(max(blocks))) - blocks)
    if missing:
        raise GGUFFormatError(
            path,
            f"there are tensors for block {max(blocks)}, but none for block {missing[0]} "
            f"(`blk.{missing[0]}.*`)",
            "shape",
        )


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def split_set(first: Path) -> list[Path] | None:
    """The shards of a split set named like ``x-00001-of-00003.gguf``, in order; None if not split.

    Raises GGUFFormatError naming the first missing shard.
    """
    match = SPLIT_RE.match(first.name)
    if match is None:
        return None
    count = int(match["count"])
    shards = [
        first.with_name(f"{match['prefix']}-{i:05d}-of-{count:05d}.gguf")
        for i in range(1, count + 1)
    ]
    for shard in shards:
        if not shard.is_file():
            raise GGUFFormatError(
                shard, f"shard {shard.name} of the {count}-file split set is missing", "split"
            )
    return shards


def merge_split(infos: list[GGUFInfo]) -> GGUFInfo:
    """One record for a split model: metadata from shard 1, tensors and counts from all."""
    return replace(
        infos[0],
        parameter_count=sum(i.parameter_count for i in infos),
        split_no=None,
        split_count=len(infos),
        tensors=tuple(t for info in infos for t in info.tensors),
    )
