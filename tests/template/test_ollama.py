"""Ollama's execution rules, checked with the cases of Ollama's own template tests."""

from __future__ import annotations

import pytest

from mfc.template import go_parse, render_prompt
from mfc.template.ollama import collate, identifiers, with_response

MISTRAL_NO_RESPONSE = "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] "
MISTRAL_RESPONSE = (
    "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] {{ .Response }}"
)
MISTRAL_MESSAGES = (
    "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}\n{{- range .Messages }}\n"
    '{{- if eq .Role "user" }}{{ .Content }}[/INST] {{ else if eq .Role "assistant" }}'
    "{{ .Content }}[INST] {{ end }}\n{{- end }}"
)
CHATML_RESPONSE = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ if .Prompt }}"
    "<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
    "{{ .Response }}<|im_end|>\n"
)
CHATML_MESSAGES = (
    "\n{{- range $index, $_ := .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n"
)
HELLO = [
    {"role": "user", "content": "Hello friend!"},
    {"role": "assistant", "content": "Hello human!"},
    {"role": "user", "content": "What is your name?"},
]
SYSTEM = [{"role": "system", "content": "You are a helpful assistant!"}]

EXECUTE_CASES = [
    (
        "mistral",
        [MISTRAL_NO_RESPONSE, MISTRAL_RESPONSE, MISTRAL_MESSAGES],
        HELLO,
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] ",
    ),
    (
        "mistral-system",
        [MISTRAL_NO_RESPONSE, MISTRAL_RESPONSE, MISTRAL_MESSAGES],
        SYSTEM + HELLO,
        "[INST] You are a helpful assistant!\n\nHello friend![/INST] Hello human!"
        "[INST] What is your name?[/INST] ",
    ),
    (
        "mistral-assistant-prefill",
        [
            "[INST] {{ .Prompt }}[/INST] ",
            "[INST] {{ .Prompt }}[/INST] {{ .Response }}",
            "\n{{- range $i, $m := .Messages }}\n"
            '{{- if eq .Role "user" }}[INST] {{ .Content }}[/INST] '
            '{{ else if eq .Role "assistant" }}{{ .Content }}{{ end }}\n{{- end }}',
        ],
        [*HELLO, {"role": "assistant", "content": "My name is Ollama and I"}],
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] "
        "My name is Ollama and I",
    ),
    (
        "chatml",
        [CHATML_RESPONSE, CHATML_MESSAGES],
        SYSTEM + HELLO,
        "<|im_start|>system\nYou are a helpful assistant!<|im_end|>\n"
        "<|im_start|>user\nHello friend!<|im_end|>\n"
        "<|im_start|>assistant\nHello human!<|im_end|>\n"
        "<|im_start|>user\nWhat is your name?<|im_end|>\n"
        "<|im_start|>assistant\n",
    ),
]


@pytest.mark.parametrize(
    ("template", "messages", "expected"),
    [(t, m, e) for name, ts, m, e in EXECUTE_CASES for t in ts],
    ids=[f"{name}-{i}" for name, ts, _, _ in EXECUTE_CASES for i in range(len(ts))],
)
def test_execute_like_ollama(template: str, messages: list[dict], expected: str) -> None:
    assert render_prompt(template, messages=messages, origin="test") == expected


@pytest.mark.parametrize(
    ("template", "names"),
    [
        ("{{ .Prompt }}", ["prompt", "response"]),
        ("{{ .System }} {{ .Prompt }}", ["prompt", "response", "system"]),
        ("{{ .System }} {{ .Prompt }} {{ .Response }}", ["prompt", "response", "system"]),
        (
            "{{ with .Tools }}{{ . }}{{ end }} {{ .System }} {{ .Prompt }}",
            ["prompt", "response", "system", "tools"],
        ),
        (
            "{{ range .Messages }}{{ .Role }} {{ .Content }}{{ end }}",
            ["content", "messages", "role"],
        ),
        (
            '{{ range .Messages }}{{ if eq .Role "tool" }}Tool Result: {{ .ToolName }} '
            "{{ .Content }}{{ end }}{{ end }}",
            ["content", "messages", "role", "toolname"],
        ),
    ],
)
def test_vars_like_ollama(template: str, names: list[str]) -> None:
    # Ollama's TestParse: identifiers after the `{{ .Response }}` touch-up ("$" excluded)
    found = identifiers(with_response(go_parse.parse(template), len(template)))
    assert sorted(found - {"$"}) == names


def test_collate_merges_consecutive_roles_but_not_tools() -> None:
    system, msgs = collate(
        [
            {"role": "system", "content": "You are helpful"},
            {"role": "user", "content": "Hello"},
            {"role": "user", "content": "How are you?"},
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
            {"role": "tool", "content": "72F", "tool_name": "get_temperature"},
        ]
    )
    assert system == "You are helpful"
    assert [(m.fields["Role"], m.fields["Content"], m.fields["ToolName"]) for m in msgs] == [
        ("system", "You are helpful", ""),
        ("user", "Hello\n\nHow are you?", ""),
        ("tool", "sunny", "get_weather"),
        ("tool", "72F", "get_temperature"),
    ]


def test_all_system_messages_join_into_dot_system() -> None:
    out = render_prompt(
        "{{ .System }}|{{ range .Messages }}{{ .Role }};{{ end }}",
        messages=[
            {"role": "system", "content": "a"},
            {"role": "user", "content": "u"},
            {"role": "system", "content": "b"},
        ],
        origin="t",
    )
    assert out == "a\n\nb|system;user;system;"


def test_system_argument_goes_first_unless_conversation_has_one() -> None:
    tmpl = "{{ range .Messages }}{{ .Role }}={{ .Content }};{{ end }}"
    user = [{"role": "user", "content": "u"}]
    assert render_prompt(tmpl, messages=user, system="S", origin="t") == "system=S;user=u;"
    own = [{"role": "system", "content": "mine"}, *user]
    assert render_prompt(tmpl, messages=own, system="S", origin="t") == "system=mine;user=u;"


def test_legacy_template_renders_a_round_per_exchange() -> None:
    tmpl = "{{ if .System }}S:{{ .System }} {{ end }}U:{{ .Prompt }} A:{{ .Response }}|"
    out = render_prompt(
        tmpl,
        messages=[
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "1"},
            {"role": "assistant", "content": "one"},
            {"role": "system", "content": "sys2"},
            {"role": "user", "content": "2"},
        ],
        origin="t",
    )
    # the open round stops right after `{{ .Response }}`: no trailing "|"
    assert out == "S:sys U:1 A:one|S:sys2 U:2 A:"


def test_legacy_cut_keeps_text_before_response_only() -> None:
    tmpl = "{{ .Prompt }}{{ if .System }}[{{ .Response }}]{{ end }}tail"
    assert (
        render_prompt(tmpl, messages=[{"role": "user", "content": "p"}], system="s", origin="t")
        == "p["
    )


def test_legacy_template_without_response_gets_it_appended() -> None:
    out = render_prompt(
        "Q: {{ .Prompt }}\n",
        messages=[
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ],
        origin="t",
    )
    assert out == "Q: a\nbQ: c\n"


def test_tools_and_tool_calls_reach_messages_templates() -> None:
    tmpl = (
        "{{ range .Tools }}{{ .Function.Name }}:{{ .Function }}\n{{ end }}"
        "{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Name }}({{ .Function.Arguments }})"
        "{{ json .Function.Arguments }}{{ end }}{{ end }}{{ .Tools }}"
    )
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the weather",
                "parameters": {
                    "type": "object",
                    "required": ["location"],
                    "properties": {"location": {"type": "string", "description": "City"}},
                },
            },
        }
    ]
    calls = [{"function": {"name": "get_weather", "arguments": {"location": "Paris", "days": 2}}}]
    out = render_prompt(
        tmpl,
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "", "tool_calls": calls},
        ],
        tools=tools,
        origin="t",
    )
    fn = (
        '{"name":"get_weather","description":"Get the weather","parameters":{"type":"object",'
        '"required":["location"],"properties":{"location":{"type":"string","description":"City"}}}}'
    )
    assert out == (
        f"get_weather:{fn}\n"
        'get_weather({"location":"Paris","days":2}){"location":"Paris","days":2}'
        f'[{{"type":"function","function":{fn}}}]'
    )


@pytest.mark.parametrize(
    ("think", "expected"),
    [
        (None, "think=false set=false"),
        (True, "think=true set=true"),
        (False, "think=false set=true"),
    ],
)
def test_think_flags(think: bool | None, expected: str) -> None:
    tmpl = "{{ range .Messages }}{{ end }}think={{ .Think }} set={{ .IsThinkSet }}"
    assert render_prompt(tmpl, messages=[], think=think, origin="t") == expected


def test_null_fields_are_go_zero_values() -> None:
    tmpl = "{{ range .Messages }}[{{ .Content }}|{{ .ToolCalls }}|{{ len .ToolCalls }}]{{ end }}"
    msgs = [{"role": "assistant", "content": None, "tool_calls": None, "thinking": None}]
    assert render_prompt(tmpl, messages=msgs, origin="t") == "[|[]|0]"


def test_no_tools_is_nil_like_ollama() -> None:
    tmpl = "{{ range .Messages }}{{ end }}{{ if .Tools }}t{{ end }}{{ .Tools }}|{{ json .Tools }}"
    assert render_prompt(tmpl, messages=[], origin="t") == "null|null"
