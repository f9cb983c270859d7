"""Shared by the registry tests: a built model in a temp store, and reading the registry back."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from mfc.store import Store
from mfc.store import media_types as mt
from mfc.testing.registry import Registry
from mfc.testing.server import build_counter


def counter_store(tmp: Path, fixture_models: dict[str, Path], extra: str = "") -> Store:
    """A store holding `counter` (the f32 fixture, a few hundred KB; ``extra`` Modelfile lines)."""
    store = Store(tmp / "models")
    build_counter(store, fixture_models, "counter", extra)
    return store


def registry_manifest(registry: Registry, repo: str, ref: str, **kw: object) -> httpx.Response:
    accept = f"{mt.MANIFEST}, {mt.OCI_MANIFEST}"
    return httpx.get(f"{registry.url}/v2/{repo}/manifests/{ref}", headers={"Accept": accept}, **kw)  # type: ignore[arg-type]


def blob_ok(registry: Registry, repo: str, digest: str, **kw: object) -> bool:
    r = httpx.get(f"{registry.url}/v2/{repo}/blobs/{digest}", **kw)  # type: ignore[arg-type]
    return r.status_code == 200 and "sha256:" + hashlib.sha256(r.content).hexdigest() == digest


def access_lines(registry: Registry, needle: str) -> list[str]:
    """Access-log lines (the registry logs one per request) containing ``needle``."""
    return [line for line in registry.logs().splitlines() if needle in line]
