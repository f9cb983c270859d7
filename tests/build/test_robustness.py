"""Builds in several processes at once, and builds SIGKILLed midway, leave a consistent store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gguf
import numpy as np
import pytest

from mfc.store.store import Store


def env_for(store: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["MFC_MODELS"] = str(store)
    env.update(extra)
    return env


def mfc_build(
    project: Path, tag: str, env: dict[str, str], umask: int = 0o022
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mfc", "build", "--quiet", "-t", tag, str(project)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        umask=umask,
    )


def test_concurrent_builds(workspace: Path, mfc_home: Path) -> None:
    projects = []
    for i in range(3):
        project = workspace / f"p{i}"
        project.mkdir()
        (project / "Modelfile").write_text(
            "FROM ../counter-f32.gguf\nADAPTER ../lora-shift.gguf\n"
            f"SYSTEM model {i}\nPARAMETER temperature 0.{i}\n"
        )
        projects.append(project)
    # per Modelfile: two tags, each built by two processes with different locales and umasks
    procs = []
    for i, project in enumerate(projects):
        for tag in (f"m{i}", f"m{i}-copy"):
            for locale, umask in (("C", "022"), ("C.UTF-8", "077")):
                env = env_for(mfc_home, LC_ALL=locale, LANG=locale)
                procs.append((i, mfc_build(project, tag, env, umask=int(umask, 8))))
    digests: dict[int, set[str]] = {}
    for i, proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        digests.setdefault(i, set()).add(out.strip())
    assert all(len(d) == 1 for d in digests.values())
    assert len({next(iter(d)) for d in digests.values()}) == 3
    store = Store(mfc_home)
    assert store.verify() == []
    names = sorted(e.name.display for e in store.list_models())
    assert names == sorted(
        [f"m{i}:latest" for i in range(3)] + [f"m{i}-copy:latest" for i in range(3)]
    )
    for i in range(3):
        assert store.read_manifest(f"m{i}").digest == next(iter(digests[i]))
    assert [p for p in store.tmp_dir.iterdir()] == []


KILLER = """
import os, signal, sys
from pathlib import Path
from mfc.build import build_modelfile
from mfc.store.store import Store

def progress(event):
    if event.message.startswith(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)

build_modelfile(Path(sys.argv[1]), "victim", store=Store.from_env(), progress=progress)
"""


@pytest.mark.parametrize("step", ["storing counter-f32", "storing lora-shift", "writing manifest"])
def test_sigkill_at_each_step_leaves_no_manifest(
    workspace: Path, mfc_home: Path, step: str
) -> None:
    (workspace / "Modelfile").write_text(
        "FROM ./counter-f32.gguf\nADAPTER ./lora-shift.gguf\nSYSTEM s\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(workspace / "Modelfile"), step],
        env=env_for(mfc_home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    store = Store(mfc_home)
    assert store.list_models() == []
    assert not (workspace / "Modelfile.lock").exists()
    again = mfc_build(workspace, "victim", env_for(mfc_home))
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert store.read_manifest("victim").digest == out.strip()
    assert store.verify() == []


def big_gguf(path: Path, mib: int) -> None:
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(16)
    w.add_embedding_length(1024)
    w.add_tensor("token_embd.weight", np.zeros((mib * 256, 1024), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_sigkill_midway_through_a_copy(tmp_path: Path, mfc_home: Path) -> None:
    """Killed while a large input is being copied into the store: temp file only, no manifest."""
    project = tmp_path / "big"
    project.mkdir()
    big_gguf(project / "big.gguf", 512)
    (project / "Modelfile").write_text("FROM ./big.gguf\n")
    store = Store(mfc_home)
    proc = mfc_build(project, "big", env_for(mfc_home))
    partial = None
    while proc.poll() is None and partial is None:
        temps = list(store.tmp_dir.glob("blob-*")) if store.tmp_dir.is_dir() else []
        for t in temps:
            try:
                if t.stat().st_size > 0:
                    partial = t
            except FileNotFoundError:
                continue
        time.sleep(0.001)
    proc.kill()
    proc.communicate()
    if partial is None:
        pytest.fail("the build finished before a partial blob was seen; use a larger input")
    assert proc.returncode == -signal.SIGKILL
    assert store.list_models() == []
    assert not store.blobs_dir.is_dir() or not list(store.blobs_dir.glob("sha256-*"))
    # the next build succeeds, and gc clears the dead build's temp file
    again = mfc_build(project, "big", env_for(mfc_home))
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert store.read_manifest("big").digest == out.strip()
    removed = store.gc()
    assert all(item.digest is None for item in removed)
    assert store.verify() == []
