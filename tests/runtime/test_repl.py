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
from mfc.diagnostics.diagnostic import DiagnosticError
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


def recall_previous(child: pexpect.spawn) -> str:
    """Ctrl-P (readline's previous-history) then Enter: runs the last remembered line again."""
    child.send("\x10\r")
    child.expect_exact(PROMPT)
    return child.before.replace("\r\n", "\n")


def test_set_nohistory_keeps_lines_out_of_readline_history(repl: pexpect.spawn) -> None:
    say(repl, "/show system")
    assert "No system message was specified" in recall_previous(repl)  # history on
    assert say(repl, "/set nohistory") == "Set 'nohistory' mode.\n"
    say(repl, "/show license")  # not remembered
    assert "Set 'nohistory' mode." in recall_previous(repl)  # the line before it comes back
    assert say(repl, "/set history") == "Set 'history' mode.\n"
    say(repl, "/show license")
    assert "No license was specified" in recall_previous(repl)


def in_process(fixture_models: dict[str, Path]) -> tuple[Repl, io.StringIO, io.StringIO]:
    image = image_from_gguf(fixture_models["counter-f32.gguf"], params={"temperature": 0.0})
    out, err = io.StringIO(), io.StringIO()
    repl = Repl(Session(image, env={}), load_image=lambda name: image, out=out, err=err)
    repl.wordwrap = False
    return repl, out, err


def command(repl: Repl, line: str) -> None:
    """As the REPL loop runs a command: a DiagnosticError is printed, the REPL goes on."""
    try:
        repl.command(line)
    except DiagnosticError as exc:
        repl.error(exc)


def test_set_template_refuses_a_broken_template_with_its_location(
    fixture_models: dict[str, Path],
) -> None:
    repl, out, _ = in_process(fixture_models)
    command(repl, "/set template {{ range .Messages }}{{ .Rol }}{{ end }}")
    assert repl.session.template is None  # unchanged
    assert out.getvalue() == (
        "/set template:1:25: error[MF109]: template error: rendering fails: "
        "can't evaluate field Rol in type *api.Message\n"
        "1 | {{ range .Messages }}{{ .Rol }}{{ end }}\n"
        "  |                         ^\n"
        "help: the template was not changed; `/show template` shows the current one\n"
    )
    out.truncate(0), out.seek(0)
    command(repl, '/set template "{% for m in messages %}{{ m.content.__class__ }}{% endfor %}"')
    assert "error[MF109]" in out.getvalue() and "`__class__`" in out.getvalue()
    assert repl.session.template is None
    out.truncate(0), out.seek(0)
    command(repl, "/set template {{ if .System }}")
    assert out.getvalue().startswith(
        "/set template:1:1: error[MF109]: template error: missing {{end}} for this {{if}}"
    )


def test_set_template_accepts_good_and_warns_on_partial(fixture_models: dict[str, Path]) -> None:
    repl, out, err = in_process(fixture_models)
    repl.command("/set template <{{ .Prompt }}>")
    assert out.getvalue() == "Set prompt template.\n" and err.getvalue() == ""
    assert repl.session.render("abc") == "<abc>"
    refuses_system = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
        "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    )
    repl.command(f"/set template {refuses_system}")
    assert repl.session.template == refuses_system
    assert err.getvalue() == (
        "warning: template: rendering fails on a system + user + assistant + user "
        "conversation: no system\n"
    )
    repl.session.close()


def test_draft_num_predict_is_an_explicit_no_op(fixture_models: dict[str, Path]) -> None:
    from mfc.runtime.options import is_load_param

    repl, out, err = in_process(fixture_models)
    session = repl.session
    engine = session.engine()
    repl.command("/set parameter draft_num_predict 4")
    assert out.getvalue() == "Set parameter 'draft_num_predict' to '4'\n"
    assert err.getvalue() == (
        "warning: parameter `draft_num_predict` is not supported yet (no draft model runtime: "
        "mfc does no speculative decoding, so the DRAFT model and this value are ignored); "
        "it has no effect\n"
    )
    assert not is_load_param("draft_num_predict")
    turn = session.ask("abc")
    assert turn.result() == "defghijklmnopqrstuvwxyz"
    assert session.loaded is engine  # no reload
    assert any("draft_num_predict" in w for w in turn.warnings)
    out.truncate(0), out.seek(0)
    repl.command("/set parameter")
    listed = [line for line in out.getvalue().splitlines() if "draft_num_predict" in line]
    assert listed and listed[0].endswith("(not supported yet)")
    session.close()
