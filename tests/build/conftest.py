"""Fixtures for builder tests: a workspace with copies of the fixture models, a store."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mfc.store.store import Store


@pytest.fixture
def workspace(tmp_path: Path, fixture_models: dict[str, Path]) -> Path:
    """A project directory holding private copies of every fixture file."""
    ws = tmp_path / "project"
    ws.mkdir()
    for name, path in fixture_models.items():
        shutil.copyfile(path, ws / name)
    return ws


@pytest.fixture
def store(mfc_home: Path) -> Store:
    return Store(mfc_home)


@pytest.fixture
def copy_fixture(fixture_models: dict[str, Path]) -> Callable[[str, Path], Path]:
    def copy(name: str, dest_dir: Path) -> Path:
        dest_dir.mkdir(parents=True, exist_ok=True)
        target = dest_dir / name
        shutil.copyfile(fixture_models[name], target)
        return target

    return copy
