"""A built-in template only for a model whose vocabulary has its special tokens.

A `llama`-architecture GGUF without `tokenizer.chat_template` is as likely llama2 or
TinyLlama as llama3; llama3's markers would reach such a model as plain text.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mfc.runtime.model import image_from_gguf
from mfc.runtime.prompt import choose_template
from mfc.runtime.session import Session
from mfc.runtime.vocab import has_tokens
from mfc.template.builtin import FAMILIES, MARKERS

LLAMA3 = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


@pytest.fixture
def counter_without_template(fixture_models: dict[str, Path], tmp_path: Path) -> Path:
    """The counter (a `llama` GGUF with no llama3 tokens) with its chat template stripped.

    The key is renamed in place to one llama.cpp ignores (same length, so the file stays valid).
    """
    data = fixture_models["counter-f32.gguf"].read_bytes()
    assert data.count(b"tokenizer.chat_template") == 1
    path = tmp_path / "counter-no-template.gguf"
    path.write_bytes(data.replace(b"tokenizer.chat_template", b"tokenizer.chat_templatX"))
    return path


def test_llama_without_llama3_tokens_is_prompted_raw(counter_without_template: Path) -> None:
    image = image_from_gguf(counter_without_template, params={"temperature": 0.0})
    assert image.gguf.architecture == "llama" and image.gguf.chat_template is None
    chosen = choose_template(image)
    assert chosen.kind == "raw"
    assert "<|start_header_id|>" in chosen.origin  # `/show template` can say why
    s = Session(image, env={})
    try:
        assert s.render("abc") == "abc"
        # Under llama3's markers the counter would continue `…<|end_header_id|>\n\n`.
        assert s.ask("abc").result() == "defghijklmnopqrstuvwxyz"
    finally:
        s.close()


def test_llama_with_llama3_tokens_gets_the_builtin(llama3_vocab: Path) -> None:
    image = image_from_gguf(llama3_vocab)
    chosen = choose_template(image)
    assert chosen.kind == "builtin"
    assert chosen.origin == "built-in template for `llama`"


def test_partial_marker_set_is_not_enough(vocab_gguf: Callable[..., Path]) -> None:
    path = vocab_gguf("half.gguf", ["<s>", "<|start_header_id|>", "<|eot_id|>"])
    assert choose_template(image_from_gguf(path)).kind == "raw"


@pytest.mark.parametrize("stem", sorted(MARKERS))
def test_every_builtin_is_chosen_with_its_markers(
    stem: str, vocab_gguf: Callable[..., Path]
) -> None:
    family = next(f for f, s in FAMILIES.items() if s == stem)
    path = vocab_gguf(f"{stem}.gguf", ["<unk>", *MARKERS[stem], "x"], arch=family)
    assert choose_template(image_from_gguf(path)).kind == "builtin"


def test_has_tokens_matches_whole_tokens_only(
    vocab_gguf: Callable[..., Path], tmp_path: Path
) -> None:
    path = vocab_gguf("v.gguf", ["<s>", "<|eot_id|>x", "é<|im_end|>", "<|im_start|>"])
    assert has_tokens(path, ["<|im_start|>"])
    assert has_tokens(path, ["é<|im_end|>", "<s>"])
    assert not has_tokens(path, ["<|eot_id|>"])  # only a prefix of a token
    assert not has_tokens(path, ["<|im_end|>"])  # only a suffix of a token
    assert has_tokens(path, [])
    assert not has_tokens(tmp_path / "missing.gguf", ["<s>"])


def test_has_tokens_of_a_non_gguf_is_false(fixture_models: dict[str, Path]) -> None:
    assert not has_tokens(fixture_models["not-gguf.gguf"], ["<s>"])
    assert has_tokens(fixture_models["counter-f32.gguf"], ["<s>", "</s>"])
    assert not has_tokens(fixture_models["counter-f32.gguf"], list(LLAMA3))


def test_show_template_says_why_the_prompt_is_raw(counter_without_template: Path) -> None:
    import io

    from mfc.cli.repl import Repl

    image = image_from_gguf(counter_without_template)
    out = io.StringIO()
    Repl(Session(image, env={}), load_image=lambda n: image, out=out).command("/show template")
    assert out.getvalue() == (
        "No prompt template was specified: raw prompt (no template; the built-in template for "
        "`llama` needs <|start_header_id|>, <|end_header_id|>, <|eot_id|> in the vocabulary).\n"
    )
