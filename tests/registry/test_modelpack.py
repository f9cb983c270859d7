"""CNCF ModelPack: the translation table, `push --format modelpack` to a real registry, skopeo
reading and copying it, and pulls of ModelPack artifacts (direct, through an index, refused)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from mfc.cli.main import cli
from mfc.registry.client import RegistryError
from mfc.registry.modelpack import LAYERS, ModelPackError, from_modelpack, to_modelpack
from mfc.registry.pull import pull
from mfc.registry.push import push
from mfc.store import Store, canonical_json
from mfc.store import media_types as mt
from mfc.store.manifest import sha256_digest
from mfc.store.store import read_config
from mfc.testing.registry import Registry

from .helpers import counter_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, fixture_models: dict[str, Path]) -> Store:
    extra = 'SYSTEM "count"\nPARAMETER temperature 0\nLICENSE "MIT"\n'
    return counter_store(tmp_path_factory.mktemp("modelpack"), fixture_models, extra)


@pytest.fixture(scope="module")
def pushed(store: Store, registry: Registry) -> str:
    """`counter` pushed as ModelPack to HOST/mp/a:1; the artifact's digest."""
    name = f"{registry.host}/mp/a:1"
    store.copy("counter", name)
    result = push(store, name, format="modelpack")
    return result.digest


def _artifact(store: Store) -> tuple[dict[str, object], bytes]:
    manifest = store.read_manifest("counter")
    pack = to_modelpack(manifest, read_config(store, manifest))
    return json.loads(pack.manifest), pack.config


def _run(store: Store, name: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "mfc", "run", name, "abc"],
        input="",
        capture_output=True,
        text=True,
        env={**os.environ, "MFC_MODELS": str(store.root)},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def _put(registry: Registry, repo: str, ref: str, data: bytes, media_type: str) -> None:
    r = httpx.put(
        f"{registry.url}/v2/{repo}/manifests/{ref}",
        content=data,
        headers={"Content-Type": media_type},
    )
    assert r.status_code == 201, r.text


def _put_blob(registry: Registry, repo: str, data: bytes) -> str:
    digest = sha256_digest(data)
    r = httpx.post(f"{registry.url}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202
    url = httpx.URL(registry.url).join(r.headers["Location"])
    r = httpx.put(url.copy_merge_params({"digest": digest}), content=data)
    assert r.status_code == 201, r.text
    return digest


def _layer(
    media_type: str, hexdigit: str, path: str | None = None, key: str = mt.MODELPACK_FILEPATH
) -> dict[str, object]:
    layer: dict[str, object] = {"mediaType": media_type, "digest": "sha256:" + hexdigit * 64}
    layer["size"] = 3
    if path is not None:
        layer["annotations"] = {key: path}
    return layer


# -- the table, without a registry ----------------------------------------------------------


def test_every_layer_is_annotated_and_typed_by_the_table(store: Store) -> None:
    obj, config = _artifact(store)
    assert obj["artifactType"] == mt.MODELPACK_ARTIFACT
    assert obj["mediaType"] == mt.OCI_MANIFEST
    assert obj["config"] == {
        "mediaType": mt.MODELPACK_CONFIG,
        "digest": sha256_digest(config),
        "size": len(config),
    }
    layers = obj["layers"]
    assert isinstance(layers, list)
    paths = [layer["annotations"][mt.MODELPACK_FILEPATH] for layer in layers]
    assert paths == [
        "model.gguf",
        "system.txt",
        "params.json",
        "LICENSE",
        "ollama-config.json",
    ]
    for layer in layers:
        assert layer["annotations"][mt.OCI_TITLE] == layer["annotations"][mt.MODELPACK_FILEPATH]
        row = next(r for r in LAYERS if r.filepath == layer["annotations"][mt.MODELPACK_FILEPATH])
        assert layer["mediaType"] == row.modelpack
    body = json.loads(config)
    assert body["config"]["format"] == "gguf"
    assert body["config"]["quantization"] == "F32"
    assert body["config"]["paramSize"]
    assert body["modelfs"] == {"type": "layers", "diffIds": [x["digest"] for x in layers]}


def test_deterministic_and_round_trips_to_the_same_model_id(store: Store) -> None:
    manifest = store.read_manifest("counter")
    a = to_modelpack(manifest, read_config(store, manifest))
    b = to_modelpack(manifest, read_config(store, manifest))
    assert a == b
    back = from_modelpack(json.loads(a.manifest), json.loads(a.config))
    assert back.blobs == ()
    assert back.manifest.to_bytes() == manifest.to_bytes()


def test_foreign_artifact_maps_by_path_and_synthesises_a_config() -> None:
    raw = {
        "layers": [
            _layer(mt.MODELPACK_DOC, "1", "README.md"),
            _layer(mt.MODELPACK_WEIGHT, "2", "qwen.Q4_K_M.gguf"),
            _layer(mt.MODELPACK_WEIGHT_CONFIG, "3", "template", key=mt.OCI_TITLE),
            _layer(mt.DOCKER_AI_GGUF, "4"),
            _layer(mt.MODELPACK_WEIGHT, "5", "mmproj-f16.gguf"),
            _layer(mt.MODELPACK_DOC, "6", "LICENSE"),
        ]
    }
    model_config = {"format": "gguf", "paramSize": "0.5B", "quantization": "Q4_K_M"}
    config = {"descriptor": {"family": "qwen2"}, "config": model_config}
    got = from_modelpack(raw, config)
    assert [x.media_type for x in got.manifest.layers] == [
        mt.MODEL,
        mt.MODEL,
        mt.PROJECTOR,
        mt.TEMPLATE,
        mt.LICENSE,
    ]
    (blob,) = got.blobs
    assert got.manifest.config.digest == sha256_digest(blob)
    body = json.loads(blob)
    assert (body["model_family"], body["model_type"], body["file_type"]) == (
        "qwen2",
        "0.5B",
        "Q4_K_M",
    )
    assert from_modelpack(raw, config) == got  # deterministic


@pytest.mark.parametrize(
    ("layer", "config", "message"),
    [
        (_layer(mt.MODELPACK_WEIGHT, "7", "model.safetensors"), {}, "not a GGUF file"),
        (_layer("application/vnd.cncf.model.weight.v1.tar", "7"), {}, "packed as"),
        (_layer(mt.MODELPACK_WEIGHT, "7"), {"config": {"format": "onnx"}}, "GGUF weights only"),
        (_layer(mt.MODELPACK_WEIGHT, "7"), {}, "no file path"),
        (_layer(mt.MODELPACK_DOC, "7", "README.md"), {}, "no GGUF weights"),
    ],
)
def test_non_gguf_artifacts_are_refused(
    layer: dict[str, object], config: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelPackError, match=message):
        from_modelpack({"layers": [layer]}, config)


# -- against a real registry ------------------------------------------------------------------


def test_push_puts_the_translated_manifest(store: Store, registry: Registry, pushed: str) -> None:
    manifest = store.read_manifest("counter")
    expected = to_modelpack(manifest, read_config(store, manifest))
    r = httpx.get(f"{registry.url}/v2/mp/a/manifests/1", headers={"Accept": mt.OCI_MANIFEST})
    assert r.status_code == 200
    assert r.content == expected.manifest
    assert r.headers["Content-Type"] == mt.OCI_MANIFEST
    assert pushed == expected.digest == r.headers["Docker-Content-Digest"]
    config = httpx.get(f"{registry.url}/v2/mp/a/blobs/{sha256_digest(expected.config)}")
    assert config.content == expected.config


def test_pull_back_is_the_same_model(
    store: Store, registry: Registry, pushed: str, tmp_path: Path
) -> None:
    dest = Store(tmp_path / "models")
    result = pull(dest, f"{registry.host}/mp/a:1")
    assert result.digest == store.read_manifest("counter").digest
    got = dest.read_manifest(f"{registry.host}/mp/a:1")
    assert got.to_bytes() == store.read_manifest("counter").to_bytes()


skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")


@skopeo
def test_skopeo_inspect_raw_and_copy_keep_every_digest(
    store: Store, registry: Registry, pushed: str, tmp_path: Path
) -> None:
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/mp/a:1"],
        capture_output=True,
        timeout=60,
    )
    assert raw.returncode == 0, raw.stderr
    assert sha256_digest(raw.stdout) == pushed
    copied = subprocess.run(
        [
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"docker://{registry.host}/mp/a:1",
            f"docker://{registry.host}/mp/b:1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert copied.returncode == 0, copied.stderr
    r = httpx.get(f"{registry.url}/v2/mp/b/manifests/1", headers={"Accept": mt.OCI_MANIFEST})
    assert r.headers["Docker-Content-Digest"] == pushed
    dest = Store(tmp_path / "models")
    pull(dest, f"{registry.host}/mp/b:1")
    got = dest.read_manifest(f"{registry.host}/mp/b:1")
    assert got.digest == store.read_manifest("counter").digest
    assert _run(dest, f"{registry.host}/mp/b:1") == _run(store, "counter")


def test_an_index_pointing_at_a_modelpack_manifest_pulls(
    store: Store, registry: Registry, pushed: str, tmp_path: Path
) -> None:
    r = httpx.get(f"{registry.url}/v2/mp/a/manifests/1", headers={"Accept": mt.OCI_MANIFEST})
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mt.OCI_MANIFEST,
                    "artifactType": mt.MODELPACK_ARTIFACT,
                    "digest": pushed,
                    "size": len(r.content),
                }
            ],
        }
    )
    _put(registry, "mp/a", "indexed", index, mt.OCI_INDEX)
    dest = Store(tmp_path / "models")
    pull(dest, f"{registry.host}/mp/a:indexed")
    got = dest.read_manifest(f"{registry.host}/mp/a:indexed")
    assert got.to_bytes() == store.read_manifest("counter").to_bytes()


def test_weights_that_are_not_gguf_are_refused_and_nothing_written(
    registry: Registry, tmp_path: Path
) -> None:
    weights = _put_blob(registry, "mp/st", b"not gguf weights")
    config = canonical_json({"config": {"format": "safetensors"}, "descriptor": {}})
    config_digest = _put_blob(registry, "mp/st", config)
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": mt.MODELPACK_ARTIFACT,
            "config": {
                "mediaType": mt.MODELPACK_CONFIG,
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": mt.MODELPACK_WEIGHT,
                    "digest": weights,
                    "size": 16,
                    "annotations": {mt.MODELPACK_FILEPATH: "model.safetensors"},
                }
            ],
        }
    )
    _put(registry, "mp/st", "1", manifest, mt.OCI_MANIFEST)
    root = tmp_path / "models"
    with pytest.raises(RegistryError, match=r"ModelPack artifact mfc cannot pull.*safetensors"):
        pull(Store(root), f"{registry.host}/mp/st:1")
    assert not root.exists() or not any(p.is_file() for p in root.rglob("*"))


def test_cli_push_format_modelpack(store: Store, registry: Registry) -> None:
    name = f"{registry.host}/mp/cli:1"
    store.copy("counter", name)
    result = CliRunner().invoke(
        cli, ["push", "--format", "modelpack", name], env={"MFC_MODELS": str(store.root)}
    )
    assert result.exit_code == 0, result.output
    manifest = store.read_manifest("counter")
    digest = to_modelpack(manifest, read_config(store, manifest)).digest
    assert f"@{digest}" in result.output


def test_pull_to_a_layout_then_load_it(
    store: Store, registry: Registry, pushed: str, tmp_path: Path
) -> None:
    """`mfc pull --to DIR` of a ModelPack artifact writes mfc's image (with its config blob,
    which the registry does not hold as such) into an OCI layout that `mfc load` reads back."""
    layout = tmp_path / "cache"
    name = f"{registry.host}/mp/a:1"
    r = CliRunner().invoke(cli, ["pull", "--to", str(layout), name])
    assert r.exit_code == 0, r.output
    dest = Store(tmp_path / "models")
    env = {**os.environ, "MFC_MODELS": str(dest.root)}
    loaded = subprocess.run(
        [sys.executable, "-m", "mfc", "load", "-i", str(layout)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr
    got = dest.read_manifest(name)
    assert got.to_bytes() == store.read_manifest("counter").to_bytes()
    assert _run(dest, name) == _run(store, "counter")
