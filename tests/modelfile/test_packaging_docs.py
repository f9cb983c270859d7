"""The packaged grammar copy matches the source of truth; every code is documented."""

from __future__ import annotations

import re
from pathlib import Path

import mfc.modelfile as api
from mfc.modelfile.codes import REGISTRY

ROOT = Path(__file__).resolve().parents[2]


def test_packaged_grammar_is_identical() -> None:
    source = (ROOT / "grammar" / "modelfile.lark").read_bytes()
    packaged = (ROOT / "mfc" / "_data" / "modelfile.lark").read_bytes()
    assert packaged == source, "run: cp grammar/modelfile.lark mfc/_data/modelfile.lark"


def test_every_registered_code_is_documented() -> None:
    doc = (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^#+ .*?\b(MF\d{3})\b", doc, flags=re.M))
    missing = sorted(set(REGISTRY) - headings)
    assert not missing, f"document these codes in docs/diagnostics.md: {missing}"
    for code in REGISTRY.values():
        assert code.slug in doc


def test_codes_are_well_formed() -> None:
    for key, code in REGISTRY.items():
        assert key == code.code and re.fullmatch(r"MF\d{3}", key)
        assert re.fullmatch(r"[a-z0-9-]+", code.slug)


def test_public_api_sorted_and_complete() -> None:
    assert api.__all__ == sorted(api.__all__)
    for name in api.__all__:
        assert hasattr(api, name)


def test_every_parameter_documented() -> None:
    from mfc.modelfile.params import PARAMETERS

    doc = (ROOT / "docs" / "modelfile.md").read_text(encoding="utf-8")
    for name in PARAMETERS:
        assert f"`{name}`" in doc


def test_docs_example_checks_clean() -> None:
    from mfc.modelfile import check_text

    doc = (ROOT / "docs" / "modelfile.md").read_text(encoding="utf-8")
    example = doc.split("```\n", 2)[1]
    result = check_text(example)
    assert result.ok and result.diagnostics == ()
