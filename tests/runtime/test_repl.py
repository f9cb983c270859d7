"""The `mfc run` REPL driven through a real pseudo-terminal (pexpect)."""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from pathlib import Path

import pexpect
import pytest

from mfc.cli.repl import Repl
from mfc.runtime.model import image_from_gguf
from mfc.runtime.session import Session

PROMPT = ">>> "


@pytest.fixture
def repl(fixture_models: dict[str, Path], mfc_home: Path):
    child = pexpect.spawn(
        sys.executable,
        ["-m", "mfc", "run", str(fixture_models["counter-f32.gguf"])],
        env={**os.environ, "MFC_MODELS": str(mfc_home), "TERM": "dumb", "COLUMNS": "200"},
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
    )
    child.expect_exact(PROMPT)
    yield child
    if child.isalive():
        child.terminate(force=True)


def say(child: pexpect.spawn, line: str) -> str:
    """Send a line, return everything printed before the next prompt (echo removed)."""
    child.sendline(line)
    child.expect_exact(PROMPT)
    out = child.before.replace("\r\n", "\n")
    return out.split("\n", 1)[1] if "\n" in out else ""


def test_chat_commands_and_conversation(repl: pexpect.spawn) -> None:
    assert say(repl, "/set parameter temperature 0") == "Set parameter 'temperature' to '0'\n"
    assert say(repl, "abc").strip() == "defghijklmnopqrstuvwxyz"
    assert say(repl, "/set parameter num_predict 3").startswith("Set parameter 'num_predict'")
    assert say(repl, "klm").strip() == "nop"
    shown = say(repl, "/show modelfile")
    assert "MESSAGE user abc" in shown and "MESSAGE assistant nop" in shown
    assert "PARAMETER num_predict 3" in shown
    assert say(repl, "/clear") == "Cleared session context\n"
    assert "MESSAGE" not in say(repl, "/show modelfile")
    params = say(repl, "/show parameters")
    assert "User defined parameters:" in params and "num_predict" in params


def test_multiline_input_and_system(repl: pexpect.spawn) -> None:
    say(repl, "/set parameter temperature 0")
    assert say(repl, '/set system """be brief"""') == "Set system message.\n"
    assert say(repl, "/show system") == "be brief\n"
    repl.sendline('"""')
    repl.expect_exact("... ")
    repl.sendline("xy")
    repl.expect_exact("... ")
    repl.sendline('ab"""')
    repl.expect_exact(PROMPT)
    assert "cdefghijklmnopqrstuvwxyz" in repl.before


def test_errors_keep_the_repl_alive(repl: pexpect.spawn) -> None:
    out = say(repl, "/set parameter temprature 0")
    assert "error[MF306]: unknown parameter `temprature`" in out
    assert "did you mean `temperature`?" in out
    assert "Unknown command '/frobnicate'" in say(repl, "/frobnicate")
    assert "/set parameter" in say(repl, "/? set")
    listed = say(repl, "/set parameter")
    assert "/set parameter temperature" in listed and "mirostat" not in listed
    assert "error[MF301]" in say(repl, "/load nosuch")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_only_the_main_thread_takes_sigint(repl: pexpect.spawn) -> None:
    say(repl, "/set parameter temperature 0")
    say(repl, "abc")  # the worker and llama.cpp's threads exist now
    taking = []
    for task in Path(f"/proc/{repl.pid}/task").iterdir():
        fields = dict(line.split(":\t", 1) for line in (task / "status").read_text().splitlines())
        if not int(fields["SigBlk"], 16) & (1 << (signal.SIGINT - 1)):
            taking.append(int(task.name))
    assert taking == [repl.pid]  # the main thread's id is the process id


class InterruptingOutput(io.StringIO):
    """Raises KeyboardInterrupt on the first write of model text, like Ctrl-C mid-answer."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def write(self, text: str) -> int:
        if self.armed and text:
            self.armed = False
            raise KeyboardInterrupt
        return super().write(text)


def test_ctrl_c_mid_answer_cancels_only_that_answer(fixture_models: dict[str, Path]) -> None:
    image = image_from_gguf(fixture_models["counter-f32.gguf"], params={"temperature": 0.0})
    session = Session(image, env={})
    out = InterruptingOutput()
    repl = Repl(session, load_image=lambda name: image, out=out, err=io.StringIO())
    repl.wordwrap = False
    out.armed = True
    repl.answer("abc")  # interrupted: returns normally, nothing remembered
    assert session.history == []
    repl.answer("klm")
    assert out.getvalue().strip().endswith("nopqrstuvwxyz")
    assert [m.content for m in session.history] == ["klm", "nopqrstuvwxyz"]
    assert session.loaded is not None
    assert session.loaded.llama_threads == {session.loaded.worker_ident}
    session.close()


def test_ctrl_c_at_prompt_and_ctrl_d_exit(repl: pexpect.spawn) -> None:
    # Python's readline misses a SIGINT that lands while it is still printing
    # the prompt (until the next key); give it a moment to be waiting.
    time.sleep(0.3)
    repl.kill(signal.SIGINT)
    repl.expect_exact("Use Ctrl + d or /bye to exit.")
    repl.expect_exact(PROMPT)
    repl.sendeof()
    repl.expect(pexpect.EOF)
    repl.close()
    assert repl.exitstatus == 0


def test_bye_exits(repl: pexpect.spawn) -> None:
    repl.sendline("/bye")
    repl.expect(pexpect.EOF)
    repl.close()
    assert repl.exitstatus == 0
