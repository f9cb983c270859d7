"""Templates are untrusted code: every render runs on a time and output budget.

Nested loops over large ranges, exponential macro recursion and strings that
double themselves each end in a ``TemplateBudgetError`` within the budget; in
`mfc check` that is a located MF109; ordinary templates — and big, legitimate
conversations — are unaffected.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from mfc.template import (
    TemplateBudgetError,
    TemplateError,
    TemplateRenderError,
    builtin_template,
    check_template,
    render_prompt,
    sandbox,
)

USER = [{"role": "user", "content": "Hello!"}]
JINJA_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
GO_LOOPS = "{{ .System }}{{ range $i := 100000 }}{{ range $j := 100000 }}{{ end }}{{ end }}"


@pytest.fixture
def short_budget(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(sandbox, "TIME_LIMIT", 0.3)
    return 0.3


def render(template: str, messages: list[dict[str, str]] = USER) -> str:
    return render_prompt(template, messages=messages, origin="test template")


def budget_error(template: str) -> tuple[TemplateBudgetError, float]:
    start = time.monotonic()
    with pytest.raises(TemplateBudgetError) as info:
        render(template)
    return info.value, time.monotonic() - start


def test_budget_error_is_a_template_error() -> None:
    assert issubclass(TemplateBudgetError, TemplateRenderError)
    assert issubclass(TemplateBudgetError, TemplateError)


@pytest.mark.parametrize(
    "template",
    [
        pytest.param(JINJA_LOOPS, id="jinja-nested-loops"),
        pytest.param(JINJA_LOOPS.replace(">x<", "><"), id="jinja-nested-loops-no-output"),
        pytest.param(GO_LOOPS, id="go-nested-range"),
        pytest.param(
            "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
            "{{ f(40) }}",
            id="exponential-macro",
        ),
        pytest.param(
            "{% for i in range(100000) %}{% for j in range(100000) if j %}{% endfor %}{% endfor %}",
            id="filtered-loop",
        ),
    ],
)
def test_time_budget(template: str, short_budget: float) -> None:
    err, elapsed = budget_error(template)
    assert "time budget" in err.message and "0.3 s" in err.message
    assert err.cause == "budget"
    assert elapsed < short_budget + 1.5


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}", id="output"),
        pytest.param(
            "{% set ns = namespace(a='x') %}{% for i in range(60) %}{% set ns.a = ns.a ~ ns.a %}"
            "{% endfor %}{{ ns.a | length }}",
            id="doubling-concat",
        ),
        pytest.param(
            "{% set ns = namespace(a=['x']) %}{% for i in range(60) %}"
            "{% set ns.a = ns.a + ns.a %}{% endfor %}{{ ns.a | length }}",
            id="doubling-plus",
        ),
        pytest.param(
            "{{ range(100000) | join('-' * 100) }}{{ range(100000) | join('-' * 100) }}",
            id="two-big-chunks",
        ),
    ],
)
def test_output_budget(template: str) -> None:
    err, elapsed = budget_error(template)
    assert "output budget" in err.message and "4 MiB" in err.message
    assert elapsed < 2


def test_the_budget_is_per_prompt(short_budget: float) -> None:
    """An exhausted budget does not leak into the next render."""
    budget_error(JINJA_LOOPS)
    assert render("{{ .Prompt }}") == "Hello!"
    budget_error(GO_LOOPS)
    assert render("{{ .Prompt }}") == "Hello!"


def test_big_conversations_fit_the_budget() -> None:
    """The output budget grows with the input: a 10 MB conversation still renders."""
    text = "word " * 2_000_000
    messages = [{"role": "user", "content": text}, {"role": "assistant", "content": text}]
    out = render_prompt(builtin_template("chatml"), messages=messages, origin="chatml")
    assert len(out) > 2 * len(text)


def test_ordinary_templates_are_unaffected() -> None:
    assert render("{{ .Prompt }}") == "Hello!"
    jinja = "{% for m in messages %}<{{ m.role }}>{{ m.content + '!' }}{{ loop.index ~ '' }}"
    jinja += "{% endfor %}"
    assert render(jinja) == "<user>Hello!!1"
    assert check_template(builtin_template("chatml")) is None
    assert render("{{ range $i := 3 }}{{ $i }}{{ end }}") == "012"


def test_check_template_reports_the_budget_once(short_budget: float) -> None:
    start = time.monotonic()
    problem = check_template(JINJA_LOOPS)
    assert problem is not None and problem.severity == "error"
    # Whichever budget runs out first: time on a slow machine, output (the x's) on a fast one.
    assert "budget" in problem.message and problem.line == 1
    assert time.monotonic() - start < short_budget * 2 + 1  # not once per sample conversation


@pytest.mark.parametrize(
    ("template", "column"),
    [(JINJA_LOOPS, 13), (GO_LOOPS.replace("}}{{ range", "}}\n{{ range", 1), 1)],
    ids=["jinja", "go"],
)
def test_mfc_check_is_a_located_mf109(tmp_path: Path, template: str, column: int) -> None:
    """`mfc check` with the default 2 s budget: finishes in seconds, MF109 at the TEMPLATE."""
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f'FROM ./model.gguf\nTEMPLATE """{template}"""\n')
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "mfc", "check", "--no-paths", str(modelfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - start
    assert out.returncode != 0
    text = out.stdout + out.stderr
    line = 2 if "\n" not in template else 3
    assert f"Modelfile:{line}:{column}: error[MF109]" in text, text
    assert ("time budget" in text and "2 s" in text) or "output budget" in text
    assert elapsed < 15, elapsed
