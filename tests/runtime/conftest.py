"""Runtime test helpers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gguf
import pytest

LLAMA3_TOKENS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


def write_vocab_only(path: Path, tokens: list[str], arch: str = "llama") -> Path:
    """A GGUF with a token list and no tensors: enough for the template choice."""
    w = gguf.GGUFWriter(path=None, arch=arch)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.write_header_to_file(path)
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def llama3_vocab(tmp_path: Path) -> Path:
    """A `llama` GGUF (no tensors) whose vocabulary has llama3's special tokens."""
    return write_vocab_only(tmp_path / "llama3-vocab.gguf", ["<s>", "a", *LLAMA3_TOKENS])


@pytest.fixture
def vocab_gguf(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str, tokens: list[str], arch: str = "llama") -> Path:
        return write_vocab_only(tmp_path / name, tokens, arch)

    return make
