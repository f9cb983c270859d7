"""One grammar file (package data; grammar/ links to it); every code is documented."""

from __future__ import annotations

import re
from pathlib import Path

import mfc.modelfile as api
from mfc.diagnostics.codes import REGISTRY

ROOT = Path(__file__).resolve().parents[2]


def test_one_grammar_file() -> None:
    """grammar/modelfile.lark is a link to the package data, never a second copy."""
    link = ROOT / "grammar" / "modelfile.lark"
    assert link.is_symlink()
    assert link.resolve() == (ROOT / "mfc" / "_data" / "modelfile.lark").resolve()


def test_parser_reads_the_packaged_grammar() -> None:
    from importlib import resources

    from mfc.modelfile.parser import grammar_text

    packaged = resources.files("mfc").joinpath("_data", "modelfile.lark")
    assert grammar_text() == packaged.read_text(encoding="utf-8")


def _registered_anywhere() -> dict[str, str]:
    """code -> slug for every `register("MFxxx", "slug", ...)` in the package.

    Read from the source, so codes registered by modules this test does not
    import (the runtime's, say) are covered too.
    """
    found = {code: entry.slug for code, entry in REGISTRY.items()}
    pattern = re.compile(r'register\(\s*"(MF\d{3})",\s*"([a-z0-9-]+)"')
    for path in (ROOT / "mfc").rglob("*.py"):
        found.update(pattern.findall(path.read_text(encoding="utf-8")))
    return found


def test_every_registered_code_is_documented() -> None:
    doc = (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    pairs = re.findall(r"^#+ (MF\d{3}) ([a-z0-9-]+)", doc, flags=re.M)
    headings = dict(pairs)
    assert len(headings) == len(pairs), "a code has two sections in docs/diagnostics.md"
    registered = _registered_anywhere()
    missing = sorted(set(registered) - set(headings))
    assert not missing, f"document these codes in docs/diagnostics.md: {missing}"
    wrong = {c: s for c, s in registered.items() if headings[c] != s}
    assert not wrong, f"docs/diagnostics.md headings must be `### <code> <slug>`: {wrong}"


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
