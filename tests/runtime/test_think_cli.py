"""`mfc run --think/--hidethinking`, `/set think`, and the session's thinking split."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.runtime.model import image_from_gguf
from mfc.runtime.session import Session
from mfc.testing import chatmodels as cm

MFC = [sys.executable, "-m", "mfc"]
ANSWER = cm.THINK_ANSWER
PLAIN = f"Thinking...\n{cm.THOUGHT}\n...done thinking.\n\n{ANSWER}\n"


def mfc(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MFC, *args], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def think(fixture_models: dict[str, Path]) -> str:
    return str(fixture_models["think.gguf"])


@pytest.mark.parametrize(
    ("flags", "stdout"),
    [
        ((), PLAIN),  # a model that can think thinks unless told not to (Ollama's CLI)
        (("--think",), PLAIN),
        (("--think=true",), PLAIN),
        (("--think=high",), PLAIN),
        (("--hidethinking",), f"{ANSWER}\n"),
        (("--think=false",), f"{ANSWER}\n"),  # the template prefills an empty thought
    ],
)
def test_run_one_shot_thinking(think: str, flags: tuple[str, ...], stdout: str) -> None:
    # Not a terminal: Ollama prints the thinking frame without colours.
    result = mfc("run", think, *flags, "count", stdin="")
    assert result.returncode == 0, result.stderr
    assert result.stdout == stdout


def test_bare_think_flag_leaves_the_prompt_alone(fixture_models: dict[str, Path]) -> None:
    counter = str(fixture_models["counter-f32.gguf"])
    result = mfc("run", counter, "--think=false", "abc", stdin="")
    assert (result.returncode, result.stdout) == (0, "defghijklmnopqrstuvwxyz\n")


def test_think_on_a_model_that_cannot_think(fixture_models: dict[str, Path]) -> None:
    counter = str(fixture_models["counter-f32.gguf"])
    result = mfc("run", counter, "--think", "abc", stdin="")
    assert result.returncode == 1 and result.stdout == ""
    assert f'error[MF310]: "{counter}" does not support thinking' in result.stderr


def test_bad_think_value(think: str) -> None:
    result = mfc("run", think, "--think=lots", "count", stdin="")
    assert result.returncode == 2
    assert 'invalid value for --think: "lots"' in result.stderr


def test_session_keeps_the_answer_not_the_thinking(fixture_models: dict[str, Path]) -> None:
    session = Session(image_from_gguf(fixture_models["think.gguf"]))
    try:
        session.overrides["temperature"] = 0.0
        turn = session.ask("count")
        parts = list(turn.parsed())
        assert "".join(p.thinking for p in parts) == cm.THOUGHT
        assert "".join(p.content for p in parts) == ANSWER
        assert turn.text == f"<think>{cm.THOUGHT}</think>{ANSWER}"
        assert [m.content for m in session.history] == ["count", ANSWER]
        # A Go TEMPLATE (here through /set template) thinks the same way.
        session.set_template(cm.THINK_TEMPLATE)
        session.think = False
        assert session.render("x").endswith("<|assistant|><think></think>")
        assert session.ask("x").result() == ANSWER
    finally:
        session.close()


def test_session_refuses_think_on_a_model_that_cannot(fixture_models: dict[str, Path]) -> None:
    session = Session(image_from_gguf(fixture_models["counter-f32.gguf"]), think="high")
    with pytest.raises(DiagnosticError) as info:
        session.ask("abc")
    assert info.value.diagnostics[0].code == "MF310"
    session.think = False  # allowed: Ollama only refuses asking a model to think
    session.check_think()


PROMPT = ">>> "


def test_repl_set_think(think: str, mfc_home: Path) -> None:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "mfc", "run", think],
        env={**os.environ, "MFC_MODELS": str(mfc_home), "TERM": "dumb"},
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
    )

    def say(line: str) -> str:
        child.sendline(line)
        child.expect_exact(PROMPT)
        out = child.before.replace("\r\n", "\n")
        return out.split("\n", 1)[1] if "\n" in out else ""

    try:
        child.expect_exact(PROMPT)
        out = say("count")
        assert "Thinking...\n" in out and "...done thinking.\n\n" in out
        assert cm.THOUGHT in out and out.rstrip().endswith(ANSWER)
        assert "\033[38;5;245m" in out  # grey, as Ollama's REPL
        assert say("/set nothink") == "Set 'nothink' mode.\n"
        assert say("count").strip() == ANSWER
        assert say("/set think low") == "Set 'think' mode to 'low'.\n"
        assert "Thinking..." in say("count")
        assert say("/set think") == "Set 'think' mode.\n"
        assert "/set think" in say("/? set")
        assert "invalid think value" in say("/set think lots")
    finally:
        child.terminate(force=True)
