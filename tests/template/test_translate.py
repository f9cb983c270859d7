"""Go template → Jinja2: a table of Go in, rendered text out (Go's semantics), plus the source."""

from __future__ import annotations

import pytest

from mfc.template import go_values as gv
from mfc.template import translate_go
from mfc.template.errors import TemplateRenderError
from mfc.template.render import render_prompt

MSGS = [
    gv.message({"role": "user", "content": "hi"}),
    gv.message({"role": "assistant", "content": "yo"}),
]

# (id, template, root, expected output)
CASES = [
    ("text", "plain text", {}, "plain text"),
    ("field", "{{ .Prompt }}", {"Prompt": "p"}, "p"),
    ("nested-field", "{{ .A.B }}", {"A": {"B": "x"}}, "x"),
    ("missing-key", "[{{ .Nope }}]", {}, "[<no value>]"),
    ("trim-left", "a  \n {{- .X }}", {"X": "b"}, "ab"),
    ("trim-right", "{{ .X -}} \n\t c", {"X": "b"}, "bc"),
    ("trim-both", "a \n{{- .X -}}\n b", {"X": "-"}, "a-b"),
    ("minus-number-not-trim", "{{-3}}", {}, "-3"),
    ("comment", "a{{/* hidden */}}b", {}, "ab"),
    ("comment-trim", "a  {{- /* hidden */ -}}  b", {}, "ab"),
    ("if-true", "{{ if .X }}yes{{ end }}", {"X": "s"}, "yes"),
    ("if-empty-string", "{{ if .X }}yes{{ else }}no{{ end }}", {"X": ""}, "no"),
    ("if-empty-list", "{{ if .X }}yes{{ else }}no{{ end }}", {"X": []}, "no"),
    ("if-zero", "{{ if .X }}yes{{ else }}no{{ end }}", {"X": 0}, "no"),
    ("if-missing", "{{ if .X }}yes{{ else }}no{{ end }}", {}, "no"),
    (
        "else-if",
        "{{ if eq .R 1 }}one{{ else if eq .R 2 }}two{{ else }}many{{ end }}",
        {"R": 2},
        "two",
    ),
    ("else-if-last", "{{ if .A }}a{{ else if .B }}b{{ else }}c{{ end }}", {}, "c"),
    ("range-list", "{{ range .L }}<{{ . }}>{{ end }}", {"L": ["a", "b"]}, "<a><b>"),
    (
        "range-index",
        "{{ range $i, $v := .L }}{{ $i }}={{ $v }};{{ end }}",
        {"L": ["a", "b"]},
        "0=a;1=b;",
    ),
    ("range-one-var", "{{ range $v := .L }}{{ $v }}{{ end }}", {"L": ["a", "b"]}, "ab"),
    ("range-else", "{{ range .L }}x{{ else }}empty{{ end }}", {"L": []}, "empty"),
    (
        "range-map-sorted",
        "{{ range $k, $v := .M }}{{ $k }}{{ $v }}{{ end }}",
        {"M": {"b": 2, "a": 1}},
        "a1b2",
    ),
    ("range-int", "{{ range 3 }}{{ . }}{{ end }}", {}, "012"),
    (
        "range-break",
        "{{ range .L }}{{ if eq . 2 }}{{ break }}{{ end }}{{ . }}{{ end }}",
        {"L": [1, 2, 3]},
        "1",
    ),
    (
        "range-continue",
        "{{ range .L }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ . }}{{ end }}",
        {"L": [1, 2, 3]},
        "13",
    ),
    ("root-in-range", "{{ range .L }}{{ $.S }}{{ end }}", {"L": [1, 2], "S": "s"}, "ss"),
    ("with", "{{ with .A }}[{{ .B }}]{{ end }}", {"A": {"B": "b"}}, "[b]"),
    ("with-else", "{{ with .A }}x{{ else }}none{{ end }}", {"A": ""}, "none"),
    (
        "if-decl-visible-in-else",
        "{{ if $x := .A }}{{ $x }}{{ else }}[{{ $x }}]{{ end }}",
        {"A": ""},
        "[]",
    ),
    (
        "else-with",
        "{{ with .A }}a{{ else with .B }}b={{ . }}{{ else }}c{{ end }}",
        {"B": "bb"},
        "b=bb",
    ),
    ("else-with-else", "{{ with .A }}a{{ else with .B }}b{{ else }}c{{ end }}", {}, "c"),
    ("else-if-decl", "{{ if .A }}a{{ else if $y := .B }}b={{ $y }}{{ end }}", {"B": "bb"}, "b=bb"),
    ("with-var", "{{ with $a := .A }}{{ $a }}{{ end }}", {"A": "v"}, "v"),
    ("var", "{{ $x := .A }}{{ $x }}{{ $x }}", {"A": "v"}, "vv"),
    (
        "var-assign-in-range",
        '{{ $s := "" }}{{ range .L }}{{ $s = printf "%s%s" $s . }}{{ end }}{{ $s }}',
        {"L": ["a", "b", "c"]},
        "abc",
    ),
    (
        "var-shadow-scoped",
        '{{ $x := "o" }}{{ if true }}{{ $x := "i" }}{{ $x }}{{ end }}{{ $x }}',
        {},
        "io",
    ),
    ("and-value", "{{ and .A .B }}", {"A": "a", "B": "b"}, "b"),
    ("and-short", "{{ and .A .B }}", {"A": "", "B": "b"}, ""),
    ("or-value", "{{ or .A .B }}", {"A": "", "B": "b"}, "b"),
    ("or-first", "{{ or .A .B }}", {"A": "a", "B": "b"}, "a"),
    ("and-short-circuit", "{{ if and .L (index .L 0) }}y{{ else }}n{{ end }}", {"L": []}, "n"),
    ("not", "{{ not .A }}", {"A": ""}, "true"),
    ("eq-multi", '{{ eq .R "a" "b" "c" }}', {"R": "c"}, "true"),
    ("eq-multi-false", '{{ eq .R "a" "b" }}', {"R": "c"}, "false"),
    ("ne", '{{ ne .R "a" }}', {"R": "c"}, "true"),
    ("lt-le-gt-ge", "{{ lt 1 2 }}{{ le 2 2 }}{{ gt 1 2 }}{{ ge 1 2 }}", {}, "truetruefalsefalse"),
    ("len-bytes", "{{ len .S }}", {"S": "é"}, "2"),
    ("len-list", "{{ len .L }}", {"L": [1, 2, 3]}, "3"),
    ("index", "{{ index .L 1 }}", {"L": ["a", "b"]}, "b"),
    ("index-map", '{{ index .M "k" }}', {"M": {"k": "v"}}, "v"),
    ("index-nested", "{{ index .L 1 0 }}", {"L": [[1], [2]]}, "2"),
    ("slice", "{{ slice .L 1 }}", {"L": ["a", "b", "c"]}, "[b c]"),
    ("slice-len-last", "{{ len (slice .L 2) }}", {"L": ["a", "b", "c"]}, "1"),
    ("slice-string", "{{ slice .S 1 3 }}", {"S": "abcd"}, "bc"),
    (
        "json-map",
        "{{ json .M }}",
        {"M": {"b": "<x>", "a": [1, 2.5, True, None]}},
        '{"a":[1,2.5,true,null],"b":"\\u003cx\\u003e"}',
    ),
    ("json-string", "{{ json .S }}", {"S": 'say "hi"\n'}, '"say \\"hi\\"\\n"'),
    ("pipe", "{{ .L | len }}", {"L": [1, 2]}, "2"),
    ("pipe-last-arg", '{{ "x" | printf "%s-%s" "a" }}', {}, "a-x"),
    ("paren-chain", "{{ (index .L 0).Content }}", {"L": MSGS}, "hi"),
    (
        "printf-verbs",
        '{{ printf "%d|%q|%5s|%-3s|%v|%t|%%" 42 "s" "ab" "c" .L true }}',
        {"L": [1, 2]},
        '42|"s"|   ab|c  |[1 2]|true|%',
    ),
    ("print-spacing", '{{ print 1 2 "a" 3 }}', {}, "1 2a3"),
    ("println", "{{ println 1 2 }}", {}, "1 2\n"),
    ("bool-print", "{{ true }} {{ false }}", {}, "true false"),
    ("nil-value-print", "{{ .N }}", {"N": None}, "<nil>"),
    ("float-print", "{{ 1.5 }} {{ 2.0 }} {{ 1e21 }}", {}, "1.5 2 1e+21"),
    ("string-escapes", '{{ "a\\tb\\u00e9" }}{{ `raw\\n` }}', {}, "a\tbé" + "raw\\n"),
    ("char-constant", "{{ 'a' }}", {}, "97"),
    ("delims-in-string", '{{ print "}}" "{{" }}', {}, "}}{{"),
    ("braces-in-text", "{ {x} }{%y%}{#z#}", {}, "{ {x} }{%y%}{#z#}"),
    ("crlf-kept", "a\r\nb {{ .X }}\r\n", {"X": 1}, "a\r\nb 1\r\n"),
    ("trailing-newline-kept", "{{ .X }}\n", {"X": 1}, "1\n"),
    (
        "message-fields",
        "{{ range .M }}{{ .Role }}:{{ .Content }};{{ end }}",
        {"M": MSGS},
        "user:hi;assistant:yo;",
    ),
    ("html", '{{ html "<a href=\\"x\\">" }}', {}, "&lt;a href=&#34;x&#34;&gt;"),
    ("urlquery", '{{ urlquery "a b&c" }}', {}, "a+b%26c"),
    ("newline-in-action", "{{ if\n.X }}y{{ end }}", {"X": 1}, "y"),
]


@pytest.mark.parametrize(
    ("template", "root", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_translation_renders_like_go(render_go, template: str, root: dict, expected: str) -> None:
    assert render_go(template, root) == expected


def test_translation_is_readable_jinja() -> None:
    src = translate_go('{{ if eq .Role "user" }}{{ .Content }}{{ end }}')
    assert (
        src == '{% if go_truth(go_eq(go_field(root, "Role"), "user")) %}'
        '{{ go_output(go_field(root, "Content")) }}{% endif %}'
    )


def test_translation_keeps_source_lines() -> None:
    text = "a\n{{- if .X }}\nb\n{{- end }}\n{{ .Y -}}\n\n\nc"
    src = translate_go(text)
    assert src.count("\n") == text.count("\n")


# Go execution errors: (id, template, root, message fragment, template line)
ERRORS = [
    (
        "struct-field",
        "{{ range .M }}{{ .Nope }}{{ end }}",
        {"M": MSGS},
        "can't evaluate field Nope in type *api.Message",
        1,
    ),
    ("nil-field", "\n\n{{ .A.B }}", {}, "nil pointer evaluating interface {}.B", 3),
    ("index-range", "{{ index .L 5 }}", {"L": [1]}, "index out of range: 5", 1),
    ("eq-types", '{{ eq 1 "1" }}', {}, "incompatible types for comparison", 1),
    ("len-int", "line\n{{ len 3 }}", {}, "len of type int", 2),
    ("not-arity", "{{ not 1 2 }}", {}, "wrong number of args for not", 1),
    ("call", "{{ call .F }}", {}, "call is not supported", 1),
    ("method-args", "{{ .F 1 }}", {}, "can't give argument to non-function", 1),
]


@pytest.mark.parametrize(
    ("template", "root", "fragment", "line"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_execution_errors_name_origin_and_line(
    template: str, root: dict, fragment: str, line: int
) -> None:
    # through render_prompt so the error is wrapped the way callers see it
    from mfc.template import render as render_mod

    program = render_mod.compile_go(translate_go(template))
    with pytest.raises(TemplateRenderError) as err:
        render_mod._run(program, {"root": root}, "Modelfile:7")
    assert fragment in err.value.message
    assert err.value.line == line
    assert str(err.value).startswith("template error in Modelfile:7")


def test_render_prompt_error_names_origin() -> None:
    with pytest.raises(TemplateRenderError, match=r"chat_template in counter-f32\.gguf") as err:
        render_prompt(
            "{{ range .Messages }}{{ .Bogus }}{{ end }}",
            messages=[{"role": "user", "content": "x"}],
            origin="chat_template in counter-f32.gguf",
        )
    assert "can't evaluate field Bogus" in str(err.value)
