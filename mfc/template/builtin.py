"""Built-in chat templates, chosen by model family when neither the Modelfile nor the GGUF has one.

The canonical copies are package data (``mfc/template/builtin/*.gotmpl``, Go
syntax as Ollama publishes them) so they ship with the wheel; the repository's
top-level ``templates/`` points here.
"""

from __future__ import annotations

from importlib import resources

# family (GGUF `general.architecture`, Ollama family or template name) -> file stem
FAMILIES: dict[str, str] = {
    "llama3": "llama3",
    "llama": "llama3",
    "chatml": "chatml",
    "qwen": "chatml",
    "qwen2": "chatml",
    "qwen3": "chatml",
    "mistral": "mistral",
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma",
    "phi3": "phi3",
    "phi": "phi3",
}


def builtin_names() -> tuple[str, ...]:
    return tuple(sorted(set(FAMILIES.values())))


def builtin_template(family: str) -> str | None:
    """The built-in template text for ``family`` (case-insensitive), or None."""
    stem = FAMILIES.get(family.strip().lower())
    if stem is None:
        return None
    return resources.files("mfc.template").joinpath("builtin", f"{stem}.gotmpl").read_text("utf-8")
