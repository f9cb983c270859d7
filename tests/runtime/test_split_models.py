"""A model built from a split GGUF set runs: the runtime stages its shards for llama.cpp."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

from mfc.build import build_modelfile
from mfc.gguf_meta import inspect
from mfc.runtime.model import load_image
from mfc.runtime.session import Session
from mfc.store import media_types
from mfc.store.store import Store
from mfc.testing.fixtures import expected_continuation

SHARDS = 3


def write_split_counter(source: Path, directory: Path, shards: int = SHARDS) -> list[Path]:
    """``source`` (an F32 GGUF) rewritten by gguf-py's splitting writer, as llama.cpp's
    gguf-split does: shard 1 holds the metadata, every shard `split.no`/`split.count`/
    `split.tensors.count`, named ``counter-0000i-of-0000N.gguf``."""
    reader = gguf.GGUFReader(source)
    per_shard = math.ceil(len(reader.tensors) / shards)
    directory.mkdir(parents=True, exist_ok=True)
    arch = reader.get_field("general.architecture").contents()
    w = gguf.GGUFWriter(directory / "counter.gguf", arch, split_max_tensors=per_shard)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, field.contents(), field.types[0], sub_type)
    for t in reader.tensors:
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        w.add_tensor(t.name, np.array(t.data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    paths = sorted(directory.glob("counter-*-of-*.gguf"))
    assert [p.name for p in paths] == [
        f"counter-{i:05d}-of-{shards:05d}.gguf" for i in range(1, shards + 1)
    ]
    return paths


@pytest.fixture
def split_model(tmp_path: Path, fixture_models: dict[str, Path], mfc_home: Path) -> str:
    src = tmp_path / "src"
    write_split_counter(fixture_models["counter-f32.gguf"], src)
    (src / "Modelfile").write_text(
        f"FROM ./counter-00001-of-{SHARDS:05d}.gguf\nPARAMETER temperature 0\n"
    )
    build_modelfile(src, "split", store=Store.from_env())
    return "split"


def test_split_model_image(split_model: str, fixture_models: dict[str, Path]) -> None:
    store = Store.from_env()
    shard_layers = store.read_manifest(split_model).layers_of(media_types.MODEL)
    assert len(shard_layers) == SHARDS
    image = load_image(split_model)
    # llama.cpp opens shard 1 and finds shard i next to it by name.
    assert image.model_path.name == f"model-00001-of-{SHARDS:05d}.gguf"
    links = sorted(image.model_path.parent.iterdir())
    assert [p.name for p in links] == [
        f"model-{i:05d}-of-{SHARDS:05d}.gguf" for i in range(1, SHARDS + 1)
    ]
    blobs = [store.blob_path(d.digest) for d in shard_layers]
    assert [p.resolve() for p in links] == blobs
    assert image.model_path.parent.parent.stat().st_mode & 0o077 == 0  # private
    assert load_image(split_model).model_path == image.model_path  # staged once per process
    whole = inspect(fixture_models["counter-f32.gguf"])
    assert image.gguf.parameter_count == whole.parameter_count
    assert image.gguf.split_count == SHARDS
    assert (image.gguf.bos_token, image.gguf.chat_template) == (
        whole.bos_token,
        whole.chat_template,
    )
    s = Session(image, env={})
    assert s.ask("abc").result() == expected_continuation("abc")
    s.close()
    shutil.rmtree(image.model_path.parent)  # e.g. a tmp cleaner: the next load stages again
    again = load_image(split_model).model_path
    assert again != image.model_path and again.resolve() == blobs[0]


def test_mfc_run_split_model(split_model: str, mfc_home: Path) -> None:
    assert expected_continuation("abc") == "defghijklmnopqrstuvwxyz"
    result = subprocess.run(
        [sys.executable, "-m", "mfc", "run", split_model, "abc"],
        capture_output=True,
        text=True,
        input="",
        env={**os.environ, "MFC_MODELS": str(mfc_home)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "defghijklmnopqrstuvwxyz\n"


def test_staged_shards_are_removed_at_exit(split_model: str, mfc_home: Path) -> None:
    code = "from mfc.runtime.model import load_image; print(load_image('split').model_path.parent)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "MFC_MODELS": str(mfc_home)},
        timeout=120,
        check=True,
    ).stdout
    staged = Path(out.strip())
    assert staged.name and staged.is_absolute()
    assert not staged.exists() and not staged.parent.exists()


def test_bare_split_file_runs(tmp_path: Path, fixture_models: dict[str, Path]) -> None:
    from mfc.runtime.model import image_from_gguf

    shards = write_split_counter(fixture_models["counter-f32.gguf"], tmp_path / "bare")
    image = image_from_gguf(shards[0], params={"temperature": 0.0})
    assert image.model_path == shards[0]
    assert image.gguf.split_count == SHARDS
    s = Session(image, env={})
    assert s.ask("abc").result() == "defghijklmnopqrstuvwxyz"
    s.close()
