"""Properties of the builder: digests depend on content only, and rebuilds from `show` agree."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from build_helpers import make_spec
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfc.build import Builder, build_modelfile
from mfc.cli.main import cli
from mfc.store import media_types as mt
from mfc.store.store import Store

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_params = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.floats(0, 2, allow_nan=False),
        "top_k": st.integers(0, 1000),
        "num_ctx": st.integers(1, 1 << 20),
        "stop": st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3).map(tuple),
    },
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(system=st.none() | _text, params=_params, licenses=st.lists(_text, max_size=2))
def test_same_content_same_digest_in_any_store(
    fixture_models: dict[str, Path], system: str | None, params: dict, licenses: list[str]
) -> None:
    digests = set()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(2):
            project = Path(tmp) / f"p{i}"
            project.mkdir()
            shutil.copyfile(fixture_models["counter-f32.gguf"], project / "m.gguf")
            spec = make_spec("m.gguf", system=system, params=params, licenses=tuple(licenses))
            result = Builder(Store(Path(tmp) / f"s{i}")).build_spec(spec, project, "x")
            digests.add(result.manifest_digest)
            if params:
                stored = json.loads(
                    Store(Path(tmp) / f"s{i}").read_blob(result.manifest.layer(mt.PARAMS).digest)
                )
                assert stored == {
                    k: list(v) if isinstance(v, tuple) else v for k, v in params.items()
                }
    assert len(digests) == 1


def test_show_modelfile_round_trip_of_an_inherited_quantized_model(
    tmp_path: Path, mfc_home: Path, fixture_models: dict[str, Path]
) -> None:
    """Inheritance from a registry-cache image, adapters and quantization all survive `show`."""
    repo = Path(__file__).resolve().parents[2]
    project = tmp_path / "p"
    project.mkdir()
    for name in ("lora-shift.gguf", "lora-constant.gguf"):
        shutil.copyfile(fixture_models[name], project / name)
    (project / "Modelfile").write_text(
        "FROM counter:f16\n"
        "ADAPTER --scale=0.25 ./lora-shift.gguf\n"
        "ADAPTER ./lora-constant.gguf\n"
        'TEMPLATE """{{ if .System }}[system]{{ .System }}\n{{ end }}{{ .Prompt }}"""\n'
        "PARAMETER stop [user]\nPARAMETER temperature 0.5\n"
        "MESSAGE user abc\nMESSAGE assistant def\nLICENSE MIT\n"
    )
    store = Store(mfc_home)
    original = build_modelfile(
        project, "orig", store=store, quantize="Q8_0", registry_cache=repo / "registry_cache"
    )
    shown = CliRunner().invoke(cli, ["show", "orig", "--modelfile"], catch_exceptions=False)
    assert shown.exit_code == 0
    again = tmp_path / "again"
    again.mkdir()
    (again / "Modelfile").write_text(shown.output)
    rebuilt = build_modelfile(again, "rebuilt", store=store)
    assert rebuilt.manifest_digest == original.manifest_digest
    assert rebuilt.config["file_type"] == "Q8_0"
