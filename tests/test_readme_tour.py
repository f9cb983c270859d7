"""Every command in the README's tour runs as written (the README cannot drift from the CLI)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tour_commands(heading: str = "A short tour") -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(rf"## {re.escape(heading)}[^\n]*\s+```sh\n(.*?)```", text, re.S)
    assert block, f"README.md lost its {heading!r} block"
    commands = []
    for line in block.group(1).splitlines():
        command = re.sub(r"\s+#.*$", "", line).strip()
        if command:
            commands.extend(part.strip() for part in command.split(";"))
    return commands


def test_tour_commands_run_as_written(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    for folder in ("examples", "registry_cache"):
        shutil.copytree(ROOT / folder, work / folder)
    env = dict(os.environ, MFC_MODELS=str(tmp_path / "models"))
    ran = []
    for command in tour_commands():
        assert command.startswith("mfc "), command
        if command == "mfc run counter":  # the interactive REPL: tests/runtime drive it via a pty
            continue
        argv = f"{sys.executable} -m mfc {command[4:]}"
        result = subprocess.run(
            argv, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        ran.append(command)
        if command == 'mfc run counter "abc"':
            assert result.stdout.strip() == "defghijklmnopqrstuvwxyz"
    assert len(ran) >= 12
    assert (work / "counter.tar").stat().st_size > 0


def test_serving_block_runs_as_written(tmp_path: Path) -> None:
    """`mfc serve &`, the curl lines (native, OpenAI, Anthropic), `mfc ps`, `mfc stop` — on a
    free port instead of 11434."""
    import socket
    import time

    work = tmp_path / "work"
    work.mkdir()
    for folder in ("examples", "registry_cache"):
        shutil.copytree(ROOT / folder, work / folder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MFC_MODELS=str(tmp_path / "models"), MFC_HOST=f"127.0.0.1:{port}")
    env.pop("OLLAMA_HOST", None)
    build = [sys.executable, "-m", "mfc", "build", "-t", "counter", "examples/counter"]
    subprocess.run(build, cwd=work, env=env, check=True, capture_output=True)
    commands = tour_commands("Serving")
    assert commands[0] == "mfc serve &"
    server = subprocess.Popen(
        [sys.executable, "-m", "mfc", "serve"], cwd=work, env=env, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "serve did not start"
                time.sleep(0.1)
        outputs: dict[str, str] = {}
        curls: list[str] = []
        for command in commands[1:]:
            command = command.replace("11434", str(port))
            argv = (
                command if command.startswith("curl ") else f"{sys.executable} -m mfc {command[4:]}"
            )
            result = subprocess.run(
                argv, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=120
            )
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
            if command.startswith("curl "):
                curls.append(result.stdout)
            else:
                outputs[command] = result.stdout
        native, openai_chat, anthropic_message = (json.loads(out) for out in curls)
        assert native["response"] == "defghijklmnopqrstuvwxyz"
        assert openai_chat["choices"][0]["message"]["content"] == "defghijklmnopqrstuvwxyz"
        assert anthropic_message["content"][0]["text"] == "defghijklmnopqrstuvwxyz"
        assert "counter" in outputs["mfc ps"]
    finally:
        server.terminate()
        assert server.wait(15) == 0


def test_sharing_block_runs_as_written(tmp_path: Path) -> None:
    """cp, push, rm + gc, pull, run — against a registry on a free port instead of 5000: the
    pull downloads every blob again and the pulled model is the pushed digest and answers the
    same."""
    import pytest

    from mfc.testing import registry as reg

    if not reg.available():
        pytest.skip(f"the Sharing block needs {reg.BINARY}: {reg.INSTALL_HINT}")
    work = tmp_path / "work"
    work.mkdir()
    for folder in ("examples", "registry_cache"):
        shutil.copytree(ROOT / folder, work / folder)
    env = dict(os.environ, MFC_MODELS=str(tmp_path / "models"))
    build = [sys.executable, "-m", "mfc", "build", "-t", "counter", "examples/counter"]
    subprocess.run(build, cwd=work, env=env, check=True, capture_output=True)
    commands = tour_commands("Sharing")
    assert [c.split()[1] for c in commands] == ["cp", "push", "rm", "gc", "pull", "run"]
    registry = reg.start_registry(tmp_path)
    try:
        outputs: dict[str, str] = {}
        for command in commands:
            command = command.replace("127.0.0.1:5000", registry.host)
            argv = f"{sys.executable} -m mfc {command[4:]}"
            result = subprocess.run(
                argv, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=120
            )
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
            outputs[command.split()[1]] = result.stdout + result.stderr
    finally:
        registry.stop()
    name = f"{registry.host}/me/counter:v1"
    pushed = re.search(rf"pushed {re.escape(name)}@(sha256:[0-9a-f]{{64}})", outputs["push"])
    pulled = re.search(rf"pulled {re.escape(name)} (sha256:[0-9a-f]{{64}})", outputs["pull"])
    assert pushed and pulled, outputs
    assert pulled.group(1) == pushed.group(1)
    sizes = re.search(r"\((.+?), (.+?) downloaded\)", outputs["pull"])
    assert sizes and sizes.group(1) == sizes.group(2), outputs["pull"]  # gc left no blob behind
    assert outputs["run"].strip() == "defghijklmnopqrstuvwxyz"


def test_vision_block_runs_as_written(tmp_path: Path) -> None:
    """`make fixtures` (what it runs), then build, show and run the vision model: the red and
    blue images in examples/vision are read as "r" and "b" by the counter."""
    from mfc.testing.vision import BLUE, BLUE_CONTINUATION, RED, RED_CONTINUATION, image_png

    # The committed images are exactly the fixture's (so the continuations are known).
    assert (ROOT / "examples" / "vision" / "red.png").read_bytes() == image_png(RED)
    assert (ROOT / "examples" / "vision" / "blue.png").read_bytes() == image_png(BLUE)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(ROOT / "examples", work / "examples")
    env = dict(os.environ, MFC_MODELS=str(tmp_path / "models"))
    commands = tour_commands("Vision")
    assert commands[0] == "make fixtures"
    make = re.search(r"^fixtures:.*\n\t\$\(PY\) (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert make, "the Makefile lost its fixtures target"
    outputs: dict[str, str] = {}
    for command in commands:
        args = make.group(1) if command == "make fixtures" else f"-m mfc {command[4:]}"
        result = subprocess.run(
            f"{sys.executable} {args}",
            shell=True,
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        outputs[command] = result.stdout
    assert "Projector" in outputs["mfc show vis"]
    assert outputs["mfc run vis ./examples/vision/red.png"] == RED_CONTINUATION + "\n"
    assert outputs["mfc run vis ./examples/vision/blue.png"] == BLUE_CONTINUATION + "\n"
