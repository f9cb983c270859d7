"""Shared pytest fixtures: the project's generated GGUF models and an isolated model store."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfc.testing.fixtures import generate


@pytest.fixture(scope="session")
def fixture_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Fixture file name → path (see mfc.testing.fixtures.NAMES), generated once per session.

    Shared by every test: copy a file before changing it.
    """
    return generate(tmp_path_factory.mktemp("fixture-models"))


@pytest.fixture
def mfc_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty model store directory, exported as ``MFC_MODELS`` for this test."""
    home = tmp_path / "mfc-models"
    home.mkdir()
    monkeypatch.setenv("MFC_MODELS", str(home))
    return home
