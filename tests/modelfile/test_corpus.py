"""Corpus: broken Modelfiles snapshot their human + JSON diagnostics; valid ones their IR."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mfc.modelfile import check_file, diagnostics_to_json, render_human
from mfc.modelfile.jsonform import instruction_to_json

CORPUS = Path(__file__).parent / "corpus"
INVALID = sorted((CORPUS / "invalid").glob("*.Modelfile"))
VALID = sorted((CORPUS / "valid").glob("*.Modelfile"))


def _relative(path: Path) -> str:
    return path.relative_to(CORPUS).as_posix()


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_corpus(path: Path, snapshot, monkeypatch) -> None:
    monkeypatch.chdir(CORPUS)  # file names in the output are stable relative paths
    result = check_file(_relative(path))
    assert not result.ok
    assert result.spec is None
    human = render_human(result.diagnostics, {result.source.name: result.source})
    assert human == snapshot(name="human")
    assert json.dumps(diagnostics_to_json(result.diagnostics), indent=1) == snapshot(name="json")


def _dump(spec) -> dict:
    def strip(value):
        if dataclasses.is_dataclass(value):
            return {
                f.name: strip(getattr(value, f.name))
                for f in dataclasses.fields(value)
                if f.name != "span"
            } | ({"line": value.span.line} if hasattr(value, "span") else {})
        if isinstance(value, tuple):
            return [strip(v) for v in value]
        return value

    return strip(spec)


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_corpus(path: Path, snapshot, monkeypatch) -> None:
    monkeypatch.chdir(CORPUS)
    result = check_file(_relative(path), check_paths=False)
    assert result.ok, render_human(result.diagnostics, {result.source.name: result.source})
    assert _dump(result.spec) == snapshot(name="spec")
    syntax = [instruction_to_json(i) for i in result.parse.instructions]
    assert syntax == snapshot(name="instructions")
