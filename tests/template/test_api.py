"""The public surface of `mfc.template` is exactly `__all__`, sorted (httpx's test, adapted)."""

from __future__ import annotations

import mfc.template


def test_all_is_sorted_and_complete() -> None:
    public = {name for name in vars(mfc.template) if not name.startswith("_")}
    modules = {
        "builtin",
        "errors",
        "features",
        "go_ast",
        "go_parse",
        "go_translate",
        "go_values",
        "ollama",
        "render",
        "sandbox",
        "annotations",
    }
    assert sorted(mfc.template.__all__) == mfc.template.__all__
    assert public - modules == set(mfc.template.__all__)


def test_contract_names_exist() -> None:
    for name in (
        "check_template",
        "translate_go",
        "render_prompt",
        "builtin_template",
        "TemplateSyntaxError",
        "TemplateRenderError",
        "TemplateProblem",
    ):
        assert hasattr(mfc.template, name)
