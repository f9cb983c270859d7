"""`mfc show` and /api/show of a vision model: the projector layer and its facts."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from mfc.build import build_text
from mfc.cli.main import cli
from mfc.server.ollama import ShowResponse
from mfc.store import Store
from mfc.store import media_types as mt
from mfc.testing.server import start_server, stop_server


@pytest.fixture
def vision_store(mfc_home: Path, fixture_models: dict[str, Path]) -> Store:
    """`vis`: the counter with the fixture projector; `plain`: the counter alone."""
    store = Store(mfc_home)
    model, projector = fixture_models["counter-f32.gguf"], fixture_models["vision-proj.gguf"]
    build_text(f"FROM {model}\nFROM {projector}\nSYSTEM look\n", Path.cwd(), "vis", store=store)
    build_text(f"FROM {model}\n", Path.cwd(), "plain", store=store)
    return store


def show(*args: str) -> str:
    result = CliRunner().invoke(cli, ["show", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_show_lists_the_projector(vision_store: Store, snapshot) -> None:
    assert show("vis") == snapshot
    assert "Projector" not in show("plain")


def test_show_modelfile_rebuilds_a_vision_model(vision_store: Store, tmp_path: Path) -> None:
    """The projector is a second FROM line naming its blob: the same digest comes back."""
    text = show("vis", "--modelfile")
    manifest = vision_store.read_manifest("vis")
    projector = manifest.layer(mt.PROJECTOR)
    assert projector is not None
    assert f"FROM {vision_store.blob_path(projector.digest)}\n" in text
    (tmp_path / "Modelfile").write_text(text)
    rebuilt = CliRunner().invoke(cli, ["build", "--quiet", "-t", "again", str(tmp_path)])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert rebuilt.stdout.strip() == manifest.digest


def test_api_show_reports_projector_info(vision_store: Store, tmp_path: Path) -> None:
    server = start_server(tmp_path, vision_store)
    try:
        vis = httpx.post(server.url + "/api/show", json={"model": "vis"}).json()
        plain = httpx.post(server.url + "/api/show", json={"model": "plain"}).json()
    finally:
        stop_server(server)
    ShowResponse.model_validate(vis)
    info = vis["projector_info"]
    assert info["general.architecture"] == "clip"
    assert info["general.type"] == "mmproj"
    assert info["clip.projector_type"] == "mlp"
    assert info["clip.vision.image_size"] == 16
    assert info["clip.vision.image_mean"] == [0.0, 0.0, 0.0]
    assert info["general.parameter_count"] > 0
    assert "vision" in vis["capabilities"]
    assert "projector_info" not in plain and "vision" not in plain["capabilities"]
    # the Modelfile /api/show prints rebuilds it (two FROM lines)
    assert vis["modelfile"].count("FROM ") == 2
