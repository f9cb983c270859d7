"""The analysed grammar is cached per user, written atomically, and never changes a result."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import logging, lark
lark.logger.setLevel(logging.DEBUG)
from mfc.modelfile import parse_text
r = parse_text('FROM x\\nPARAMETER top_k 1\\nSYSTEM \"\"\"a\\nb\"\"\"\\nBAD y\\n')
print([(i.keyword, i.value) for i in r.instructions], [d.code for d in r.diagnostics])
"""
EXPECTED = "[('FROM', 'x'), ('PARAMETER', '1'), ('SYSTEM', 'a\\nb')] ['MF001']"


def _run(cache_home: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MFC_NO_GRAMMAR_CACHE"}
    env.update(XDG_CACHE_HOME=str(cache_home), **extra)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    )


def test_cache_written_once_then_loaded(tmp_path: Path) -> None:
    first = _run(tmp_path)
    assert first.stdout.strip() == EXPECTED
    (cached,) = (tmp_path / "mfc").iterdir()  # no temp file left behind
    assert cached.name.startswith("modelfile-grammar-")
    assert oct((tmp_path / "mfc").stat().st_mode & 0o777) == "0o700"
    second = _run(tmp_path)
    assert second.stdout.strip() == EXPECTED
    assert "Loading grammar from cache" in second.stderr


def test_corrupt_cache_is_rebuilt_with_the_same_result(tmp_path: Path) -> None:
    _run(tmp_path)
    (cached,) = (tmp_path / "mfc").iterdir()
    cached.write_bytes(cached.read_bytes()[:100])
    assert _run(tmp_path).stdout.strip() == EXPECTED


def test_unwritable_cache_dir_and_opt_out(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert _run(blocker).stdout.strip() == EXPECTED
    out = _run(tmp_path / "none", MFC_NO_GRAMMAR_CACHE="1")
    assert out.stdout.strip() == EXPECTED
    assert not (tmp_path / "none").exists()
