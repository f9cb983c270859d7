"""`mfc show --modelfile` prints a Modelfile that the real builder turns into the same model."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mfc.cli.main import cli
from mfc.store import Store

CASES = {
    "plain": "",
    "awkward-text": (
        'TEMPLATE """{{ if .System }}<|sys|>{{ .System }}\n{{ end }}"{{ .Prompt }}"\n"""\n'
        'SYSTEM "  leading and trailing blanks  "\n'
        'MESSAGE user """multi\nline "quoted" message"""\n'
        "MESSAGE assistant ok\n"
        'LICENSE """MIT\n\nsecond paragraph"""\n'
        "LICENSE Apache-2.0\n"
    ),
    "parameters": (
        "PARAMETER temperature 0.25\n"
        "PARAMETER min_p 0.00001\n"
        "PARAMETER seed 1000000\n"
        "PARAMETER num_ctx 256\n"
        'PARAMETER stop "<|im_end|>"\n'
        'PARAMETER stop " User:"\n'
        "PARAMETER stop '\n"
    ),
    "adapters": "ADAPTER --scale=0.5 {lora_shift}\nADAPTER {lora_constant}\n",
    "build-args": "ARG WHO=counter\nSYSTEM you are ${{WHO}}\n",
}


def _build(path: Path, tag: str) -> str:
    result = CliRunner().invoke(cli, ["build", "--quiet", "-t", tag, str(path)])
    assert result.exit_code == 0, result.output
    return Store.from_env().read_manifest(tag).digest


@pytest.mark.parametrize("case", sorted(CASES))
def test_show_modelfile_rebuilds_the_same_digest(
    case: str, mfc_home: Path, tmp_path: Path, fixture_models: dict[str, Path]
) -> None:
    body = CASES[case].format(
        lora_shift=fixture_models["lora-shift.gguf"],
        lora_constant=fixture_models["lora-constant.gguf"],
    )
    first = tmp_path / "first"
    first.mkdir()
    (first / "Modelfile").write_text(f"FROM {fixture_models['counter-f32.gguf']}\n{body}")
    digest = _build(first, "original")

    shown = CliRunner().invoke(cli, ["show", "original", "--modelfile"])
    assert shown.exit_code == 0, shown.output
    second = tmp_path / "second"
    second.mkdir()
    (second / "Modelfile").write_text(shown.output)
    assert _build(second, "rebuilt") == digest


_TEXT = st.text(st.sampled_from([*"aZ9 #$\"'{}<|>\\\t\n", "é", "\u2603"]), min_size=1, max_size=24)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    temperature=st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
    top_p=st.floats(min_value=0, max_value=1),
    seed=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    stops=st.lists(_TEXT, min_size=1, max_size=3),
    system=_TEXT,
)
def test_show_modelfile_round_trips_any_values(
    tmp_path_factory: pytest.TempPathFactory,
    fixture_models: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    temperature: float,
    top_p: float,
    seed: int,
    stops: list[str],
    system: str,
) -> None:
    from mfc.modelfile.format import UnrepresentableValue, render_instruction

    root = tmp_path_factory.mktemp("any")
    monkeypatch.setenv("MFC_MODELS", str(root / "store"))
    try:
        lines = [
            render_instruction("FROM", str(fixture_models["counter-f32.gguf"])),
            render_instruction("SYSTEM", system),
            render_instruction("PARAMETER", repr(temperature), name="temperature"),
            render_instruction("PARAMETER", repr(top_p), name="top_p"),
            render_instruction("PARAMETER", str(seed), name="seed"),
            *(render_instruction("PARAMETER", s, name="stop") for s in stops),
        ]
    except UnrepresentableValue:
        assume(False)
    first = root / "first"
    first.mkdir()
    (first / "Modelfile").write_text("\n".join(lines) + "\n")
    digest = _build(first, "original")
    shown = CliRunner().invoke(cli, ["show", "original", "--modelfile"])
    assert shown.exit_code == 0, shown.output
    second = root / "second"
    second.mkdir()
    (second / "Modelfile").write_text(shown.output)
    assert _build(second, "rebuilt") == digest


@pytest.mark.parametrize("extra", ["split", "projector"])
def test_show_modelfile_refuses_what_a_modelfile_cannot_rebuild(
    extra: str, mfc_home: Path, fixture_models: dict[str, Path]
) -> None:
    """FROM names one blob: printing it for a split model or one with a projector would
    silently build a different model, so `show --modelfile` says why and what to do instead."""
    from mfc.store import Descriptor, Manifest
    from mfc.store import media_types as mt

    from .conftest import stage

    store = Store.from_env()
    plain = stage(store, "plain", fixture_models["counter-f32.gguf"])
    extra_blob = store.put_file(fixture_models["counter-f16.gguf"])
    media_type = mt.MODEL if extra == "split" else mt.PROJECTOR
    layers = (plain.layers[0], Descriptor(media_type, *extra_blob), *plain.layers[1:])
    manifest = Manifest(plain.config, layers)
    store.write_manifest("odd", manifest)

    shown = CliRunner().invoke(cli, ["show", "odd", "--modelfile"])
    assert shown.exit_code == 1
    assert shown.stdout == ""
    reason = "split into 2 GGUF shards" if extra == "split" else "it has a projector layer"
    assert reason in shown.stderr
    assert f"`FROM odd:latest@{manifest.digest}`" in shown.stderr
    assert "mfc save -o FILE.tar odd:latest" in shown.stderr
    assert CliRunner().invoke(cli, ["show", "plain", "--modelfile"]).exit_code == 0
