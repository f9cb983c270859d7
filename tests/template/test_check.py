"""Syntax detection and `check_template`: the first problem, located (1-based line/column)."""

from __future__ import annotations

import re

import pytest

from mfc.template import (
    TemplateRenderError,
    TemplateSyntaxError,
    check_template,
    detect_syntax,
    render_prompt,
    translate_go,
)

# (id, Go template, message fragment, line, column)
GO_ERRORS = [
    ("unknown-function", "{{ foo .X }}", "function `foo` is not defined", 1, 4),
    ("undefined-variable", "ok\n  {{ $x }}", "undefined variable `$x`", 2, 6),
    (
        "var-out-of-scope",
        "{{ if true }}{{ $x := 1 }}{{ end }}{{ $x }}",
        "undefined variable `$x`",
        1,
        39,
    ),
    ("missing-end", "{{ if .X }}\nyes", "missing {{end}} for this {{if}}", 1, 1),
    ("missing-end-inner", "{{ range .M }}\n  {{- if .X }}a\n{{ end }}", "for this {{range}}", 1, 1),
    ("missing-end-nested", "a{{ if .X }}{{ with .Y }}b{{ end }}", "for this {{if}}", 1, 2),
    ("missing-end-else-if", "{{ if .X }}a\n{{ else if .Y }}b", "for this {{if}}", 1, 1),
    ("missing-end-else", "x{{ with .X }}a{{ else }}b", "for this {{with}}", 1, 2),
    ("stray-end", "a\n{{ end }}", "unexpected `{{end}}`", 2, 4),
    ("stray-else", "{{ else }}", "unexpected `{{else}}`", 1, 4),
    ("unclosed-action", "x {{ .Prompt", "unclosed action", 1, 3),
    ("unclosed-action-newline", "x {{ .Prompt\n", "unclosed action", 1, 3),
    ("bad-brace", "{{ .A } }}", 'unexpected "}" in operand', 1, 7),
    ("unterminated-string", '{{ "abc }}', "unterminated quoted string", 1, 4),
    ("bad-char", "{{ .A @ }}", "unrecognized character in action", 1, 7),
    ("break-outside-range", "{{ break }}", "{{break}} outside {{range}}", 1, 4),
    ("missing-if-value", "{{ if }}x{{ end }}", "missing value for if", 1, 7),
    ("define-unsupported", '{{ define "x" }}{{ end }}', "`define` is not supported", 1, 4),
    ("unclosed-comment", "{{/* abc", "unclosed comment", 1, 1),
    ("comment-not-closed-right", "{{/* a */ x}}", "comment ends before closing delimiter", 1, 8),
    ("dot-after-literal", '{{ .X "a".B }}', "unexpected . after term", 1, 7),
    ("non-executable-stage", "{{ .A | 3 }}", "non executable command in pipeline stage 2", 1, 9),
    ("too-many-decl", "{{ if $a, $b := .X }}{{ end }}", "too many declarations in if", 1, 9),
    ("right-paren", "{{ .A) }}", "unexpected right paren", 1, 6),
    ("unclosed-paren", "{{ (len .A }}", "unclosed left paren", 1, 12),
    (
        "else-after-else",
        "{{ if .A }}{{ else }}{{ else }}{{ end }}",
        "expected end; found {{else}}",
        1,
        25,
    ),
]


@pytest.mark.parametrize(
    ("text", "fragment", "line", "column"),
    [e[1:] for e in GO_ERRORS],
    ids=[e[0] for e in GO_ERRORS],
)
def test_go_errors_are_located(text: str, fragment: str, line: int, column: int) -> None:
    with pytest.raises(TemplateSyntaxError) as err:
        translate_go(text)
    assert fragment in err.value.message
    assert (err.value.line, err.value.column) == (line, column)
    problem = check_template(text)
    assert problem is not None
    assert problem.syntax == "go"
    assert (problem.message, problem.line, problem.column) == (err.value.message, line, column)


@pytest.mark.parametrize(
    ("text", "syntax"),
    [
        ("{{ .Prompt }}", "go"),
        ("{{- if .System }}x{{ end }}", "go"),
        ("{{ $x := 1 }}", "go"),
        ("{{/* c */}}", "go"),
        ("{{ range .Messages }}{{ end }}", "go"),
        ("{{ json .Tools }}", "go"),
        ("no actions at all", "go"),
        ("{% for m in messages %}{{ m.content }}{% endfor %}", "jinja"),
        ("{{ bos_token }}{{ messages[0]['content'] }}", "jinja"),
        ("{{ messages }}", "jinja"),
        ("{# comment #}{{ .Prompt }}", "jinja"),
    ],
)
def test_detect_syntax(text: str, syntax: str) -> None:
    assert detect_syntax(text) == syntax


@pytest.mark.parametrize(
    "text",
    [
        "{{ .Prompt }}",
        "{{ if .System }}{{ .System }}{{ end }}{{ .Prompt }}",
        "{% for m in messages %}{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}>{% endif %}",
        "",
    ],
)
def test_valid_templates_have_no_problem(text: str) -> None:
    assert check_template(text) is None


@pytest.mark.parametrize(
    ("text", "fragment", "line", "column"),
    [
        ("{% for m in messages %}\n  {{ m.content }}\n", "`{% for %}` is never closed", 1, 1),
        (
            "a\n {%- for m in x %}{% if m %}\n{% endif %}{% if y %}",
            "`{% if %}` is never closed",
            3,
            12,
        ),
        ("line one\n  {% if x %}{% endfor %}", "endfor", 2, 13),
        ("{{ messages | nosuchfilter }}", "nosuchfilter", 1, 15),
        ("{{ messages }}\n{% if %}", "expected an expression", 2, 7),
        ("{% if x %}\n{{ x + }}\n{% endif %}", "unexpected", 2, 8),
        ("{% if x %}{{ y }}{% endif %}{% if %}", "expected an expression", 1, 35),
        ("{# c #}\n  {{ x y }}", "expected token 'end of print statement', got 'y'", 2, 8),
        ("{# c #}\n{{ x +", "unexpected 'end of template'", 2, 7),
        ("{# c #}{{ (x", "unexpected end of template", 1, 13),
    ],
)
def test_jinja_errors_are_located(text: str, fragment: str, line: int, column: int) -> None:
    problem = check_template(text)
    assert problem is not None
    assert problem.syntax == "jinja"
    assert fragment in problem.message
    assert (problem.line, problem.column) == (line, column)


@pytest.mark.parametrize(
    ("text", "fragment", "syntax"),
    [
        ("{{ if .A }}" * 2000 + "{{ end }}" * 2000, "nests more than 40 levels deep", "go"),
        ("{{ range .L }}" * 13 + "{{ end }}" * 13, "`range` nests more than 12", "go"),
        ("{{ " + "(" * 500 + ".A" + ")" * 500 + " }}", "nests more than 40 levels deep", "go"),
        ("{% if a %}" * 2000 + "{% endif %}" * 2000, "nests too deeply", "jinja"),
        ("{% for a in b %}" * 60 + "{% endfor %}" * 60, "nests too deeply", "jinja"),
    ],
    ids=["go-if", "go-range", "go-parens", "jinja-if", "jinja-for"],
)
def test_absurd_nesting_is_a_problem_not_a_crash(text: str, fragment: str, syntax: str) -> None:
    problem = check_template(text)
    assert problem is not None
    assert fragment in problem.message
    assert problem.syntax == syntax
    with pytest.raises(TemplateRenderError, match="nest"):
        render_prompt(text, messages=[], origin="t")


def test_reasonable_nesting_renders() -> None:
    text = "{{ range $i, $v := .L }}" * 12 + "x" + "{{ end }}" * 12
    assert check_template(text) is None
    assert render_prompt(text, messages=[], origin="t") == ""


# (id, template, message fragment, line, column): found by the trial render, not the parser
RENDER_ERRORS = [
    (
        "jinja-dunder",
        "{% for m in messages %}\n  {{ m.content.__class__ }}{% endfor %}",
        "unsafe template: access to attribute `__class__`",
        2,
        16,
        "jinja",
    ),
    (
        "jinja-mro",
        "{{ messages[0].__class__.__mro__ }}",
        "access to attribute `__class__`",
        1,
        16,
        "jinja",
    ),
    (
        "go-unknown-message-field",
        "{{ range .Messages }}\n{{ .Rol }}: {{ .Content }}{{ end }}",
        "can't evaluate field Rol in type *api.Message",
        2,
        4,
        "go",
    ),
    (
        "go-field-of-string",
        "{{ .System }}{{ .Prompt.Text }}",
        "field Text in type string",
        1,
        24,
        "go",
    ),
    (
        "jinja-always-raises",
        "{% if true %}\n  {{ raise_exception('not a chat model') }}{% endif %}",
        "not a chat model",
        2,
        6,
        "jinja",
    ),
]


@pytest.mark.parametrize(
    ("text", "fragment", "line", "column", "syntax"),
    [e[1:] for e in RENDER_ERRORS],
    ids=[e[0] for e in RENDER_ERRORS],
)
def test_render_errors_are_found_by_check(
    text: str, fragment: str, line: int, column: int, syntax: str
) -> None:
    with pytest.raises(TemplateRenderError, match=re.escape(fragment)):  # fails at run time
        render_prompt(text, messages=[{"role": "user", "content": "hi"}], origin="t")
    problem = check_template(text)
    assert problem is not None
    assert problem.message.startswith("rendering fails: ")
    assert fragment in problem.message
    assert (problem.line, problem.column, problem.syntax) == (line, column, syntax)
    assert problem.severity == "error"


REFUSES_SYSTEM = (
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}"
)


def test_raise_on_some_conversations_is_only_a_warning() -> None:
    assert check_template(REFUSES_SYSTEM) is None  # not an error: it renders user turns
    problem = check_template(REFUSES_SYSTEM, warnings=True)
    assert problem is not None
    assert problem.severity == "warning"
    assert problem.message == (
        "rendering fails on a system + user + assistant + user conversation: "
        "System role not supported"
    )
    assert (problem.line, problem.column) == (1, 44)


def test_problem_severity_defaults_to_error() -> None:
    problem = check_template("{{ foo .X }}", warnings=True)
    assert problem is not None and problem.severity == "error"
