"""The chat template stored in the project's real fixture GGUF renders as HF renders it."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from mfc.template import check_template, detect_syntax, render_prompt
from mfc.testing import counter


def _chat_template(path: Path) -> str:
    field = gguf.GGUFReader(path).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "abc"}],
        [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "abc"},
            {"role": "assistant", "content": "def"},
            {"role": "user", "content": "g"},
        ],
    ],
    ids=["user", "system-user-assistant-user"],
)
def test_fixture_chat_template_matches_reference(fixture_models: dict[str, Path], messages) -> None:
    text = _chat_template(fixture_models["counter-f32.gguf"])
    assert detect_syntax(text) == "jinja"
    assert check_template(text) is None
    out = render_prompt(
        text,
        messages=messages,
        bos_token="<s>",
        eos_token="</s>",
        origin="chat_template in counter-f32.gguf",
    )
    assert out == counter.render_chat(messages)
