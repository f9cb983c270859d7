"""The committed registry_cache/ is exactly what the generator makes today."""

from __future__ import annotations

from pathlib import Path

from mfc.store import Store, parse_name
from mfc.store.oci_layout import OciLayout, load
from mfc.testing.registry_cache import MODELS, generate

COMMITTED = Path(__file__).resolve().parents[2] / "registry_cache"


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_regenerated_cache_is_byte_identical(tmp_path: Path) -> None:
    fresh = tmp_path / "registry_cache"
    generate(fresh)
    committed, regenerated = _files(COMMITTED), _files(fresh)
    assert sorted(committed) == sorted(regenerated), "run `make registry-cache` and commit"
    changed = [name for name in committed if committed[name] != regenerated[name]]
    assert changed == [], "run `make registry-cache` and commit"


def test_cache_names_the_fixture_models_and_loads(tmp_path: Path) -> None:
    with OciLayout(COMMITTED) as layout:
        assert sorted(n.display for n in layout.names()) == sorted(
            parse_name(name).display for name, _ in MODELS
        )
    store = Store(tmp_path / "store")
    load(store, COMMITTED)
    assert store.verify() == []
    assert {e.name.display for e in store.list_models()} == {
        "counter:latest",
        "counter:f16",
        "counter:q8_0",
    }
