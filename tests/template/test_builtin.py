"""Built-in templates: each family resolves, checks clean and renders; `templates/` mirrors them."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfc.template import builtin_names, builtin_template, check_template, render_prompt
from mfc.template.builtin import FAMILIES

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_has_a_valid_template(family: str) -> None:
    text = builtin_template(family)
    assert text
    assert check_template(text) is None


@pytest.mark.parametrize("family", ["LLaMA", " Qwen2 ", "GEMMA3"])
def test_family_lookup_ignores_case_and_spaces(family: str) -> None:
    assert builtin_template(family) is not None


def test_unknown_family() -> None:
    assert builtin_template("bert") is None
    assert builtin_template("") is None


def test_required_families_present() -> None:
    assert set(builtin_names()) >= {"llama3", "chatml", "mistral", "gemma", "phi3"}


@pytest.mark.parametrize("name", ["llama3", "chatml", "mistral", "gemma", "phi3"])
def test_builtin_renders_system_and_turns(name: str, snapshot) -> None:
    text = builtin_template(name)
    assert text is not None
    out = render_prompt(
        text,
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "bye"},
        ],
        system="Be brief.",
        origin=f"built-in template for `{name}`",
    )
    assert "Be brief." in out and "hi" in out and "hello" in out and "bye" in out
    assert out == snapshot


@pytest.mark.parametrize("name", ["llama3", "chatml", "mistral", "gemma", "phi3"])
def test_top_level_templates_dir_mirrors_package(name: str) -> None:
    top = REPO / "templates" / f"{name}.gotmpl"
    assert top.read_text("utf-8") == builtin_template(name)
