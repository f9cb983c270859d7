"""Hypothesis: the translator is total and faithful on text, and never emits broken Jinja."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mfc.template import (
    TemplateSyntaxError,
    check_template,
    detect_syntax,
    render_prompt,
    translate_go,
)
from mfc.template.sandbox import compile_go

# text with every character that is special to Jinja or Go, but never "{{"
plain_text = st.text(alphabet=st.sampled_from(list("ab {}%#-\r\n\t$.\"`'é😀")), max_size=60).filter(
    lambda s: "{{" not in s
)
template_soup = st.lists(
    st.sampled_from(
        [
            "{{",
            "}}",
            "{{-",
            "-}}",
            " ",
            ".",
            "$x",
            "$",
            ":=",
            "=",
            "if",
            "else",
            "end",
            "range",
            "with",
            "eq",
            "len",
            "(",
            ")",
            "|",
            '"s"',
            "1",
            ".A",
            "\n",
            "/*",
            "*/",
            "a",
            "{",
            "}",
            "break",
            ",",
            "$i",
        ]
    ),
    max_size=30,
).map("".join)


@given(plain_text)
@example("{")
@example("a{\r\n#}")
@example("{%}{#")
def test_text_without_actions_renders_to_itself(text: str) -> None:
    assert compile_go(translate_go(text)).render(root={}) == text
    if "{%" not in text and "{#" not in text:  # those read as Jinja2 (see detect_syntax)
        assert render_prompt(text, messages=[{"role": "user", "content": "x"}], origin="t") == text


@settings(max_examples=400)
@given(template_soup)
def test_translation_is_total(text: str) -> None:
    try:
        source = translate_go(text)
    except TemplateSyntaxError as exc:
        assert exc.line >= 1
        assert exc.column >= 1
        problem = check_template(text)
        if detect_syntax(text) == "go":
            assert problem is not None
            assert (problem.line, problem.column) == (exc.line, exc.column)
        return
    compile_go(source)  # a Jinja syntax error here would be a translator bug
