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


# file stem -> the special tokens its markup is made of. A model whose vocabulary lacks them
# would read `<|start_header_id|>` as a dozen plain-text pieces (llama2 or TinyLlama under
# llama3's template), so the runtime uses a built-in only when they are all tokens.
# Mistral's first vocabularies spell `[INST]` as plain text, which is what they were
# trained on, so that template needs nothing.
MARKERS: dict[str, tuple[str, ...]] = {
    "llama3": ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "mistral": (),
    "gemma": ("<start_of_turn>", "<end_of_turn>"),
    "phi3": ("<|user|>", "<|assistant|>", "<|end|>"),
}


def builtin_names() -> tuple[str, ...]:
    return tuple(sorted(set(FAMILIES.values())))


def builtin_template(family: str) -> str | None:
    """The built-in template text for ``family`` (case-insensitive), or None."""
    stem = FAMILIES.get(family.strip().lower())
    if stem is None:
        return None
    return (
        resources.files("mfc.template")
        .joinpath("builtin")
        .joinpath(f"{stem}.gotmpl")
        .read_text("utf-8")
    )


def builtin_markers(family: str) -> tuple[str, ...]:
    """The special tokens ``family``'s built-in template needs in the vocabulary (() if none)."""
    stem = FAMILIES.get(family.strip().lower())
    return MARKERS.get(stem, ()) if stem else ()
