"""Real registries (Debian's docker-registry) per test module, on free 127.0.0.1 ports: one
open, one with htpasswd basic auth (user `alice`, password ``BASIC_PASSWORD``)."""

from __future__ import annotations

from collections.abc import Iterator

import bcrypt
import pytest

from mfc.testing import registry as reg


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[reg.Registry]:
    if not reg.available():
        pytest.skip(f"{reg.BINARY} is not installed: {reg.INSTALL_HINT}")
    r = reg.start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield r
    finally:
        r.stop()


BASIC_PASSWORD = "s3cret-Pa55"


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[reg.Registry]:
    if not reg.available():
        pytest.skip(f"{reg.BINARY} is not installed: {reg.INSTALL_HINT}")
    tmp = tmp_path_factory.mktemp("basic-registry")
    htpasswd = tmp / "htpasswd"
    hashed = bcrypt.hashpw(BASIC_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"alice:{hashed}\n")
    r = reg.start_registry(tmp, htpasswd=htpasswd)
    try:
        yield r
    finally:
        r.stop()
