"""Runtime diagnostic codes (MF3xx), registered in the project's one code registry.

`mfc.modelfile.codes` holds the registry; the runtime's entries live here so
the runtime owns them. Importing this module registers them.
"""

from __future__ import annotations

from mfc.modelfile.codes import Code, register
from mfc.modelfile.diagnostics import DiagnosticError, Severity

E = Severity.ERROR

MODEL_NOT_FOUND = register("MF301", "model-not-found", E, "no model by that name in the store")
NO_MODEL_LAYER = register("MF302", "no-model-layer", E, "the image has no model weights layer")
PROMPT_TOO_LONG = register("MF303", "prompt-too-long", E, "the prompt does not fit in num_ctx")
SAVE_NEEDS_STORE_MODEL = register(
    "MF304", "save-needs-store-model", E, "/save of a model that is not in the store"
)
SESSION_NOT_WRITABLE = register(
    "MF305", "session-not-writable", E, "session text has no Modelfile spelling"
)
BAD_SESSION_PARAMETER = register(
    "MF306", "bad-session-parameter", E, "/set parameter with an unknown name or bad value"
)
TEMPLATE_RENDER_FAILED = register(
    "MF307", "template-render-failed", E, "the prompt template failed while rendering"
)
ENGINE_LOAD_FAILED = register(
    "MF308", "engine-load-failed", E, "llama.cpp could not load the model or an adapter"
)
IMAGE_UNREADABLE = register(
    "MF309", "image-unreadable", E, "a blob, config or layer of the image cannot be read"
)


def fail(code: Code, message: str, hint: str | None = None) -> DiagnosticError:
    """A DiagnosticError with one unlocated diagnostic of `code`."""
    return DiagnosticError([code(None, message, hint)])
