"""Regenerate ``registry_cache/``: the fixture base models as an OCI image layout.

    python -m mfc.testing.registry_cache DIR

Generates the fixture GGUFs (``mfc.testing.fixtures``), builds each base model
into a temporary store with the real builder (``FROM <fixture>.gguf``, as a
user's Modelfile would) and writes the layout with the code behind
``mfc save --oci-layout``. Everything is deterministic, so regenerating gives
byte-identical files; a test checks the committed copy against a fresh one.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from mfc.store import ModelName, Store, parse_name
from mfc.store.oci_layout import LayoutEntry, save

# name -> fixture file (see mfc.testing.fixtures.NAMES)
MODELS: tuple[tuple[str, str], ...] = (
    ("counter:latest", "counter-f32.gguf"),
    ("counter:f16", "counter-f16.gguf"),
    ("counter:q8_0", "counter-q8_0.gguf"),
)


def _build(store: Store, name: ModelName, gguf: Path) -> None:
    """Build ``FROM <gguf>`` with the real builder, as `mfc build` would."""
    from mfc.build.builder import Builder
    from mfc.diagnostics.span import Span
    from mfc.modelfile.spec import BaseRef, ModelSpec

    span = Span("<registry_cache>", 1, 1, 1, 1)
    spec = ModelSpec(source="<registry_cache>", base=BaseRef(str(gguf), span))
    Builder(store, link="copy").build_spec(spec, gguf.parent, name)


def generate(dest: Path) -> list[LayoutEntry]:
    """Write the layout into ``dest`` (created, or an existing layout replaced)."""
    from mfc.testing.fixtures import generate as generate_fixtures

    with tempfile.TemporaryDirectory(prefix="mfc-registry-cache-") as tmp:
        fixtures = generate_fixtures(Path(tmp) / "fixtures")
        store = Store(Path(tmp) / "store")
        names = []
        for text, fixture in MODELS:
            name = parse_name(text)
            _build(store, name, fixtures[fixture])
            names.append(name)
        return save(store, names, layout_dir=dest)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mfc.testing.registry_cache DIR", file=sys.stderr)
        return 2
    for entry in generate(Path(args[0])):
        print(f"{entry.name.display}  {entry.manifest.digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
