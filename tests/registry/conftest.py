"""A real registry (Debian's docker-registry) per test module, on a free 127.0.0.1 port."""

from __future__ import annotations

from collections.abc import Iterator

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
