"""Models built by the real builder into a temp store, then run: the whole path."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from mfc.build import build_modelfile
from mfc.cli.repl import save_session
from mfc.runtime.model import load_image
from mfc.runtime.session import Session
from mfc.store import media_types
from mfc.store.store import Store
from mfc.testing.fixtures import expected_continuation

# .Messages includes the system message (as in Ollama); .System is it again.
GO_TEMPLATE = (
    "{{ if .System }}{{ .System }}|{{ end }}"
    '{{ range .Messages }}{{ if ne .Role "system" }}{{ .Content }}{{ end }}{{ end }}'
)


def build(tmp_path: Path, models: dict[str, Path], tag: str, body: str) -> Path:
    """Write a Modelfile (FROM the counter + `body`) next to copies of the fixtures; build it."""
    src = tmp_path / tag.replace(":", "_")
    src.mkdir()
    for name in ("counter-f32.gguf", "lora-constant.gguf", "lora-shift.gguf"):
        shutil.copy(models[name], src / name)
    (src / "Modelfile").write_text("FROM ./counter-f32.gguf\n" + body)
    build_modelfile(src, tag, store=Store.from_env())
    return src


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mfc", *args],
        capture_output=True,
        text=True,
        input="",
        env={**os.environ, "MFC_MODELS": str(home)},
        timeout=120,
    )


def test_image_layers_reach_the_runtime(
    tmp_path: Path, fixture_models: dict[str, Path], mfc_home: Path
) -> None:
    build(
        tmp_path,
        fixture_models,
        "layers",
        "PARAMETER temperature 0\nPARAMETER stop xyz\nPARAMETER stop qrs\n"
        f'TEMPLATE """{GO_TEMPLATE}"""\nSYSTEM sys\n'
        "MESSAGE user abc\nMESSAGE assistant def\nLICENSE MIT\n"
        "ADAPTER --scale=0.5 ./lora-shift.gguf\n",
    )
    image = load_image("layers")
    assert image.template == GO_TEMPLATE
    assert image.system == "sys"
    assert [(m.role, m.content) for m in image.messages] == [("user", "abc"), ("assistant", "def")]
    assert image.params["temperature"] == 0
    assert image.params["stop"] == ("xyz", "qrs")
    assert image.licenses == ("MIT",)
    assert [a.scale for a in image.adapters] == [0.5]
    assert image.digest.startswith("sha256:")
    assert image.gguf.context_length == 512
    s = Session(image, env={})
    assert s.render("ghi") == "sys|abcdefghi"
    s.close()


def test_modelfile_parameters_take_effect(
    tmp_path: Path, fixture_models: dict[str, Path], mfc_home: Path
) -> None:
    build(tmp_path, fixture_models, "short", "PARAMETER temperature 0\nPARAMETER num_predict 3\n")
    result = run_cli("run", "short", "abc", home=mfc_home)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "def\n"
    s = Session(load_image("short"), env={})
    assert s.ask("abc").result() == "def"
    s.set_parameter("num_predict", ["6"])  # the REPL's /set parameter beats the Modelfile
    assert s.ask("abc").result() == "defghi"
    s.close()


@pytest.mark.parametrize(
    ("adapters", "scales"),
    [
        ("ADAPTER ./lora-constant.gguf\n", {"lora-constant.gguf": 1.0}),
        ("ADAPTER --scale=0 ./lora-constant.gguf\n", {"lora-constant.gguf": 0.0}),
        ("ADAPTER ./lora-shift.gguf\n", {"lora-shift.gguf": 1.0}),
        (
            "ADAPTER ./lora-constant.gguf\nADAPTER ./lora-shift.gguf\n",
            {"lora-constant.gguf": 1.0, "lora-shift.gguf": 1.0},
        ),
    ],
    ids=["constant", "constant-scale-0", "shift", "stacked"],
)
def test_built_adapters_apply_with_their_scales(
    tmp_path: Path,
    fixture_models: dict[str, Path],
    mfc_home: Path,
    adapters: str,
    scales: dict[str, float],
) -> None:
    build(tmp_path, fixture_models, "lora", "PARAMETER temperature 0\n" + adapters)
    s = Session(load_image("lora"), env={})
    s.template = "{{ range .Messages }}{{ .Content }}{{ end }}"
    s.set_parameter("num_predict", ["12"])
    assert s.ask("xyz").result() == expected_continuation("xyz", scales, max_tokens=12)
    s.close()


def test_save_creates_a_model_that_behaves_the_same(
    tmp_path: Path, fixture_models: dict[str, Path], mfc_home: Path
) -> None:
    build(tmp_path, fixture_models, "base", "PARAMETER temperature 0\nADAPTER ./lora-shift.gguf\n")
    s = Session(load_image("base"), env={})
    s.set_parameter("num_predict", ["4"])
    s.set_parameter("stop", ["w"])
    s.system = "be brief"
    first = s.ask("abc").result()
    prompt = s.render("klm")
    expected = s.ask("klm").result()
    s.history = s.history[:2]  # the conversation as it was when saved
    save_session(s, "saved")
    s.close()

    saved = load_image("saved")
    assert saved.system == "be brief"
    assert saved.params["num_predict"] == 4 and saved.params["stop"] == ("w",)
    assert [a.digest for a in saved.adapters] == [a.digest for a in load_image("base").adapters]
    assert [m.content for m in saved.messages] == ["abc", first]
    again = Session(saved, env={})
    assert again.render("klm") == prompt
    assert again.ask("klm").result() == expected
    again.close()


def test_save_over_the_running_model(
    tmp_path: Path, fixture_models: dict[str, Path], mfc_home: Path
) -> None:
    build(tmp_path, fixture_models, "mine", "PARAMETER temperature 0\n")
    s = Session(load_image("mine"), env={})
    s.set_parameter("num_predict", ["2"])
    save_session(s, "mine")
    s.close()
    assert load_image("mine").params["num_predict"] == 2


def test_template_render_by_name(
    tmp_path: Path, fixture_models: dict[str, Path], mfc_home: Path, snapshot
) -> None:
    build(
        tmp_path,
        fixture_models,
        "tmpl",
        f'TEMPLATE """{GO_TEMPLATE}"""\nSYSTEM sys\nMESSAGE user abc\nMESSAGE assistant def\n',
    )
    result = run_cli("template", "render", "tmpl", "--prompt", "ghi", home=mfc_home)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "sys|abcdefghi" == snapshot


def test_repl_save_and_load(
    tmp_path: Path, fixture_models: dict[str, Path], mfc_home: Path
) -> None:
    build(tmp_path, fixture_models, "chat", "PARAMETER temperature 0\n")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "mfc", "run", "chat"],
        env={**os.environ, "MFC_MODELS": str(mfc_home), "TERM": "dumb"},
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
    )
    child.expect_exact(">>> ")
    child.sendline("/set parameter num_predict 3")
    child.expect_exact(">>> ")
    child.sendline("abc")
    child.expect_exact("def")
    child.expect_exact(">>> ")
    child.sendline("/save chat2")
    child.expect_exact("Created new model 'chat2'")
    child.expect_exact(">>> ")
    child.sendline("/load chat2")
    child.expect_exact("Loading model 'chat2'")
    child.expect_exact(">>> ")
    child.sendline("/show parameters")
    child.expect_exact("num_predict")
    child.expect_exact(">>> ")
    child.sendline("klm")
    child.expect_exact("nop")
    child.expect_exact(">>> ")
    child.sendline("/bye")
    child.expect(pexpect.EOF)
    saved = load_image("chat2")
    assert [m.content for m in saved.messages] == ["abc", "def"]


def test_missing_blob_is_a_diagnostic(
    tmp_path: Path, fixture_models: dict[str, Path], mfc_home: Path
) -> None:
    build(tmp_path, fixture_models, "broken", "SYSTEM hello\n")
    store = Store.from_env()
    layer = store.read_manifest("broken").layer(media_types.SYSTEM)
    assert layer is not None
    store.blob_path(layer.digest).unlink()
    result = run_cli("run", "broken", "abc", home=mfc_home)
    assert result.returncode == 1
    assert "error[MF309]: model `broken` cannot be read" in result.stderr
    assert "Traceback" not in result.stderr


def test_repl_show_and_set_commands(
    tmp_path: Path, fixture_models: dict[str, Path], mfc_home: Path
) -> None:
    build(
        tmp_path,
        fixture_models,
        "shown",
        "PARAMETER temperature 0\nPARAMETER num_predict 4\nSYSTEM be brief\n"
        f'TEMPLATE """{GO_TEMPLATE}"""\nLICENSE """MIT License\nsecond line"""\n'
        "ADAPTER --scale=0 ./lora-shift.gguf\n",
    )
    child = pexpect.spawn(
        sys.executable,
        ["-m", "mfc", "run", "shown"],
        env={**os.environ, "MFC_MODELS": str(mfc_home), "TERM": "dumb"},
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
    )

    def say(line: str) -> str:
        child.sendline(line)
        child.expect_exact(">>> ")
        return child.before.replace("\r\n", "\n").split("\n", 1)[1]

    child.expect_exact(">>> ")
    info = say("/show info")
    for text in ("architecture", "llama", "context length", "512", "F32", "scale 0", "be brief"):
        assert text in info
    assert "MIT License" in info
    assert say("/show license") == "MIT License\nsecond line\n"
    assert say("/show template") == GO_TEMPLATE + "\n"
    assert say("/show system") == "be brief\n"
    params = say("/show parameters")
    assert "Model defined parameters:" in params and "num_predict" in params
    assert say("/set verbose") == "Set 'verbose' mode.\n"
    answer = say("abc")
    assert "defg" in answer and "eval rate:" in answer and "load duration:" in answer
    assert say("/set quiet") == "Set 'quiet' mode.\n"
    assert "eval rate" not in say("abc")
    assert say("/set format json") == "Set format to 'json' mode.\n"
    assert say("abc").lstrip().startswith("{")
    child.sendline("/bye")
    child.expect(pexpect.EOF)


def test_ctrl_c_stops_an_endless_answer_not_the_repl(
    tmp_path: Path, fixture_models: dict[str, Path], mfc_home: Path
) -> None:
    # lora-constant makes the counter answer "_" forever; the context shifts
    # when full, so only Ctrl-C ends this answer.
    build(
        tmp_path,
        fixture_models,
        "endless",
        "PARAMETER temperature 0\nADAPTER ./lora-constant.gguf\n",
    )
    child = pexpect.spawn(
        sys.executable,
        ["-m", "mfc", "run", "endless", "--nowordwrap"],
        env={**os.environ, "MFC_MODELS": str(mfc_home), "TERM": "dumb"},
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
    )
    child.expect_exact(">>> ")
    child.sendline("abc")
    child.expect_exact("_" * 600)  # well past num_ctx 512: the context has shifted
    child.kill(signal.SIGINT)
    child.expect_exact(">>> ")
    child.sendline("/show modelfile")
    child.expect_exact(">>> ")
    assert "MESSAGE" not in child.before  # the interrupted exchange was not kept
    child.sendline("/bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
