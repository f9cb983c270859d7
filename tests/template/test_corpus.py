"""Every corpus template × conversation shape, rendered and snapshotted; Ollama's goldens exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfc.template import (
    TemplateRenderError,
    check_template,
    detect_syntax,
    render_prompt,
    translate_go,
)

CORPUS = Path(__file__).parent / "corpus"
TEMPLATES = sorted([*CORPUS.glob("go/*.gotmpl"), *CORPUS.glob("jinja/*.jinja")])

HELLO = {"role": "user", "content": "Hello, how are you?"}
GREAT = {"role": "assistant", "content": "I'm doing great. How can I help you today?"}
SHOW = {"role": "user", "content": "I'd like to show off how chat templating works!"}
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather",
        "parameters": {
            "type": "object",
            "required": ["location"],
            "properties": {
                "location": {
                    "type": "string",
                    "description": "The city and state, e.g. San Francisco, CA",
                },
                "format": {
                    "type": "string",
                    "description": "celsius or fahrenheit",
                    "enum": ["celsius", "fahrenheit"],
                },
            },
        },
    },
}
ASK = {"role": "user", "content": "What's the weather like today in Paris?"}
CALL = {
    "role": "assistant",
    "content": "",
    "tool_calls": [
        {
            "function": {
                "name": "get_weather",
                "arguments": {"location": "Paris, France", "format": "celsius"},
            }
        }
    ],
}
RESULT = {"role": "tool", "content": "22", "tool_name": "get_weather"}

# name -> (messages, keyword arguments for render_prompt)
SHAPES: dict[str, tuple[list[dict], dict]] = {
    "user": ([HELLO], {}),
    "user-assistant-user": ([HELLO, GREAT, SHOW], {}),
    "system-user-assistant-user": ([SYSTEM, HELLO, GREAT, SHOW], {}),
    "system-argument": ([HELLO], {"system": "Answer in French."}),
    "consecutive-users": ([HELLO, SHOW], {}),
    "assistant-prefill": ([HELLO, {"role": "assistant", "content": "Well,"}], {}),
    "tools-single": ([ASK], {"tools": [WEATHER_TOOL]}),
    "tools-call": ([ASK, CALL], {"tools": [WEATHER_TOOL]}),
    "tools-result": ([ASK, CALL, RESULT], {"tools": [WEATHER_TOOL]}),
    "think-off": ([HELLO], {"think": False}),
}


def _render(path: Path, shape: str) -> str:
    messages, kwargs = SHAPES[shape]
    try:
        return render_prompt(
            path.read_text("utf-8"),
            messages=messages,
            bos_token="<s>",
            eos_token="</s>",
            origin=path.name,
            **kwargs,
        )
    except TemplateRenderError as exc:  # some HF templates refuse some shapes by design
        return f"ERROR: {exc}"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_corpus_template_checks_clean(path: Path) -> None:
    text = path.read_text("utf-8")
    assert detect_syntax(text) == ("go" if path.suffix == ".gotmpl" else "jinja")
    assert check_template(text) is None
    # Templates that refuse a system message by design are warnings, never errors.
    problem = check_template(text, warnings=True)
    if path.name in REFUSE_SYSTEM:
        assert problem is not None and problem.severity == "warning"
        assert problem.message.startswith("rendering fails on a system + user + assistant")
    else:
        assert problem is None


REFUSE_SYSTEM = {"gemma.jinja", "mistral.jinja"}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_corpus_render(path: Path, shape: str, snapshot) -> None:
    assert _render(path, shape) == snapshot


GOLDENS = sorted(p for p in (CORPUS / "ollama_expected").glob("*/*") if p.is_file())


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_matches_ollama_golden(golden: Path) -> None:
    template = CORPUS / "go" / f"{golden.parent.name}.gotmpl"
    assert _render(template, golden.name) == golden.read_text("utf-8")


def test_goldens_exist() -> None:
    assert len(GOLDENS) >= 16


@pytest.mark.parametrize("path", sorted(CORPUS.glob("go/*.gotmpl")), ids=lambda p: p.name)
def test_corpus_translation(path: Path, snapshot) -> None:
    """The Jinja2 each published Go template becomes (reviewable, line-for-line)."""
    text = path.read_text("utf-8")
    source = translate_go(text)
    assert source.count("\n") == text.count("\n")
    assert source == snapshot


OLLAMA_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get current weather information for a location",
        "parameters": {
            "type": "object",
            "required": ["location"],
            "properties": {
                "location": {
                    "type": "string",
                    "description": "The city and state, e.g. San Francisco, CA",
                },
                "unit": {
                    "type": "string",
                    "description": "The unit of temperature to use",
                    "enum": ["celsius", "fahrenheit"],
                },
            },
        },
    },
}


def test_tool_json_matches_ollama_golden() -> None:
    """Ollama's deepseek `tools-single` golden: tools, no messages, `{{ .Function }}` as JSON."""
    template = (CORPUS / "go" / "deepseek-tools.gotmpl").read_text("utf-8")
    golden = CORPUS / "ollama_expected_tools" / "deepseek-tools.tools-single"
    out = render_prompt(template, messages=[], tools=[OLLAMA_TOOL], origin="deepseek-tools")
    assert out == golden.read_text("utf-8")


@pytest.mark.parametrize(
    ("case", "messages"),
    [
        (
            "tools-single-call",
            [
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "function": {
                                "name": "get_weather",
                                "arguments": {"location": "San Francisco, CA"},
                            }
                        }
                    ],
                }
            ],
        ),
        (
            "tools-single-result",
            [
                {
                    "role": "tool",
                    "content": '{"temperature": 22, "condition": "Sunny", "humidity": 45, '
                    '"wind_speed": 10}',
                }
            ],
        ),
    ],
)
def test_tool_calls_match_ollama_goldens(case: str, messages: list[dict]) -> None:
    template = (CORPUS / "go" / "deepseek-tools.gotmpl").read_text("utf-8")
    golden = CORPUS / "ollama_expected_tools" / f"deepseek-tools.{case}"
    assert render_prompt(template, messages=messages, origin="t") == golden.read_text("utf-8")
