"""Damaged GGUF files are refused at build time with a located MF201 that says what is
wrong (the error's ``kind``), instead of passing `mfc build` and aborting `mfc run`."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from build_helpers import make_spec

from mfc.build import Builder
from mfc.diagnostics.diagnostic import Diagnostic, DiagnosticError
from mfc.gguf_meta import GGUFFormatError, inspect
from mfc.store.store import Store
from mfc.testing import counter
from mfc.testing.fixtures import add_counter_tokenizer, add_llama_hparams, write_gguf


def flipped_vocab(source: Path, dest: Path) -> Path:
    """The counter model with one byte of its vocabulary flipped: token "b" becomes "a"
    (0x62 → 0x61, one bit), so two tokens share a text."""
    data = bytearray(source.read_bytes())
    start = data.find(b"tokenizer.ggml.tokens")
    at = data.find(struct.pack("<Q", 1) + b"b", start)
    data[at + 8] = ord("a")
    dest.write_bytes(bytes(data))
    return dest


def tiny_llama(
    path: Path,
    *,
    n_vocab: int | None = None,
    embd_rows: int | None = None,
    block_count: int = 1,
    blocks: tuple[int, ...] = (0,),
    scores: int | None = None,
) -> Path:
    """A small llama GGUF written with the fixture writer's helpers, optionally inconsistent."""
    v = counter.vocab()
    n = len(v.tokens)
    w = gguf.GGUFWriter(path=None, arch="llama")
    add_llama_hparams(
        w,
        n_vocab=n_vocab or n,
        context_length=64,
        n_embd=8,
        n_layer=block_count,
        n_ff=16,
        n_head=2,
        rms_eps=1e-5,
    )
    if scores is None:
        add_counter_tokenizer(w)
    else:
        w.add_tokenizer_model("llama")
        w.add_token_list(list(v.tokens))
        w.add_token_scores(list(v.scores)[:scores])
    w.add_tensor("token_embd.weight", np.zeros((embd_rows or n, 8), dtype=np.float32))
    for i in blocks:
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(8, dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    write_gguf(w, path)
    return path


def build_error(store: Store, workspace: Path, ref: str) -> Diagnostic:
    spec = make_spec(ref)
    with pytest.raises(DiagnosticError) as exc:
        Builder(store).build_spec(spec, workspace, "m")
    (diag,) = exc.value.diagnostics
    assert diag.span == spec.base.span  # located on the FROM line
    assert store.list_models() == []
    return diag


def test_a_flipped_vocabulary_byte_is_refused(workspace: Path, store: Store) -> None:
    bad = flipped_vocab(workspace / "counter-f32.gguf", workspace / "flipped.gguf")
    with pytest.raises(GGUFFormatError) as exc:
        inspect(bad)
    assert exc.value.kind == "vocab"
    diag = build_error(store, workspace, "flipped.gguf")
    assert (diag.code, diag.message, diag.label) == (
        "MF201",
        "FROM `flipped.gguf` has a damaged vocabulary",
        "damaged vocabulary",
    )
    assert "repeats token" in (diag.hint or "")
    assert "llama.cpp aborts" in (diag.hint or "")


def test_the_flipped_vocabulary_really_aborts_llama_cpp(workspace: Path) -> None:
    """What the check prevents: llama.cpp loads the file, then GGML_ASSERT → SIGABRT."""
    bad = flipped_vocab(workspace / "counter-f32.gguf", workspace / "flipped.gguf")
    code = f"import llama_cpp; llama_cpp.Llama({str(bad)!r}, verbose=False, n_ctx=64)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == -6  # SIGABRT


def test_vocabulary_arrays_of_different_lengths(workspace: Path, store: Store) -> None:
    tiny_llama(workspace / "short-scores.gguf", scores=100)
    diag = build_error(store, workspace, "short-scores.gguf")
    assert diag.label == "damaged vocabulary"
    n = len(counter.vocab().tokens)
    assert f"tokenizer.ggml.scores has 100 entries, tokenizer.ggml.tokens has {n}" in (
        diag.hint or ""
    )


def test_embedding_rows_must_match_the_vocabulary(workspace: Path, store: Store) -> None:
    n = len(counter.vocab().tokens)
    tiny_llama(workspace / "wide.gguf", embd_rows=n + 3)
    with pytest.raises(GGUFFormatError) as exc:
        inspect(workspace / "wide.gguf")
    assert exc.value.kind == "shape"
    diag = build_error(store, workspace, "wide.gguf")
    assert (diag.message, diag.label) == (
        "FROM `wide.gguf` has tensor shapes that contradict its header",
        "inconsistent tensors",
    )
    assert f"room for {n + 3} tokens, but the vocabulary has {n}" in (diag.hint or "")


def test_blocks_must_match_block_count(workspace: Path, store: Store) -> None:
    tiny_llama(workspace / "gap.gguf", block_count=3, blocks=(0, 2))
    diag = build_error(store, workspace, "gap.gguf")
    assert "tensors for block 2, but none for block 1 (`blk.1.*`)" in (diag.hint or "")
    tiny_llama(workspace / "many.gguf", block_count=1, blocks=(0, 1))
    diag = build_error(store, workspace, "many.gguf")
    assert "tensors for block 1 exist, but llama.block_count is 1" in (diag.hint or "")


def test_a_tensor_offset_out_of_place(workspace: Path, store: Store) -> None:
    """llama.cpp needs the tensors back to back (each aligned): a moved offset is refused."""
    source = workspace / "counter-f32.gguf"
    reader = gguf.GGUFReader(source)
    field = reader.tensors[1].field
    at = field.offset + sum(int(p.nbytes) for p in field.parts[:5])
    data = bytearray(source.read_bytes())
    (offset,) = struct.unpack_from("<Q", data, at)
    struct.pack_into("<Q", data, at, offset + 32)
    (workspace / "moved.gguf").write_bytes(bytes(data))
    with pytest.raises(GGUFFormatError) as exc:
        inspect(workspace / "moved.gguf")
    assert exc.value.kind == "layout"
    diag = build_error(store, workspace, "moved.gguf")
    assert diag.label == "damaged tensor table"
    assert f"`{reader.tensors[1].name}` starts at data offset {offset + 32}" in (diag.hint or "")


def test_truncated_files_say_truncated(workspace: Path, store: Store) -> None:
    data = (workspace / "counter-f32.gguf").read_bytes()
    (workspace / "cut.gguf").write_bytes(data[: len(data) - 10])
    with pytest.raises(GGUFFormatError) as exc:
        inspect(workspace / "cut.gguf")
    assert exc.value.kind == "truncated"
    diag = build_error(store, workspace, "cut.gguf")
    assert (diag.message, diag.label) == ("FROM `cut.gguf` is a truncated GGUF file", "truncated")
    assert f"stops early at byte {len(data) - 10}" in (diag.hint or "")


@pytest.mark.parametrize(
    ("name", "kind"), [("not-gguf.gguf", "not-gguf"), ("truncated.gguf", "truncated")]
)
def test_kinds_of_the_broken_fixtures(
    fixture_models: dict[str, Path], name: str, kind: str
) -> None:
    with pytest.raises(GGUFFormatError) as exc:
        inspect(fixture_models[name])
    assert exc.value.kind == kind


def test_the_fixtures_pass(fixture_models: dict[str, Path]) -> None:
    for name in ("counter-f32.gguf", "counter-f16.gguf", "counter-q8_0.gguf", "lora-shift.gguf"):
        info = inspect(fixture_models[name])
        assert info.token_count in (None, len(counter.vocab().tokens))
