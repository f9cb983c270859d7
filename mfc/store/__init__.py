"""The content-addressed model store (Ollama's layout), names and manifests.

Import from here: ``from mfc.store import Store, parse_name, Manifest``.
Submodules: media_types (the one media-type table), names, manifest, store,
blobio (one-pass copy+hash), oci_layout (save/load, registry_cache/).
"""

from __future__ import annotations

from mfc.store.blobio import Blob
from mfc.store.manifest import (
    Descriptor,
    Manifest,
    ManifestError,
    canonical_json,
    is_digest,
    sha256_digest,
)
from mfc.store.names import InvalidNameError, ModelName, parse_name, parse_ref
from mfc.store.store import (
    DigestMismatchError,
    GcItem,
    InvalidDigestError,
    MissingBlobError,
    ModelEntry,
    ModelNotFoundError,
    Problem,
    Store,
    StoreBusyError,
    StoreError,
    adapter_scales,
    read_config,
)

__all__ = [
    "Blob",
    "Descriptor",
    "DigestMismatchError",
    "GcItem",
    "InvalidDigestError",
    "InvalidNameError",
    "Manifest",
    "ManifestError",
    "MissingBlobError",
    "ModelEntry",
    "ModelName",
    "ModelNotFoundError",
    "Problem",
    "Store",
    "StoreBusyError",
    "StoreError",
    "adapter_scales",
    "canonical_json",
    "is_digest",
    "parse_name",
    "parse_ref",
    "read_config",
    "sha256_digest",
]
