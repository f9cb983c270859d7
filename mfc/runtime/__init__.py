"""The runtime: built model images on llama.cpp (see docs/run.md).

    load_image(name) -> ModelImage          the store's view of a model
    Session(image)                          conversation, overrides, loaded Engine
    Session.ask(prompt) -> Turn             a streamed answer (iterate), then .stats
    Engine(path, LoadOptions, adapters, n_seq_max=1)
                                            llama.cpp on one dedicated thread, a step
                                            loop serving n_seq_max sequences at once

Importing this package does not import llama_cpp; loading a model does.
"""

from __future__ import annotations

from mfc.runtime.engine import Counters, Engine, EngineError, Generation, PromptTooLongError
from mfc.runtime.model import Adapter, ChatMessage, ModelImage, image_from_gguf, load_image
from mfc.runtime.options import LoadOptions, SamplingOptions, resolve
from mfc.runtime.session import Session, Turn
from mfc.runtime.stats import Stats, format_stats

__all__ = [
    "Adapter",
    "ChatMessage",
    "Counters",
    "Engine",
    "EngineError",
    "Generation",
    "LoadOptions",
    "ModelImage",
    "PromptTooLongError",
    "SamplingOptions",
    "Session",
    "Stats",
    "Turn",
    "format_stats",
    "image_from_gguf",
    "load_image",
    "resolve",
]
