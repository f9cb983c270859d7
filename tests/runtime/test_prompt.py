"""Template choice and word wrapping (pure: no llama.cpp)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfc.cli.repl import WordWrap
from mfc.gguf_meta import GGUFInfo
from mfc.runtime.model import ChatMessage, ModelImage
from mfc.runtime.prompt import choose_template, conversation, render


def image(path: Path = Path("m.gguf"), **gguf: object) -> ModelImage:
    return ModelImage("m", path, gguf=GGUFInfo(**gguf))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "override", "kind"),
    [
        ({"architecture": "llama", "chat_template": "{{ x }}"}, "{{ .Prompt }}", "template"),
        ({"architecture": "llama", "chat_template": "{{ x }}"}, None, "gguf"),
        ({"architecture": "llama"}, None, "builtin"),
        ({"architecture": "counterarch"}, None, "raw"),
        ({}, None, "raw"),
    ],
    ids=["override", "gguf", "builtin-by-family", "unknown-family", "nothing"],
)
def test_template_choice_order(
    fields: dict[str, str], override: str | None, kind: str, llama3_vocab: Path
) -> None:
    assert choose_template(image(llama3_vocab, **fields), override).kind == kind


def test_builtin_needs_its_tokens_in_the_vocabulary() -> None:
    assert choose_template(image(Path("no-such.gguf"), architecture="llama")).kind == "raw"


def test_builtin_family_template_renders(snapshot, llama3_vocab: Path) -> None:
    img = image(llama3_vocab, architecture="llama")
    msgs = conversation(img, [ChatMessage("user", "hi"), ChatMessage("assistant", "yo")], "q")
    assert render(choose_template(img), msgs, image=img) == snapshot


def test_conversation_order() -> None:
    img = ModelImage("m", Path("m.gguf"), system="S", messages=(ChatMessage("user", "M1"),))
    msgs = conversation(img, [ChatMessage("assistant", "H")], "P")
    assert [(m.role, m.content) for m in msgs] == [
        ("system", "S"),
        ("user", "M1"),
        ("assistant", "H"),
        ("user", "P"),
    ]
    assert conversation(img, [], None, system="X")[0] == ChatMessage("system", "X")


def wrap(text: str, width: int | None, pieces: int = 3) -> str:
    out = io.StringIO()
    w = WordWrap(out, width)
    step = max(1, len(text) // pieces)
    for i in range(0, len(text), step):
        w.write(text[i : i + step])
    w.finish()
    return out.getvalue()


def test_word_wrap_breaks_between_words() -> None:
    text = "the quick brown fox jumps over the lazy dog"
    wrapped = wrap(text, 15)
    assert all(len(line) <= 15 for line in wrapped.split("\n"))
    assert wrapped.replace("\n", " ").split() == text.split()


def test_word_wrap_off_and_newlines_kept() -> None:
    assert wrap("a b\nc", None) == "a b\nc"
    assert wrap("ab\ncd ef", 4) == "ab\ncd\nef"


@given(
    text=st.text(alphabet="ab \n", max_size=80),
    width=st.integers(min_value=2, max_value=12),
    pieces=st.integers(min_value=1, max_value=9),
)
def test_word_wrap_keeps_text_and_width(text: str, width: int, pieces: int) -> None:
    wrapped = wrap(text, width, pieces)
    assert "".join(wrapped.split()) == "".join(text.split())
    assert all(len(line.rstrip(" ")) <= width for line in wrapped.split("\n"))
