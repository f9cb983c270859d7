"""Helpers for builder tests: a workspace with copies of the fixture models, specs, stores."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mfc.modelfile.span import Span
from mfc.modelfile.spec import AdapterRef, BaseRef, Message, ModelSpec, Param, ParamValue, Text
from mfc.store.store import Store


def span(line: int, file: str = "Modelfile", width: int = 10) -> Span:
    return Span(file, line, 1, line, 1 + width)


def make_spec(
    base: str,
    *,
    adapters: tuple[tuple[str, float], ...] = (),
    params: dict[str, ParamValue] | None = None,
    template: str | None = None,
    system: str | None = None,
    licenses: tuple[str, ...] = (),
    messages: tuple[tuple[str, str], ...] = (),
    build_args: dict[str, str] | None = None,
    source: str = "Modelfile",
) -> ModelSpec:
    """A checked Modelfile as the front-end would produce it; line N+1 is instruction N."""
    line = iter(range(1, 1000))
    return ModelSpec(
        source=source,
        base=BaseRef(base, span(next(line), source)),
        adapters=tuple(AdapterRef(p, s, span(next(line), source)) for p, s in adapters),
        parameters=tuple(Param(k, v, span(next(line), source)) for k, v in (params or {}).items()),
        template=Text(template, span(next(line), source)) if template is not None else None,
        system=Text(system, span(next(line), source)) if system is not None else None,
        licenses=tuple(Text(t, span(next(line), source)) for t in licenses),
        messages=tuple(Message(r, c, span(next(line), source)) for r, c in messages),
        build_args=tuple(sorted((build_args or {}).items())),
    )


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
