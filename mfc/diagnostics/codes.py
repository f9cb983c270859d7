"""The registry of diagnostic codes: one entry per code, grouped by phase.

``MF0xx`` syntax, ``MF1xx`` semantics, ``MF2xx`` resolve/build and store,
``MF3xx`` runtime, ``MF4xx`` server. Every code of every phase is registered
here, so a phase reports a problem by naming a code object (never a string
literal) and the docs test sees the whole list. Adding a code is adding one
``register(...)`` line; ``docs/diagnostics.md`` documents every registered code
(a test reads ``REGISTRY`` and checks that).
"""

from __future__ import annotations

from dataclasses import dataclass

from mfc.diagnostics.diagnostic import Diagnostic, DiagnosticError, Severity
from mfc.diagnostics.span import Span


@dataclass(frozen=True, slots=True)
class Code:
    code: str  # "MF102"
    slug: str  # "unknown-parameter"
    severity: Severity  # the default severity of diagnostics with this code
    summary: str  # one line for docs and `--explain`-style listings

    def __call__(
        self,
        span: Span | None,
        message: str,
        hint: str | None = None,
        label: str | None = None,
    ) -> Diagnostic:
        """Make a diagnostic with this code (message: lower case, no period)."""
        return Diagnostic(self.code, self.severity, message, span, hint, label)

    def error(
        self,
        message: str,
        span: Span | None = None,
        *,
        hint: str | None = None,
        label: str | None = None,
    ) -> DiagnosticError:
        """The exception that stops a phase with one diagnostic of this code.

        Returned, not raised, so every call site reads ``raise codes.X.error(...)``
        and type checkers see the raise.
        """
        return DiagnosticError([self(span, message, hint, label)])


REGISTRY: dict[str, Code] = {}


def register(code: str, slug: str, severity: Severity, summary: str) -> Code:
    if code in REGISTRY:
        raise ValueError(f"diagnostic code {code} registered twice")
    if any(c.slug == slug for c in REGISTRY.values()):
        raise ValueError(f"diagnostic slug {slug} registered twice")
    entry = Code(code, slug, severity, summary)
    REGISTRY[code] = entry
    return entry


E, W = Severity.ERROR, Severity.WARNING

# --- MF0xx: syntax (the grammar and its lowering) --------------------------------------------
INTERNAL_SYNTAX = register("MF000", "syntax-error", E, "the parser failed on this input (a bug)")
UNKNOWN_INSTRUCTION = register(
    "MF001", "unknown-instruction", E, "line does not start an instruction"
)
MISSING_VALUE = register("MF002", "missing-value", E, "instruction without its value")
MISSING_SEPARATOR = register("MF003", "missing-separator", E, "no space after the instruction")
INVALID_PARAMETER_NAME = register("MF004", "invalid-parameter-name", E, "bad PARAMETER name")
INVALID_ROLE = register("MF005", "invalid-message-role", E, "MESSAGE role is not a known role")
UNTERMINATED_QUOTE = register("MF006", "unterminated-quote", E, "quoted value never closes")
EXTRA_BLANK = register("MF007", "extra-blank", E, "more than one blank before a name or role")
INVALID_ENCODING = register("MF008", "invalid-encoding", W, "bytes that are not valid UTF-8")
UNREADABLE_FILE = register("MF009", "unreadable-file", E, "the Modelfile cannot be read")
INVISIBLE_CHARACTER = register(
    "MF010", "invisible-character", W, "invisible character before an instruction (ignored)"
)

# --- MF1xx: semantics (the checked ModelSpec) --------------------------------------------------
MISSING_FROM = register("MF101", "missing-from", E, "no FROM instruction")
UNKNOWN_PARAMETER = register("MF102", "unknown-parameter", E, "PARAMETER name is not an option")
INVALID_PARAMETER_VALUE = register(
    "MF103", "invalid-parameter-value", E, "value has the wrong type"
)
PARAMETER_OUT_OF_RANGE = register("MF104", "parameter-out-of-range", E, "value outside its range")
DEPRECATED_PARAMETER = register("MF105", "deprecated-parameter", W, "parameter is ignored")
DUPLICATE_PARAMETER = register("MF106", "duplicate-parameter", W, "parameter set twice; last wins")
DUPLICATE_INSTRUCTION = register("MF107", "duplicate-instruction", W, "instruction given twice")
INVALID_REQUIRES = register("MF108", "invalid-requires", E, "REQUIRES is not a semantic version")
INVALID_TEMPLATE = register("MF109", "invalid-template", E, "TEMPLATE does not parse")
PATH_NOT_FOUND = register("MF110", "path-not-found", E, "FROM/ADAPTER/DRAFT path does not exist")
INVALID_ADAPTER_FLAG = register("MF111", "invalid-adapter-flag", E, "bad ADAPTER flag")
UNSET_ARG = register("MF112", "unset-arg", E, "ARG used without a value")
INVALID_ARG = register("MF113", "invalid-arg", E, "malformed ARG declaration")
UNUSED_BUILD_ARG = register("MF114", "unused-build-arg", W, "--build-arg names no ARG")
ARG_USED_BEFORE_DECLARATION = register(
    "MF115", "arg-before-declaration", W, "`${NAME}` used above its ARG line"
)
EMPTY_VALUE = register("MF116", "empty-value", E, "FROM/ADAPTER/DRAFT with an empty value")
INVALID_DIGEST = register("MF117", "invalid-digest", E, "FROM name@digest with a bad digest")
EMPTY_STOP = register("MF118", "empty-stop", W, "empty stop sequence")
DRAFT_SAME_AS_FROM = register("MF119", "draft-same-as-from", E, "DRAFT is the FROM model's path")
TEMPLATE_RAISES = register(
    "MF120", "template-raises", W, "TEMPLATE fails for some conversation shapes"
)

# --- MF2xx: resolve/build (owned by mfc.build) -------------------------------------------------
NOT_GGUF = register("MF201", "not-gguf", E, "input is not a readable GGUF (or truncated)")
UNRESOLVED_FROM = register("MF202", "unresolved-from", E, "FROM matches no file, model or image")
DIGEST_MISMATCH = register("MF203", "digest-mismatch", E, "FROM name@sha256 digest differs")
BUILD_CYCLE = register("MF204", "build-cycle", E, "Modelfiles build FROM each other in a cycle")
INPUT_NOT_FOUND = register("MF205", "input-not-found", E, "FROM/ADAPTER file missing or unreadable")
AMBIGUOUS_DIRECTORY = register("MF206", "ambiguous-directory", E, "directory has 0 or 2+ GGUFs")
SPLIT_INCOMPLETE = register("MF207", "split-incomplete", E, "split GGUF set missing a shard")
FROM_ADAPTER = register("MF208", "from-adapter", E, "FROM names a LoRA adapter, not a model")
BAD_ADAPTER = register("MF209", "bad-adapter", E, "ADAPTER does not fit the base model")
LOCK_DRIFT = register("MF210", "lock-drift", E, "--locked: inputs differ from Modelfile.lock")
LOCK_MISSING = register("MF211", "lock-missing", E, "--locked without a usable Modelfile.lock")
BAD_QUANTIZE = register("MF212", "bad-quantize", E, "--quantize type unknown or base not float")
QUANTIZE_FAILED = register("MF213", "quantize-failed", E, "llama.cpp's quantizer failed")
INVALID_TAG = register("MF214", "invalid-tag", E, "the -t / create NAME is not a valid name")
SELF_REFERENCE = register("MF215", "self-reference", E, "FROM names the model being built")
BAD_BASE = register("MF216", "bad-base", E, "base image unusable (missing blobs, no model layer)")
DRAFT_IGNORED = register("MF217", "draft-ignored", W, "DRAFT is not built into the image yet")
LOCK_NOT_WRITTEN = register("MF218", "lock-not-written", W, "Modelfile.lock could not be written")
PULL_FAILED = register("MF222", "pull-failed", E, "FROM's registry model could not be pulled")
PROJECTOR_UNSUPPORTED = register(
    "MF223", "projector-unsupported", E, "projector type not one the installed libmtmd loads"
)
PROJECTOR_MISMATCH = register(
    "MF224", "projector-mismatch", E, "projector output width is not the model's embedding width"
)
PROJECTOR_INCOMPLETE = register(
    "MF225", "projector-incomplete", E, "projector lacks a tensor or key libmtmd needs"
)
PROJECTOR_WITHOUT_MODEL = register(
    "MF226", "projector-without-model", E, "FROM names a projector but no text model"
)
# Store commands (list/show/rm/cp/gc/verify/save/load; raised by mfc.store, reported by mfc.cli).
UNKNOWN_MODEL = register("MF219", "unknown-model", E, "no model by that name in the store")
INVALID_MODEL_NAME = register("MF220", "invalid-model-name", E, "a name breaks the naming grammar")
STORE_FAILED = register("MF221", "store-failed", E, "the store or an OCI layout is damaged or busy")

# --- MF3xx: runtime (mfc.runtime, mfc run) -----------------------------------------------------
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
THINKING_UNSUPPORTED = register(
    "MF310", "thinking-unsupported", E, "think was asked of a model whose template cannot think"
)
