"""Write the project's tiny, deterministic GGUF fixture models (see docs/fixtures.md).

No weights can be downloaded where mfc is tested, so the project makes its own: the `counter`
model (design in `mfc.testing.counter`) in three tensor types, two LoRA adapters for it, two
chat-format counters, a vision projector for it (design in `mfc.testing.vision`) with two
faulty variants, and three broken files for error paths. Same code, same bytes: nothing here
reads a clock or a random source, so a test pins each file's sha256.

    python -m mfc.testing.fixtures DIR
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np

from mfc.testing import chatmodels, counter, vision
from mfc.testing.counter import expected_continuation

__all__ = [
    "NAMES",
    "add_counter_tokenizer",
    "add_llama_hparams",
    "expected_continuation",
    "generate",
    "main",
    "write_gguf",
]

NAMES: tuple[str, ...] = (
    "counter-f32.gguf",
    "counter-f16.gguf",
    "counter-q8_0.gguf",
    "lora-constant.gguf",
    "lora-shift.gguf",
    "lora-other-arch.gguf",
    "truncated.gguf",
    "not-gguf.gguf",
    "tools.gguf",
    "think.gguf",
    "vision-proj.gguf",
    "vision-proj-wide.gguf",
    "vision-proj-missing.gguf",
)

_QT = gguf.GGMLQuantizationType
_FILE_TYPE = {_QT.F32: gguf.LlamaFileType.ALL_F32, _QT.F16: gguf.LlamaFileType.MOSTLY_F16}
_FILE_TYPE[_QT.Q8_0] = gguf.LlamaFileType.MOSTLY_Q8_0

NOT_GGUF = b"<!doctype html>\n<title>404 Not Found</title>\nThis is not a GGUF file.\n"
"""What a failed download often leaves behind under a model's name."""


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` into a temp file next to ``path``, fsync it, then rename it into place."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        tmp.chmod(0o644)  # mkstemp makes 0600; fixtures are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def add_llama_hparams(
    w: gguf.GGUFWriter,
    *,
    n_vocab: int,
    context_length: int,
    n_embd: int,
    n_layer: int,
    n_ff: int,
    n_head: int,
    rms_eps: float,
) -> None:
    """The llama hyperparameter keys (no GQA: as many KV heads as heads; RoPE base 10000)."""
    w.add_vocab_size(n_vocab)
    w.add_context_length(context_length)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(rms_eps)


def add_counter_tokenizer(w: gguf.GGUFWriter) -> None:
    """The counter model's SentencePiece-style vocabulary and special tokens (BOS added)."""
    v = counter.vocab()
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(list(v.tokens))
    w.add_token_scores(list(v.scores))
    w.add_token_types(list(v.types))
    w.add_unk_token_id(counter.UNK)
    w.add_bos_token_id(counter.BOS)
    w.add_eos_token_id(counter.EOS)
    w.add_add_bos_token(True)


def write_gguf(writer: gguf.GGUFWriter, path: Path) -> None:
    """Write everything added to ``writer`` to ``path`` and close it."""
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _add_tensor(writer: gguf.GGUFWriter, name: str, data: np.ndarray, qtype: _QT) -> None:
    """Add a tensor; 1-D tensors (norms) stay F32 as llama.cpp's converters keep them."""
    data = data.astype(np.float32)
    if data.ndim == 1 or qtype == _QT.F32:
        writer.add_tensor(name, data)
    elif qtype == _QT.F16:
        writer.add_tensor(name, data.astype(np.float16))
    else:
        writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)


def _counter(path: Path, qtype: _QT) -> None:
    w = gguf.GGUFWriter(path=None, arch="llama")
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(f"counter-{qtype.name.lower()}")
    w.add_description("mfc test fixture: greedy decoding continues each character with the next")
    w.add_license("MIT")
    w.add_file_type(_FILE_TYPE[qtype])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_llama_hparams(
        w,
        n_vocab=len(counter.vocab().tokens),
        context_length=counter.CONTEXT_LENGTH,
        n_embd=counter.N_EMBD,
        n_layer=counter.N_LAYER,
        n_ff=counter.N_FF,
        n_head=counter.N_HEAD,
        rms_eps=counter.RMS_EPS,
    )
    add_counter_tokenizer(w)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)
    w.add_chat_template(counter.CHAT_TEMPLATE)

    _add_blocks(w, counter.token_embd(), counter.output_weight(), qtype)
    write_gguf(w, path)


def _add_blocks(w: gguf.GGUFWriter, embd: np.ndarray, output: np.ndarray, qtype: _QT) -> None:
    """The counter's tensors around given embeddings and output projection."""
    d, ff = counter.N_EMBD, counter.N_FF
    _add_tensor(w, "token_embd.weight", embd, qtype)
    for i in range(counter.N_LAYER):
        # Zero attention and FFN: each block adds nothing to the residual stream.
        _add_tensor(w, f"blk.{i}.attn_norm.weight", np.ones(d), qtype)
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            _add_tensor(w, f"blk.{i}.{t}.weight", np.zeros((d, d)), qtype)
        _add_tensor(w, f"blk.{i}.ffn_norm.weight", np.ones(d), qtype)
        _add_tensor(w, f"blk.{i}.ffn_gate.weight", np.zeros((ff, d)), qtype)
        _add_tensor(w, f"blk.{i}.ffn_up.weight", np.zeros((ff, d)), qtype)
        _add_tensor(w, f"blk.{i}.ffn_down.weight", np.zeros((d, ff)), qtype)
    _add_tensor(w, "output_norm.weight", np.ones(d), qtype)
    _add_tensor(w, "output.weight", output, qtype)


def _chat(path: Path, model: chatmodels.ChatModel) -> None:
    """A `mfc.testing.chatmodels` design: the counter's shape, its own vocabulary, F16."""
    v = chatmodels.vocab(model)
    w = gguf.GGUFWriter(path=None, arch="llama")
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(model.name)
    w.add_description(model.description)
    w.add_license("MIT")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_llama_hparams(
        w,
        n_vocab=len(v.tokens),
        context_length=counter.CONTEXT_LENGTH,
        n_embd=counter.N_EMBD,
        n_layer=counter.N_LAYER,
        n_ff=counter.N_FF,
        n_head=counter.N_HEAD,
        rms_eps=counter.RMS_EPS,
    )
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(list(v.tokens))
    w.add_token_scores(list(v.scores))
    w.add_token_types(list(v.types))
    w.add_unk_token_id(counter.UNK)
    w.add_bos_token_id(counter.BOS)
    w.add_eos_token_id(counter.EOS)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)
    w.add_chat_template(model.chat_template)
    _add_blocks(w, chatmodels.token_embd(model), chatmodels.output_weight(model), _QT.F16)
    write_gguf(w, path)


def _lora(path: Path, name: str, arch: str, tensors: dict[str, np.ndarray], alpha: float) -> None:
    w = gguf.GGUFWriter(path=None, arch=arch)
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_name(name)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for tensor_name, data in tensors.items():
        w.add_tensor(tensor_name, data.astype(np.float32))
    write_gguf(w, path)


def _counter_lora(fixture: str) -> Callable[[Path], None]:
    lora = counter.ADAPTERS[fixture]()
    tensors = {"output.weight.lora_a": lora.a, "output.weight.lora_b": lora.b}
    return lambda p: _lora(p, fixture.removesuffix(".gguf"), "llama", tensors, lora.alpha)


def _other_arch_lora(path: Path) -> None:
    """A well-formed adapter, but for a 64-wide qwen2 model with a 300-token vocabulary."""
    rank, width, vocab = 4, 64, 300
    a = np.tile(np.eye(rank, width, dtype=np.float32), 1)
    b = np.eye(vocab, rank, dtype=np.float32)
    tensors = {"output.weight.lora_a": a, "output.weight.lora_b": b}
    _lora(path, "lora-other-arch", "qwen2", tensors, float(rank))


def _projector(
    name: str, width: int = counter.N_EMBD, missing: str | None = None
) -> Callable[[Path], None]:
    """A `mfc.testing.vision` projector (``clip`` architecture, ``general.type`` mmproj, F32).

    ``width`` is the projection's output width; ``missing`` names a tensor left out.
    """

    def write(path: Path) -> None:
        w = gguf.GGUFWriter(path=None, arch="clip")
        w.add_type("mmproj")
        w.add_name(name.removesuffix(".gguf"))
        w.add_description("mfc test fixture: a plain red, green or blue image reads as r, g or b")
        w.add_license("MIT")
        w.add_file_type(gguf.LlamaFileType.ALL_F32)
        for key, value in vision.keys(width).items():
            if isinstance(value, bool):
                w.add_bool(key, value)
            elif isinstance(value, str):
                w.add_string(key, value)
            elif isinstance(value, int):
                w.add_uint32(key, value)
            elif isinstance(value, float):
                w.add_float32(key, value)
            else:
                w.add_array(key, list(value))  # type: ignore[call-overload]
        for tensor_name, data in vision.tensors(width).items():
            if tensor_name != missing:
                w.add_tensor(tensor_name, data.astype(np.float32))
        write_gguf(w, path)

    return write


def _truncated(source: Path) -> Callable[[Path], None]:
    """The f32 counter cut halfway: header and metadata intact, tensor data short."""

    def write(path: Path) -> None:
        data = source.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    return write


def _not_gguf(path: Path) -> None:
    path.write_bytes(NOT_GGUF)


def generate(dest: Path) -> dict[str, Path]:
    """Write every fixture into ``dest`` (created if missing); returns name → path."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    paths = {name: dest / name for name in NAMES}
    writers: dict[str, Callable[[Path], None]] = {
        "counter-f32.gguf": lambda p: _counter(p, _QT.F32),
        "counter-f16.gguf": lambda p: _counter(p, _QT.F16),
        "counter-q8_0.gguf": lambda p: _counter(p, _QT.Q8_0),
        "lora-constant.gguf": _counter_lora("lora-constant.gguf"),
        "lora-shift.gguf": _counter_lora("lora-shift.gguf"),
        "lora-other-arch.gguf": _other_arch_lora,
        "truncated.gguf": _truncated(paths["counter-f32.gguf"]),
        "not-gguf.gguf": _not_gguf,
        "tools.gguf": lambda p: _chat(p, chatmodels.TOOLS),
        "think.gguf": lambda p: _chat(p, chatmodels.THINK),
        "vision-proj.gguf": _projector("vision-proj.gguf"),
        "vision-proj-wide.gguf": _projector("vision-proj-wide.gguf", width=vision.WIDE_WIDTH),
        "vision-proj-missing.gguf": _projector(
            "vision-proj-missing.gguf", missing=vision.MISSING_TENSOR
        ),
    }
    for name in NAMES:
        _atomic_write(paths[name], writers[name])
    return paths


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mfc.testing.fixtures DIR", file=sys.stderr)
        return 2
    for path in generate(Path(args[0])).values():
        print(f"{path}  {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
