"""Manifests and descriptors as frozen data, with canonical bytes and digests.

The manifest digest (sha256 of its bytes) is the model ID, so bytes must be
canonical: sorted keys, no whitespace, UTF-8. A manifest read from disk keeps
the exact bytes it was read from (an Ollama-written manifest is not canonical
JSON, and its ID is the hash of *its* bytes).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mfc import digest
from mfc.store import media_types


class ManifestError(ValueError):
    """Manifest bytes that are not a valid image manifest."""


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, compact separators, UTF-8 (no ASCII escaping); NaN refused."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


sha256_digest = digest.of_bytes  # re-exported: the store's public API names it so
is_digest = digest.is_digest


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Descriptor:
        if not isinstance(obj, dict):
            raise ManifestError(f"{where}: expected an object")
        media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise ManifestError(f"{where}: `mediaType` missing or not a string")
        if not is_digest(digest):
            raise ManifestError(f"{where}: `digest` is not `sha256:` + 64 lowercase hex digits")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"{where}: `size` is not a non-negative integer")
        return cls(media_type, digest, size)


@dataclass(frozen=True)
class Manifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = media_types.MANIFEST
    schema_version: int = 2
    # The bytes this manifest was read from, if any; not an init field, so
    # dataclasses.replace() yields a manifest serialised canonically again.
    raw: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "schemaVersion": self.schema_version,
            "mediaType": self.media_type,
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }

    def to_bytes(self) -> bytes:
        return self.raw if self.raw is not None else canonical_json(self.to_json())

    @property
    def digest(self) -> str:
        """The model ID: sha256 of the manifest bytes."""
        return sha256_digest(self.to_bytes())

    @property
    def size(self) -> int:
        """Total bytes of the config and every layer (what `mfc list` shows)."""
        return self.config.size + sum(layer.size for layer in self.layers)

    def descriptors(self) -> Iterator[Descriptor]:
        """The config then every layer: every blob this manifest references."""
        yield self.config
        yield from self.layers

    def layers_of(self, media_type: str) -> tuple[Descriptor, ...]:
        return tuple(layer for layer in self.layers if layer.media_type == media_type)

    def layer(self, media_type: str) -> Descriptor | None:
        found = self.layers_of(media_type)
        return found[0] if found else None

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ManifestError("manifest is not a JSON object")
        if obj.get("schemaVersion") != 2:
            raise ManifestError("manifest `schemaVersion` is not 2")
        media_type = obj.get("mediaType", media_types.MANIFEST)
        if media_type not in (media_types.MANIFEST, media_types.OCI_MANIFEST):
            raise ManifestError(f"manifest `mediaType` `{media_type}` is not an image manifest")
        config = Descriptor.from_json(obj.get("config"), "manifest `config`")
        layers_obj = obj.get("layers")
        if not isinstance(layers_obj, list):
            raise ManifestError("manifest `layers` missing or not an array")
        layers = tuple(
            Descriptor.from_json(item, f"manifest `layers[{i}]`")
            for i, item in enumerate(layers_obj)
        )
        manifest = cls(config, layers, media_type)
        object.__setattr__(manifest, "raw", bytes(data))
        return manifest
