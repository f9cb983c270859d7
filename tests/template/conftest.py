"""Helpers for template tests: render a Go template against a literal root map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mfc.template import translate_go
from mfc.template.sandbox import compile_go

CORPUS = Path(__file__).parent / "corpus"


def go_render(text: str, root: dict[str, Any] | None = None) -> str:
    """Translate ``text`` and render it with ``root`` as Go's dot (no Ollama touch-ups)."""
    return compile_go(translate_go(text)).render(root=root or {})


@pytest.fixture
def render_go():
    return go_render
