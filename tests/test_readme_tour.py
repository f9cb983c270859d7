"""Every command in the README's tour runs as written (the README cannot drift from the CLI)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tour_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## A short tour\s+```sh\n(.*?)```", text, re.S)
    assert block, "README.md lost its tour"
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
