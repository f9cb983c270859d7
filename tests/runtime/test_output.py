"""mfc.runtime.output: thinking, content and tool calls out of a streamed answer, as Ollama."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mfc.runtime.output import (
    FAMILY_TOOL_FORMATS,
    Parsed,
    ToolCall,
    output_parser,
    template_supports_thinking,
    template_supports_tools,
    thinking_tags,
)
from mfc.template import builtin_template
from mfc.template.features import ToolCallFormat, tool_call_format
from mfc.testing import chatmodels as cm
from mfc.testing.counter import CHAT_TEMPLATE as COUNTER_TEMPLATE

CORPUS = Path(__file__).resolve().parents[1] / "template" / "corpus"
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {}}}
TOOLS = [WEATHER, TIME]
PARIS = ToolCall("get_weather", {"city": "Paris"}, 0)

QWEN3_GO = """\
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if (and $.IsThinkSet (and .Thinking (or $last (gt $i 0)))) -}}
<think>{{ .Thinking }}</think>
{{ end -}}
{{ .Content }}<|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ if and $.IsThinkSet (not $.Think) -}}
<think>

</think>

{{ end -}}
{{ end }}
{{- end }}"""
THINK = cm.THINK_TEMPLATE


def parse(template: str | None, pieces: list[str] | str, **kwargs: object) -> Parsed:
    parser = output_parser(template, **kwargs)  # type: ignore[arg-type]
    out = Parsed()
    for piece in [pieces] if isinstance(pieces, str) else pieces:
        out = out + parser.feed(piece)
    return out + parser.finish()


def splits(text: str, cuts: list[int]) -> list[str]:
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


# -- template features ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "tags"),
    [
        (THINK, ("<think>", "</think>")),
        (cm.THINK_CHAT_TEMPLATE, ("<think>", "</think>")),
        (QWEN3_GO, ("<think>", "</think>")),
        ((CORPUS / "go" / "deepseek.gotmpl").read_text(), ("<think>", "</think>")),
        ("{{ range .Messages }}<R>{{ .Thinking }}</R>{{ end }}", ("<R>", "</R>")),
        ("{{ .Thinking }}", None),  # not in a range over .Messages
        ("{{ range .Messages }}{{ .Content }}{{ end }}", None),
        (
            "{% for m in messages %}{{ m.content.split('</think>')[-1] }}{% endfor %}",
            ("<think>", "</think>"),
        ),
        ("{{ m.reasoning_content }}{{ content.split('</think>') }}", None),
        (COUNTER_TEMPLATE, None),
        (None, None),
        ("", None),
    ],
)
def test_thinking_tags(template: str | None, tags: tuple[str, str] | None) -> None:
    assert thinking_tags(template) == tags
    assert template_supports_thinking(template) == (tags is not None)


@pytest.mark.parametrize(
    ("template", "tools"),
    [
        (builtin_template("llama3"), True),
        (builtin_template("chatml"), True),
        (builtin_template("mistral"), True),
        (builtin_template("gemma"), False),
        (builtin_template("phi3"), False),
        (cm.TOOLS_TEMPLATE, True),
        (cm.TOOLS_CHAT_TEMPLATE, True),
        (THINK, False),
        (COUNTER_TEMPLATE, False),
        ("{{ if .Tools }}x{{ end }}", True),
        ("{{ .Prompt }} tools", False),  # Go: the word in text is not the variable
        (None, False),
    ],
)
def test_template_supports_tools(template: str | None, tools: bool) -> None:
    assert template_supports_tools(template) == tools


@pytest.mark.parametrize(
    ("template", "fmt"),
    [
        (builtin_template("chatml"), ToolCallFormat("<tool_call>", "</tool_call>")),
        (builtin_template("llama3"), ToolCallFormat("")),
        (builtin_template("mistral"), ToolCallFormat("[TOOL_CALLS]", "", array=True)),
        (
            (CORPUS / "go" / "qwen2.5.gotmpl").read_text(),
            ToolCallFormat("<tool_call>", "</tool_call>"),
        ),
        (
            (CORPUS / "jinja" / "qwen2.5.jinja").read_text(),
            ToolCallFormat("<tool_call>", "</tool_call>"),
        ),
        (cm.TOOLS_TEMPLATE, ToolCallFormat("<tool_call>", "</tool_call>")),
        (cm.TOOLS_CHAT_TEMPLATE, ToolCallFormat("<tool_call>", "</tool_call>")),
        (builtin_template("gemma"), None),  # shows no call
        (COUNTER_TEMPLATE, None),
        ("{{ .Broken", None),
        (None, None),
    ],
)
def test_tool_call_format_from_template(template: str | None, fmt: ToolCallFormat | None) -> None:
    assert tool_call_format(template) == fmt


def test_family_formats_cover_every_builtin_with_tools() -> None:
    for stem, fmt in FAMILY_TOOL_FORMATS.items():
        assert tool_call_format(builtin_template(stem)) == fmt


# -- thinking ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "prompt", "want"),
    [
        ("<think>hmm</think>answer", "", Parsed("answer", "hmm")),
        ("  \n<think>\n  hmm \n</think>\n\n answer ", "", Parsed("answer ", "hmm \n")),
        ("answer <think>x</think>", "", Parsed("answer <think>x</think>")),  # only at the start
        ("  plain", "", Parsed("  plain")),  # no thinking: content untrimmed
        ("hmm</think>answer", "<|assistant|><think>\n", Parsed("answer", "hmm")),
        ("hmm</think>answer", "<|assistant|><think></think>", Parsed("hmm</think>answer")),
        ("<think>unterminated", "", Parsed("", "unterminated")),
        ("<think>held</thi", "", Parsed("", "held</thi")),  # never closed: it was thought
        ("<thi", "", Parsed("<thi")),  # never opened: content
        ("<think>", "", Parsed()),
        ("<think>a</think>", "", Parsed("", "a")),
        ("<think>a</think></think>b", "", Parsed("</think>b", "a")),
        ("", "", Parsed()),
        ("   ", "", Parsed("   ")),
    ],
)
def test_thinking_split(text: str, prompt: str, want: Parsed) -> None:
    assert parse(THINK, text, prompt=prompt) == want
    assert parse(THINK, list(text), prompt=prompt) == want


@pytest.mark.parametrize("think", [None, True, "low", "medium", "high", "max"])
def test_thinking_is_split_unless_think_is_false(think: bool | str | None) -> None:
    text = "<think>x</think>y"
    assert parse(THINK, text, think=think) == Parsed("y", "x")
    assert parse(THINK, text, think=False) == Parsed(text)
    assert parse(COUNTER_TEMPLATE, text, think=True) == Parsed(text)  # no tags: nothing to split
    assert parse(None, text, think=think) == Parsed(text)


def test_qwen3_think_false_prefill_is_not_thinking() -> None:
    from mfc.template import render_prompt

    msgs = [{"role": "user", "content": "hi"}]
    off = render_prompt(QWEN3_GO, messages=msgs, think=False, origin="t")
    assert off.endswith("<think>\n\n</think>\n\n")
    assert parse(QWEN3_GO, "Hello!", prompt=off, think=False) == Parsed("Hello!")
    on = render_prompt(QWEN3_GO, messages=msgs, think=True, origin="t")
    assert parse(QWEN3_GO, "<think>x</think>\n\nHello!", prompt=on, think=True) == Parsed(
        "Hello!", "x"
    )


# -- tool calls ----------------------------------------------------------------------------------

CHATML = builtin_template("chatml")
LLAMA3 = builtin_template("llama3")
MISTRAL = builtin_template("mistral")
CALL = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
ROME = '{"name": "get_time", "arguments": {"city": "Rome"}}'
TIME_ROME = ToolCall("get_time", {"city": "Rome"}, 1)

CASES: dict[str, tuple[str | None, dict, str, Parsed]] = {
    "chatml": (CHATML, {}, f"<tool_call>\n{CALL}\n</tool_call>", Parsed(tool_calls=(PARIS,))),
    "chatml-content-before": (
        CHATML,
        {},
        f"Let me look.\n<tool_call>\n{CALL}\n</tool_call>",
        Parsed("Let me look.\n", tool_calls=(PARIS,)),
    ),
    "chatml-two-tags": (
        CHATML,
        {},
        f"<tool_call>\n{CALL}\n</tool_call>\n<tool_call>\n{ROME}\n</tool_call>",
        Parsed(tool_calls=(PARIS, TIME_ROME)),
    ),
    "chatml-two-in-one-tag": (
        CHATML,
        {},
        f"<tool_call>\n{CALL}\n{ROME}\n</tool_call>",
        Parsed(tool_calls=(PARIS, TIME_ROME)),
    ),
    "chatml-text-after": (
        CHATML,
        {},
        f"<tool_call>{CALL}</tool_call>\n\nDone.",
        Parsed("Done.", tool_calls=(PARIS,)),
    ),
    "chatml-arguments-string": (
        CHATML,
        {},
        '<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}</tool_call>',
        Parsed(tool_calls=(PARIS,)),
    ),
    "chatml-parameters": (
        CHATML,
        {},
        '<tool_call>{"name": "get_weather", "parameters": {"city": "Paris"}}</tool_call>',
        Parsed(tool_calls=(PARIS,)),
    ),
    "chatml-unknown-tool": (
        CHATML,
        {},
        '<tool_call>{"name": "launch", "arguments": {}}</tool_call>',
        Parsed('<tool_call>{"name": "launch", "arguments": {}}</tool_call>'),
    ),
    "chatml-not-json": (
        CHATML,
        {},
        "<tool_call>get_weather(Paris)</tool_call> ok",
        Parsed("<tool_call>get_weather(Paris)</tool_call> ok"),
    ),
    "chatml-bad-json-closed": (
        CHATML,
        {},
        '<tool_call>{"name": "get_weather", </tool_call>x',
        Parsed('<tool_call>{"name": "get_weather", </tool_call>x'),
    ),
    "chatml-unterminated-json": (
        CHATML,
        {},
        '<tool_call>\n{"name": "get_weather", "argu',
        Parsed('<tool_call>\n{"name": "get_weather", "argu'),
    ),
    "chatml-unterminated-tag": (
        CHATML,
        {},
        f"<tool_call>{CALL}\n</tool_c",
        Parsed(tool_calls=(PARIS,)),
    ),
    "chatml-empty-tag": (CHATML, {}, "<tool_call></tool_call>", Parsed("<tool_call></tool_call>")),
    "chatml-partial-prefix-at-end": (CHATML, {}, "Hi <tool_ca", Parsed("Hi <tool_ca")),
    "chatml-no-tools": (CHATML, {"tools": None}, f"<tool_call>{CALL}</tool_call>", None),  # type: ignore[dict-item]
    "llama3": (LLAMA3, {}, CALL.replace("arguments", "parameters"), Parsed(tool_calls=(PARIS,))),
    "llama3-two": (LLAMA3, {}, f"{CALL}\n{ROME}", Parsed(tool_calls=(PARIS, TIME_ROME))),
    "llama3-leading-space": (LLAMA3, {}, f"  {CALL}", Parsed(tool_calls=(PARIS,))),
    "llama3-prose": (LLAMA3, {}, f"Sure: {CALL}", Parsed(f"Sure: {CALL}")),
    "llama3-json-not-a-call": (LLAMA3, {}, '{"a": 1} ok', Parsed('{"a": 1} ok')),
    "llama3-unterminated": (LLAMA3, {}, '{"name": "get_wea', Parsed('{"name": "get_wea')),
    "llama3-text-after": (LLAMA3, {}, f"{CALL} then", Parsed("then", tool_calls=(PARIS,))),
    "mistral": (
        MISTRAL,
        {},
        f"[TOOL_CALLS] [{CALL}, {ROME}]",
        Parsed(tool_calls=(PARIS, TIME_ROME)),
    ),
    "mistral-content-before": (
        MISTRAL,
        {},
        f"Checking. [TOOL_CALLS] [{CALL}]",
        Parsed("Checking. ", tool_calls=(PARIS,)),
    ),
    "mistral-mixed-array": (
        MISTRAL,
        {},
        f'[TOOL_CALLS] [{CALL}, {{"name": "nope"}}]',
        Parsed(f'[TOOL_CALLS] [{CALL}, {{"name": "nope"}}]'),
    ),
    "raw-qwen2-family": (
        None,
        {"family": "qwen2"},
        f"<tool_call>{CALL}</tool_call>",
        Parsed(tool_calls=(PARIS,)),
    ),
    "raw-mistral-family": (
        None,
        {"family": "mistral"},
        f"[TOOL_CALLS][{CALL}]",
        Parsed(tool_calls=(PARIS,)),
    ),
    "raw-no-family": (None, {}, CALL, Parsed(tool_calls=(PARIS,))),
    "gemma-falls-back-to-bare-json": (
        builtin_template("gemma"),
        {"family": "gemma"},
        CALL,
        Parsed(tool_calls=(PARIS,)),
    ),
    "function-wrapper": (
        LLAMA3,
        {},
        '{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}',
        Parsed(tool_calls=(PARIS,)),
    ),
    "thinking-then-call": (
        cm.TOOLS_TEMPLATE.replace(
            "{{ .Content }}",
            "{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}",
        ),
        {},
        f"<think>need weather</think>\n<tool_call>{CALL}</tool_call>",
        Parsed(thinking="need weather", tool_calls=(PARIS,)),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tool_calls(case: str) -> None:
    template, kwargs, text, want = CASES[case]
    options = {"tools": TOOLS, **kwargs}
    if want is None:
        want = Parsed(text)
    assert parse(template, text, **options) == want
    assert parse(template, list(text), **options) == want  # one character at a time


def test_calls_are_emitted_as_soon_as_complete() -> None:
    parser = output_parser(CHATML, tools=TOOLS)
    assert parser.feed("<tool_") == Parsed()
    assert parser.feed("call>\n" + CALL[:-1]) == Parsed()
    assert parser.feed(CALL[-1]) == Parsed(tool_calls=(PARIS,))
    assert parser.feed("\n</tool_call>") == Parsed()
    assert parser.finish() == Parsed()
    assert parser.finish() == Parsed()


def test_content_is_released_as_soon_as_certain() -> None:
    parser = output_parser(CHATML, tools=TOOLS)
    assert parser.feed("Hello <") == Parsed("Hello ")
    assert parser.feed("b>") == Parsed("<b>")
    thinker = output_parser(THINK)
    assert thinker.feed("<th") == Parsed()
    assert thinker.feed("ink>I wonder</") == Parsed(thinking="I wonder")
    assert thinker.feed("think> so") == Parsed("so")


# -- any split gives the same answer ---------------------------------------------------------------

STREAMS: list[tuple[str | None, dict, str]] = [
    (template, {"tools": TOOLS, **kwargs}, text)
    for template, kwargs, text, _ in CASES.values()
    if kwargs.get("tools", TOOLS) is not None
]
STREAMS += [
    (THINK, {}, "  <think>\n a </think>b</think>\n\n c"),
    (THINK, {"prompt": "<think>"}, "x</th</think> y"),
    (QWEN3_GO, {"tools": TOOLS}, f"<think>\nplan\n</think>\n\nOK <tool_call>{CALL}</tool_call>"),
]


@settings(max_examples=60, deadline=None)
@given(which=st.integers(0, len(STREAMS) - 1), cuts=st.lists(st.integers(0, 400), max_size=12))
@example(which=0, cuts=list(range(200)))
def test_any_split_gives_the_same_total(which: int, cuts: list[int]) -> None:
    template, kwargs, text = STREAMS[which]
    assert parse(template, splits(text, cuts), **kwargs) == parse(template, text, **kwargs)


@pytest.mark.parametrize("which", range(len(STREAMS)))
def test_every_single_cut(which: int) -> None:
    template, kwargs, text = STREAMS[which]
    whole = parse(template, text, **kwargs)
    for cut in range(len(text) + 1):
        assert parse(template, [text[:cut], text[cut:]], **kwargs) == whole, cut


@settings(max_examples=150, deadline=None)
@given(
    parts=st.lists(
        st.sampled_from(
            [
                "<think>",
                "</think>",
                "<tool_call>",
                "</tool_call>",
                CALL,
                ROME,
                "{",
                "}",
                " ",
                "\n",
                "a",
                "<",
                '"',
            ]
        ),
        max_size=12,
    ),
    cuts=st.lists(st.integers(0, 400), max_size=8),
)
def test_fuzz_split_invariance_and_nothing_lost(parts: list[str], cuts: list[int]) -> None:
    """Random markup soup: any split gives the same total, and nothing is lost or doubled."""
    text = "".join(parts)
    template = cm.TOOLS_TEMPLATE.replace(
        "{{ .Content }}", "{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}"
    )
    whole = parse(template, text, tools=TOOLS)
    assert parse(template, splits(text, cuts), tools=TOOLS) == whole
    # a lone "a" is never markup nor part of a call: it is kept, exactly once
    assert (whole.content + whole.thinking).count("a") >= parts.count("a")
    calls_text = "".join(p for p in parts if p in (CALL, ROME))
    assert len(whole.tool_calls) <= calls_text.count('"name"')
    assert [c.index for c in whole.tool_calls] == list(range(len(whole.tool_calls)))
