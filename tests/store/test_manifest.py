"""Manifests: canonical bytes, digests, parsing untrusted JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from syrupy.assertion import SnapshotAssertion

from mfc.store import Descriptor, Manifest, ManifestError, canonical_json, sha256_digest
from mfc.store import media_types as mt

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def _manifest() -> Manifest:
    return Manifest(Descriptor(mt.CONFIG, D1, 10), (Descriptor(mt.MODEL, D2, 20),))


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": [1.5, "é", None]}) == '{"a":[1.5,"é",null],"b":1}'.encode()
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_manifest_bytes_and_digest(snapshot: SnapshotAssertion) -> None:
    m = _manifest()
    data = m.to_bytes()
    assert data == snapshot
    assert m.digest == sha256_digest(data)
    assert m.size == 30
    back = Manifest.from_bytes(data)
    assert back == m and back.digest == m.digest
    assert [d.media_type for d in back.descriptors()] == [mt.CONFIG, mt.MODEL]
    assert back.layer(mt.MODEL) == Descriptor(mt.MODEL, D2, 20)
    assert back.layer(mt.ADAPTER) is None


def test_foreign_bytes_are_kept_so_the_id_is_theirs() -> None:
    """Ollama writes non-canonical JSON (Go field order, extra fields); the ID hashes its bytes."""
    ollama_style = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.MANIFEST,
            "config": {"mediaType": mt.CONFIG, "digest": D1, "size": 10},
            "layers": [{"mediaType": mt.MODEL, "digest": D2, "size": 20, "from": "/x"}],
        }
    ).encode()
    m = Manifest.from_bytes(ollama_style)
    assert m.to_bytes() == ollama_style
    assert m.digest == sha256_digest(ollama_style)
    assert m == _manifest()  # same content
    import dataclasses

    assert dataclasses.replace(m).to_bytes() == _manifest().to_bytes()  # edits re-canonicalise


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'{"schemaVersion": 1}', "schemaVersion"),
        (b'{"schemaVersion": 2, "mediaType": "text/plain"}', "not an image manifest"),
        (b'{"schemaVersion": 2, "layers": []}', "`config`: expected an object"),
        (
            b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:../..",'
            b' "size": 1}, "layers": []}',
            "`digest` is not",
        ),
        (
            b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "' + D1.encode() + b'",'
            b' "size": -1}, "layers": []}',
            "`size`",
        ),
        (
            b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "' + D1.encode() + b'",'
            b' "size": 1}, "layers": {}}',
            "`layers` missing",
        ),
    ],
)
def test_bad_manifests_are_rejected(data: bytes, words: str) -> None:
    with pytest.raises(ManifestError, match=words.replace("`", ".").replace("[", ".")):
        Manifest.from_bytes(data)


def test_layer_order_table() -> None:
    assert mt.LAYER_ORDER[0] == mt.MODEL
    assert set(mt.LAYER_ORDER) == {
        mt.MODEL,
        mt.PROJECTOR,
        mt.ADAPTER,
        mt.TEMPLATE,
        mt.SYSTEM,
        mt.PARAMS,
        mt.MESSAGES,
        mt.LICENSE,
    }
    assert mt.layer_rank("application/vnd.ollama.image.unknown") == len(mt.LAYER_ORDER)


_DESCRIPTORS = st.builds(
    Descriptor,
    st.sampled_from([*mt.LAYER_ORDER, "application/vnd.ollama.image.embed"]),
    st.text("0123456789abcdef", min_size=64, max_size=64).map("sha256:".__add__),
    st.integers(min_value=0, max_value=2**53),
)


@given(_DESCRIPTORS, st.lists(_DESCRIPTORS, max_size=8).map(tuple))
def test_manifest_round_trip(config: Descriptor, layers: tuple[Descriptor, ...]) -> None:
    m = Manifest(config, layers)
    data = m.to_bytes()
    assert data == canonical_json(json.loads(data))
    back = Manifest.from_bytes(data)
    assert back == m
    assert back.to_bytes() == data and back.digest == m.digest
