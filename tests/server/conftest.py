"""A real `mfc serve` on a free 127.0.0.1 port, with counter models built into a temp store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mfc.store import Store
from mfc.testing.server import Server, build_counter, free_port, start_server, stop_server

__all__ = ["Server", "build_counter", "free_port", "start_server", "stop_server"]


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, fixture_models: dict[str, Path]
) -> Iterator[Server]:
    """One server for a test module: models `counter` and `counter-sys` (with a SYSTEM)."""
    tmp = tmp_path_factory.mktemp("serve")
    store = Store(tmp / "models")
    build_counter(store, fixture_models, "counter")
    build_counter(store, fixture_models, "counter-sys", 'SYSTEM "be brief"\n')
    # A template that takes tools (Ollama's `tools` capability): tool names, then the messages.
    tools_template = (
        "{{ range .Tools }}{{ .Function.Name }};{{ end }}"
        "{{ range .Messages }}{{ .Content }}{{ end }}"
    )
    build_counter(store, fixture_models, "counter-tools", f'TEMPLATE """{tools_template}"""\n')
    # Fill-in-the-middle (Ollama's `insert` capability): the template reads .Suffix.
    insert_template = (
        "{{ if .Suffix }}<PRE>{{ .Prompt }}<SUF>{{ .Suffix }}<MID>{{ else }}{{ .Prompt }}{{ end }}"
    )
    build_counter(store, fixture_models, "counter-insert", f'TEMPLATE """{insert_template}"""\n')
    server = start_server(tmp, store)
    try:
        yield server
    finally:
        stop_server(server)
