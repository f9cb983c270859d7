"""The one image view: read once, rendered and shown the same everywhere."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from mfc.cli.main import cli
from mfc.store import Descriptor, Manifest, Store, StoreError, canonical_json
from mfc.store import media_types as mt
from mfc.store.image import ChatMessage, ImageView, image_of_gguf, read_image
from mfc.store.names import InvalidNameError, parse_name
from mfc.store.show import (
    UnrepresentableError,
    format_show,
    model_rows,
    parameters_text,
    render_modelfile,
)

from .conftest import stage


@pytest.fixture
def counter_view(store: Store, fixture_models: dict[str, Path]) -> ImageView:
    stage(
        store,
        "counter",
        fixture_models["counter-f32.gguf"],
        system="You count.",
        params={"stop": ["<|im_end|>"], "temperature": 0.7},
        adapters=((fixture_models["lora-shift.gguf"], 0.5),),
        license_text="MIT",
    )
    return read_image(store, "counter")


def test_read_image_reads_every_layer_once(counter_view: ImageView, store: Store) -> None:
    v = counter_view
    assert v.display == "counter:latest" and v.digest == store.read_manifest("counter").digest
    assert v.params == {"stop": ("<|im_end|>",), "temperature": 0.7}
    assert v.system == "You count." and v.template == "{{ .Prompt }}" and v.licenses == ("MIT",)
    assert [a.scale for a in v.adapters] == [0.5] and v.adapters[0].size > 0
    assert v.model_path == v.shards[0] and v.size == v.manifest.size  # type: ignore[union-attr]
    assert v.modified is not None
    assert (v.architecture, v.parameter_size, v.quantization) == ("llama", "1M", "F32")
    assert (v.context_length, v.embedding_length) == (512, 128)


def test_what_the_server_reports(counter_view: ImageView) -> None:
    """/api/tags and /api/show take details, model_info and capabilities from the view."""
    assert counter_view.details() == {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "1M",
        "quantization_level": "F32",
    }
    info = counter_view.model_info()
    assert info["general.architecture"] == "llama"
    assert info["llama.context_length"] == 512 and info["llama.embedding_length"] == 128
    assert counter_view.capabilities() == ("completion",)
    assert parameters_text(counter_view.params) == (
        f'{"stop":<30} "<|im_end|>"\n{"temperature":<30} 0.7'
    )


def test_bare_gguf_has_the_same_view(counter: Path) -> None:
    v = image_of_gguf(counter, system="s", messages=(ChatMessage("user", "hi"),))
    assert v.digest == "" and v.model_path == counter and v.shards == (counter,)
    assert v.architecture == "llama" and v.context_length == 512
    assert v.parameter_size == v.config.get("model_type", v.parameter_size)  # from the header
    assert v.parameter_count and v.parameter_count > 0
    assert "architecture        llama" in format_show(v)


def test_unknown_facts_show_as_ollama_shows_them(counter: Path) -> None:
    """Blank architecture/parameters/quantization; no context/embedding rows."""
    rows = dict(model_rows(ImageView("raw", counter)))
    assert rows == {"architecture": "", "parameters": "", "quantization": ""}
    assert format_show(ImageView("raw", counter)).startswith("  Model\n    architecture\n")


def test_parameter_size_is_ollamas_human_number(counter: Path) -> None:
    v = image_of_gguf(counter)
    big = dataclasses.replace(v, gguf=dataclasses.replace(v.gguf, parameter_count=8_030_261_248))
    assert big.parameter_size == "8.0B"  # Ollama's format.HumanNumber, not 8.03B


def test_modelfile_keeps_requires_renderer_parser(store: Store, counter: Path) -> None:
    model = store.put_file(counter)
    config = {"model_format": "gguf", "requires": "0.12.0", "renderer": "qwen3", "parser": "qwen3"}
    store.write_manifest(
        "extras",
        Manifest(
            Descriptor(mt.CONFIG, *store.put_bytes(canonical_json(config))),
            (Descriptor(mt.MODEL, *model),),
        ),
    )
    view = read_image(store, "extras")
    text = render_modelfile(view)
    assert text.endswith("REQUIRES 0.12.0\nRENDERER qwen3\nPARSER qwen3\n")
    session_text = render_modelfile(view, base="extras")  # the REPL's /show modelfile
    assert session_text.startswith("FROM extras\n") and "PARSER qwen3" in session_text
    assert ("requires", "0.12.0") in model_rows(view)


def test_unquotable_text_is_a_typed_error(counter: Path) -> None:
    view = ImageView("x", counter, system='a"\nb"""\n')
    with pytest.raises(UnrepresentableError) as info:
        render_modelfile(view, base="x")
    assert info.value.keyword == "SYSTEM" and "cannot be quoted" in info.value.reason


def test_a_damaged_layer_is_a_typed_store_error(store: Store, counter: Path) -> None:
    stage(store, "bad", counter, params=None)
    manifest = store.read_manifest("bad")
    broken = Descriptor(mt.PARAMS, *store.put_bytes(b"not json"))
    store.write_manifest("bad", Manifest(manifest.config, (*manifest.layers, broken)))
    with pytest.raises(StoreError, match="is not valid JSON"):
        read_image(store, "bad")


def test_invalid_names_carry_what_and_why() -> None:
    with pytest.raises(InvalidNameError) as info:
        parse_name("../etc")
    assert info.value.what == "invalid model name `../etc`"
    assert str(info.value) == f"{info.value.what}: {info.value.why}"


def test_show_and_repl_print_the_same_model_section(
    counter_view: ImageView, mfc_home: Path
) -> None:
    shown = CliRunner().invoke(cli, ["show", "counter"]).output
    assert shown == format_show(counter_view)


def test_gguf_header_is_read_once_while_the_file_is_unchanged(
    fixture_models: dict[str, Path], tmp_path: Path
) -> None:
    # `mfc serve` opens the image on every request; parsing a large tensor table each time
    # took CPU from running decodes. A file that changes in place is read again.
    from mfc.store.image import read_gguf_info

    path = tmp_path / "m.gguf"
    path.write_bytes(fixture_models["counter-f32.gguf"].read_bytes())
    first = read_gguf_info([path])
    assert read_gguf_info([path]) is first
    path.write_bytes(fixture_models["counter-q8_0.gguf"].read_bytes())
    second = read_gguf_info([path])
    assert second is not first and second.file_type != first.file_type


@pytest.mark.parametrize(
    ("fixture", "caps"),
    [("tools.gguf", ("completion", "tools")), ("think.gguf", ("completion", "thinking"))],
)
def test_capabilities_follow_what_the_template_shows(
    fixture_models: dict[str, Path], fixture: str, caps: tuple[str, ...]
) -> None:
    """The words come from mfc.template.features, which also drives output parsing."""
    from mfc.testing import chatmodels

    view = image_of_gguf(fixture_models[fixture])
    assert view.capabilities() == caps
    go = chatmodels.TOOLS_TEMPLATE if fixture == "tools.gguf" else chatmodels.THINK_TEMPLATE
    assert dataclasses.replace(view, template=go).capabilities() == caps
