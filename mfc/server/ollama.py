"""Ollama's native HTTP API as data: request models, checks, response payloads, OpenAPI.

This is the pure translation layer between the wire and mfc, as Ollama's own
``openai/`` package is for the OpenAI dialect: no I/O, no llama.cpp, no
Starlette. A handler calls ``parse`` on the raw body, ``resolve_options`` /
``resolve_keep_alive`` on the result, hands typed values to the scheduler, and
writes what the ``*_chunk`` / ``*_final`` / ``*_entry`` builders return.

Field names and types are Ollama's (``api/types.go``). Decoding follows Go's
``encoding/json`` where a client could notice: ``null`` means "not set" for any
field, a string is never a bool, ``1.5`` is not an integer. mfc is stricter in
two places, both to answer a mistake with a clear 400 instead of silence: an
unknown top-level field is an error (Ollama ignores it), and option values out
of the parameter table's range are errors (Ollama passes them to llama.cpp).

Exceptions::

    ValueError
     └── BadRequest   status 400; .message is the text of the {"error": ...} body
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import models_json_schema
from pydantic_core import PydanticCustomError

from mfc.digest import HEX as DIGEST_HEX
from mfc.modelfile.params import PARAMETERS, ParamSpec, format_param_value, suggest
from mfc.server.config import ConfigError, keep_alive_seconds
from mfc.store.names import ModelName

__all__ = [
    "REQUEST_MODELS",
    "RESPONSE_MODELS",
    "BadRequest",
    "ChatRequest",
    "ChatResponse",
    "CopyRequest",
    "CreateRequest",
    "DeleteRequest",
    "EmbedRequest",
    "EmbedResponse",
    "EmbeddingsRequest",
    "EmbeddingsResponse",
    "ErrorResponse",
    "GenerateRequest",
    "GenerateResponse",
    "ListResponse",
    "Message",
    "Metrics",
    "ModelDetails",
    "ModelFacts",
    "ProcessResponse",
    "ProgressResponse",
    "PullRequest",
    "PushRequest",
    "RequestOptions",
    "ShowRequest",
    "ShowResponse",
    "Tool",
    "ToolCall",
    "VersionResponse",
    "chat_chunk",
    "chat_debug",
    "chat_final",
    "chat_lifecycle",
    "embed_response",
    "embeddings_response",
    "error_body",
    "format_time",
    "generate_chunk",
    "generate_debug",
    "generate_final",
    "generate_lifecycle",
    "list_response",
    "model_details",
    "now_rfc3339",
    "openapi",
    "parse",
    "progress",
    "ps_entry",
    "ps_response",
    "resolve_format",
    "resolve_keep_alive",
    "resolve_options",
    "show_response",
    "tags_entry",
    "version_response",
]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38
MAX_DEPTH = 128  # JSON nesting a request may have; real bodies stay under 20
THINK_LEVELS = ("high", "medium", "low", "max")
DoneReason = Literal["stop", "length", "load", "unload"]


class BadRequest(ValueError):
    """A request the client must fix: answered with status 400 and ``{"error": message}``."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --- decoding helpers ---------------------------------------------------------------------------


def _kind(value: Any) -> str:
    """The JSON type of a decoded value, for "must be X, not Y" messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _number(value: float) -> str:
    """A number as JSON-minded people write it (``NaN``, ``Infinity``, ``1.5``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def _fail(message: str, *, located: bool = True) -> PydanticCustomError:
    """A validation error with our own text; ``located=False`` prints it without the field path."""
    return PydanticCustomError("mfc" if located else "mfc_plain", message)


def _integral(value: Any) -> Any:
    """Go's ``int`` takes JSON numbers that are whole; ``2.0`` is kept, ``1.5`` fails."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _int64(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise _fail("must fit in a signed 64-bit integer")
    return value


Int = Annotated[int, BeforeValidator(_integral), AfterValidator(_int64)]


def _base64(value: str) -> str:
    """Go decodes ``[]byte`` fields as standard base64 (padding required, newlines skipped)."""
    try:
        base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        raise _fail("illegal base64 data (images are sent as standard base64)") from None
    return value


Image = Annotated[str, AfterValidator(_base64)]


def _lower(value: str) -> str:
    return value.lower()


def _think(value: Any) -> bool | str:
    """Ollama's ``ThinkValue.UnmarshalJSON``, with its texts."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in THINK_LEVELS:
            return value
        raise _fail(
            f'invalid think value: {_go_quote(value)} (must be "high", "medium", "low", '
            '"max", true, or false)',
            located=False,
        )
    raise _fail(
        'think must be a boolean or string ("high", "medium", "low", "max", true, or false)',
        located=False,
    )


Think = Annotated[
    Any,
    AfterValidator(_think),
    WithJsonSchema({"anyOf": [{"type": "boolean"}, {"enum": list(THINK_LEVELS)}]}),
]


def _keep_alive(value: Any) -> float | int | str:
    """Checked now, kept as sent: the server's default applies only when it is absent."""
    try:
        keep_alive_seconds(value)
    except ConfigError as exc:
        raise _fail(_keep_alive_text(exc), located=False) from None
    return value


KeepAlive = Annotated[
    Any,
    AfterValidator(_keep_alive),
    WithJsonSchema(
        {
            "anyOf": [{"type": "number"}, {"type": "string"}],
            "description": "seconds, or a Go duration such as 5m; negative = keep loaded "
            "forever, 0 = unload after this request",
        }
    ),
]


def resolve_format(value: Any) -> Literal["json"] | dict[str, Any] | None:
    """``format``: absent/null/"" is none, "json" is JSON mode, an object is a JSON schema."""
    if value is None or value == "":
        return None
    if value == "json":
        return "json"
    if isinstance(value, dict):
        return value
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    raise BadRequest(
        f'invalid format: {_go_quote(raw)}; expected "json" or a valid JSON Schema object'
    )


def _format(value: Any) -> Any:
    try:
        return resolve_format(value)
    except BadRequest as exc:
        raise _fail(exc.message, located=False) from None


Format = Annotated[
    Any,
    AfterValidator(_format),
    WithJsonSchema({"anyOf": [{"const": "json"}, {"type": "object"}, {"const": ""}]}),
]


def _options(value: dict[str, Any]) -> dict[str, Any]:
    try:
        resolve_options(value)
    except BadRequest as exc:
        raise _fail(exc.message, located=False) from None
    return value


# Load-time options the parameter table leaves unbounded but llama.cpp cannot survive from a
# request: num_batch sizes an allocation (1e11 took 17 GB, then SIGSEGV) and num_thread starts
# that many threads (1e5: SIGSEGV). The bounds are far above any useful value.
SERVER_MAXIMUM: dict[str, int] = {"num_batch": 65536, "num_thread": 256}


def _maximum(spec: ParamSpec) -> float | None:
    server = SERVER_MAXIMUM.get(spec.name)
    if server is None:
        return spec.maximum
    return server if spec.maximum is None else min(spec.maximum, server)


def _options_schema() -> dict[str, Any]:
    """Document every option of the parameter table (deprecated ones are accepted, unlisted)."""
    json_type = {"int": "integer", "float": "number", "bool": "boolean", "str": "string"}
    properties: dict[str, Any] = {}
    for name, spec in PARAMETERS.items():
        if spec.deprecated:
            continue
        schema: dict[str, Any] = (
            {"type": "array", "items": {"type": "string"}}
            if spec.repeatable
            else {"type": json_type[spec.type]}
        )
        if spec.minimum is not None:
            schema["minimum"] = spec.minimum
        if _maximum(spec) is not None:
            schema["maximum"] = _maximum(spec)
        if spec.doc:
            schema["description"] = f"{spec.doc} ({spec.phase})"
        properties[name] = schema
    return {
        "type": "object",
        "description": "llama.cpp options from mfc's parameter table; unknown and deprecated "
        "keys are ignored with a warning",
        "properties": properties,
    }


Options = Annotated[dict[str, Any], AfterValidator(_options), WithJsonSchema(_options_schema())]


def _string_or_list(what: str):
    def check(value: Any) -> str | list[str]:
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise _fail(what, located=False)

    return check


StringOrList = Annotated[
    Any,
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
]


PropertyType = Annotated[
    StringOrList, AfterValidator(_string_or_list("must be a string or an array of strings"))
]
EmbedInput = Annotated[
    StringOrList,
    AfterValidator(
        _string_or_list("invalid input type: `input` must be a string or an array of strings")
    ),
]
License = Annotated[
    StringOrList,
    AfterValidator(_string_or_list("license: must be a string or an array of strings")),
]


# --- request models -----------------------------------------------------------------------------


class _Wire(BaseModel):
    """Go's decoding rules: strict types, ``null`` = absent, unknown nested keys ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_absent(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = {f.alias or name for name, f in cls.model_fields.items()}
        return {k: v for k, v in data.items() if v is not None or k not in known}


class _Request(_Wire):
    """A top-level body: an unknown field is an error naming it (Ollama silently drops it)."""

    model_config = ConfigDict(extra="forbid")


class _LegacyName(_Request):
    """Requests where Ollama still reads the deprecated ``name`` when ``model`` is empty."""

    @model_validator(mode="before")
    @classmethod
    def _name_is_model(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("model") and isinstance(data.get("name"), str):
            data = {**data, "model": data["name"]}
        return data


class ToolCallFunction(_Wire):
    index: Int = 0
    name: str = ""
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCall(_Wire):
    id: str = ""
    function: ToolCallFunction = Field(default_factory=ToolCallFunction)


class ToolProperty(_Wire):
    any_of: list[ToolProperty] | None = Field(None, alias="anyOf")
    type: PropertyType = None
    items: Any = None
    description: str = ""
    enum: list[Any] | None = None
    properties: dict[str, ToolProperty] | None = None
    required: list[str] | None = None


class ToolFunctionParameters(_Wire):
    type: str = ""
    defs: Any = Field(None, alias="$defs")
    items: Any = None
    required: list[str] | None = None
    properties: dict[str, ToolProperty] | None = None


class ToolFunction(_Wire):
    name: str = ""
    description: str = ""
    parameters: ToolFunctionParameters = Field(default_factory=ToolFunctionParameters)


class Tool(_Wire):
    type: str = ""
    items: Any = None
    function: ToolFunction = Field(default_factory=ToolFunction)


class Message(_Wire):
    """One chat turn; ``role`` is lower-cased on input, as Ollama does."""

    role: Annotated[str, AfterValidator(_lower)] = ""
    content: str = ""
    thinking: str = ""
    images: list[Image] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str = ""
    tool_call_id: str = ""


class _Generation(_Request):
    """Fields /api/generate and /api/chat share."""

    model: str = ""
    stream: bool | None = Field(None, description="default true")
    format: Format = None
    keep_alive: KeepAlive = None
    options: Options | None = None
    think: Think = None
    truncate: bool | None = Field(None, description="default true")
    shift: bool | None = Field(None, description="default true")
    debug_render_only: bool = Field(False, alias="_debug_render_only")
    logprobs: bool = False
    top_logprobs: Int = 0

    @model_validator(mode="after")
    def _top_logprobs_range(self) -> _Generation:
        if not 0 <= self.top_logprobs <= 20:
            raise _fail("top_logprobs must be between 0 and 20", located=False)
        return self


class GenerateRequest(_Generation):
    prompt: str = ""
    suffix: str = ""
    system: str = ""
    template: str = ""
    context: list[Int] | None = None
    raw: bool = False
    images: list[Image] | None = None
    # Sent by ollama-python 0.6.x for image-generation models (Ollama has since removed them).
    width: Int | None = None
    height: Int | None = None
    steps: Int | None = None


class ChatRequest(_Generation):
    messages: list[Message] = Field(default_factory=list)
    tools: list[Tool] | None = None


class EmbedRequest(_Request):
    model: str = ""
    input: EmbedInput = None
    keep_alive: KeepAlive = None
    truncate: bool | None = Field(None, description="default true")
    dimensions: Int = 0
    options: Options | None = None


class EmbeddingsRequest(_Request):
    model: str = ""
    prompt: str = ""
    keep_alive: KeepAlive = None
    options: Options | None = None


class ShowRequest(_LegacyName):
    model: str = ""
    system: str = ""
    template: str = Field("", description="deprecated")
    verbose: bool = False
    options: Options | None = None
    name: str = Field("", description="deprecated: use model")


class CopyRequest(_Request):
    source: str = ""
    destination: str = ""


class DeleteRequest(_LegacyName):
    model: str = ""
    name: str = Field("", description="deprecated: use model")


class _Transfer(_LegacyName):
    model: str = ""
    insecure: bool = False
    username: str = Field("", description="ignored, as in Ollama")
    password: str = Field("", description="ignored, as in Ollama")
    stream: bool | None = Field(None, description="default true")
    name: str = Field("", description="deprecated: use model")


class PullRequest(_Transfer):
    pass


class PushRequest(_Transfer):
    pass


class CreateRequest(_LegacyName):
    """Ollama's JSON create, plus mfc's ``modelfile``: the full Modelfile text to compile."""

    model: str = ""
    stream: bool | None = Field(None, description="default true")
    quantize: str = ""
    draft_quantize: str = ""
    from_: str = Field("", alias="from")
    remote_host: str = ""
    files: dict[str, str] | None = None
    draft_files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    template: str = ""
    license: License = None
    system: str = ""
    parameters: dict[str, Any] | None = None
    messages: list[Message] | None = None
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    info: dict[str, Any] | None = None
    name: str = Field("", description="deprecated: use model")
    quantization: str = Field("", description="deprecated: use quantize")
    modelfile: str = Field(
        "", description="mfc extension: a whole Modelfile, compiled as mfc build"
    )
    path: str = Field("", description="legacy Ollama field (before 0.5.5); ignored")

    @model_validator(mode="before")
    @classmethod
    def _quantization_is_quantize(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and not data.get("quantize")
            and isinstance(data.get("quantization"), str)
        ):
            data = {**data, "quantize": data["quantization"]}
        return data


REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    GenerateRequest,
    ChatRequest,
    EmbedRequest,
    EmbeddingsRequest,
    ShowRequest,
    CopyRequest,
    DeleteRequest,
    CreateRequest,
    PullRequest,
    PushRequest,
)


# --- parse --------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def parse(model_cls: type[M], body: bytes) -> M:
    """Decode and check one request body; raise BadRequest for anything a client got wrong."""
    if not body.strip(b" \t\r\n"):
        raise BadRequest("missing request body")
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"request body is not UTF-8: byte 0x{body[exc.start]:02x} at offset {exc.start}"
        ) from None
    try:
        data = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        msg = exc.msg[:1].lower() + exc.msg[1:]
        raise BadRequest(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {msg}") from None
    except RecursionError:
        raise BadRequest(f"invalid JSON: nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, not {_kind(data)}")
    data = _clean(data, "", 0)
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(_describe(exc, model_cls)) from None


def _parse_int(text: str) -> int | float:
    # Python refuses int() of more than 4300 digits; such a number is out of range for Go anyway.
    return int(text) if len(text) <= 40 else float(text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(value: Any, path: str, depth: int) -> Any:
    """Refuse what Go's decoder refuses and Python's accepts; repair what Go repairs.

    Non-finite numbers (``NaN``, ``Infinity``, ``1e400``) are not JSON; inside
    ``options`` they are left for ``resolve_options``, whose message gives the
    range. Lone surrogate escapes become U+FFFD, as Go does, so no string can
    fail to encode later.
    """
    if depth > MAX_DEPTH:
        raise BadRequest(f"invalid JSON: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, float):
        if not math.isfinite(value) and not path.startswith("options."):
            raise BadRequest(f"{path}: must be a finite number, not {_number(value)}")
        return value
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value) if _SURROGATE.search(value) else value
    if isinstance(value, list):
        return [_clean(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            key = _clean(k, path, depth)
            out[key] = _clean(v, _join(path, key), depth + 1)
        return out
    return value


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    part = key if re.fullmatch(r"[A-Za-z_$][\w$]*", key) else json.dumps(key, ensure_ascii=False)
    return f"{path}.{part}" if path else part


_TYPE_TEXT = {
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "list_type": "must be an array",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
}


def _describe(exc: ValidationError, model_cls: type[BaseModel]) -> str:
    """The first problem, as ``path: what was wrong``; how many more, if any."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    path = ""
    for part in first["loc"]:
        path = _join(path, part)
    kind = first["type"]
    if kind == "mfc_plain":
        message = first["msg"]
    elif kind == "mfc":
        message = f"{path}: {first['msg']}"
    elif kind == "extra_forbidden":
        message = f"unknown field {_go_quote(path)} in a {_route_of(model_cls)} request"
        known = [f.alias or n for n, f in model_cls.model_fields.items()]
        close = difflib.get_close_matches(str(first["loc"][-1]), known, n=1, cutoff=0.75)
        if close:
            message += f" (did you mean {_go_quote(close[0])}?)"
    elif kind in _TYPE_TEXT:
        got = first.get("input")
        shown = _number(got) if isinstance(got, float) else _kind(got)
        message = f"{path}: {_TYPE_TEXT[kind]}, not {shown}"
    else:
        text = first["msg"]
        message = f"{path}: {text[:1].lower()}{text[1:]}"
    more = len(errors) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return message


def _route_of(model_cls: type[BaseModel]) -> str:
    return model_cls.__name__.removesuffix("Request").lower()


# --- options and keep_alive ---------------------------------------------------------------------


@dataclass(frozen=True)
class RequestOptions:
    """A request's ``options``, checked against the parameter table and split by phase.

    ``load`` holds what is fixed when a model is loaded (changing it reloads),
    ``sampling`` what applies per generation. ``warnings`` are for keys that
    were ignored (unknown or deprecated), which Ollama only logs.
    """

    load: Mapping[str, int | float | bool] = field(default_factory=dict)
    sampling: Mapping[str, int | float | bool | tuple[str, ...]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def values(self) -> dict[str, int | float | bool | tuple[str, ...]]:
        return {**self.load, **self.sampling}


def resolve_options(options: Mapping[str, Any] | None) -> RequestOptions:
    """Type and range-check each option; raise BadRequest with Ollama's text where it has one."""
    load: dict[str, Any] = {}
    sampling: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in (options or {}).items():
        spec = PARAMETERS.get(key)
        if value is None:
            continue  # Ollama skips nulls
        if spec is None:
            hint = suggest(key)
            tail = f" (did you mean {_go_quote(hint)}?)" if hint and hint != key else ""
            warnings.append(f"ignoring unknown option {_go_quote(key)}{tail}")
            continue
        if spec.deprecated:
            warnings.append(f"ignoring option {_go_quote(key)}: deprecated in Ollama, unused")
            continue
        (load if spec.phase == "load" else sampling)[key] = _option_value(spec, value)
    return RequestOptions(load, sampling, tuple(warnings))


def _option_value(spec: ParamSpec, value: Any) -> int | float | bool | tuple[str, ...]:
    name = _go_quote(spec.name)
    if spec.repeatable:
        if not isinstance(value, list):
            raise BadRequest(f"option {name} must be of type array")
        if not all(isinstance(v, str) for v in value):
            raise BadRequest(f"option {name} must be of an array of strings")
        return tuple(value)
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise BadRequest(f"option {name} must be of type boolean")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "integer" if spec.type == "int" else "float32"
        raise BadRequest(f"option {name} must be of type {kind}")
    if not math.isfinite(value):
        raise BadRequest(
            f"option {name} must be a finite number {_range(spec)}, not {_number(value)}"
        )
    if spec.type == "int":
        if isinstance(value, float) and not value.is_integer():
            raise BadRequest(f"option {name} must be of type integer, not {value}")
        number: int | float = int(value)
        if not INT64_MIN <= number <= INT64_MAX:
            raise BadRequest(f"option {name} must fit in a signed 64-bit integer")
    else:
        number = float(value)
        if abs(number) > FLOAT32_MAX:
            raise BadRequest(f"option {name} is too large for a 32-bit float, not {value}")
    lo, hi = spec.minimum, _maximum(spec)
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise BadRequest(f"option {name} must be {_range(spec)}, not {value}")
    return number


def _range(spec: ParamSpec) -> str:
    lo, hi = spec.minimum, _maximum(spec)
    if lo is not None and hi is not None:
        return f"between {format_param_value(lo)} and {format_param_value(hi)}"
    if lo is not None:
        return f"at least {format_param_value(lo)}"
    if hi is not None:
        return f"at most {format_param_value(hi)}"
    return "(any value)"


def resolve_keep_alive(value: Any, default: float) -> float:
    """Seconds to keep the model loaded: ``default`` if absent, ``math.inf`` forever, 0 unload."""
    if value is None:
        return default
    try:
        return keep_alive_seconds(value)
    except ConfigError as exc:
        raise BadRequest(_keep_alive_text(exc)) from None


def _keep_alive_text(exc: ConfigError) -> str:
    text = str(exc)
    return text if text.startswith("keep_alive") else f"keep_alive: {text}"


# --- times --------------------------------------------------------------------------------------


def format_time(ns: int, tz: tzinfo | None = None) -> str:
    """Go's RFC 3339 with nanoseconds (trailing zeros dropped); local time when ``tz`` is None.

    UTC prints as ``Z``, other zones as ``±hh:mm``, as Go's ``time.RFC3339Nano`` does.
    """
    seconds, frac = divmod(ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz or timezone.utc)
    if tz is None:
        moment = moment.astimezone()
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    if digits:
        text += "." + digits
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds()) // 60 if offset else 0
    if minutes == 0:
        return text + "Z"
    sign = "+" if minutes > 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}:{mins:02d}"


def now_rfc3339(ns: int | None = None) -> str:
    """``created_at``: now (or ``ns``) in UTC, e.g. ``2023-08-04T19:22:45.499127Z``."""
    return format_time(time.time_ns() if ns is None else ns, timezone.utc)


# --- response payloads --------------------------------------------------------------------------


@dataclass(frozen=True)
class Metrics:
    """Ollama's ``api.Metrics``: durations in integer nanoseconds; zeros are omitted."""

    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0

    def to_json(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.__dict__.items() if v}


@dataclass(frozen=True)
class ModelFacts:
    """What the list, ps and show answers say about a model (``details``)."""

    format: str = "gguf"
    family: str = ""
    families: tuple[str, ...] | None = None  # None prints null, as Go's nil slice
    parameter_size: str = ""
    quantization_level: str = ""
    parent_model: str = ""
    context_length: int = 0  # trained context; 0 = unknown (omitted)
    embedding_length: int = 0


def model_details(facts: ModelFacts, *, lengths: bool = True) -> dict[str, Any]:
    """``details`` in Go's field order; ``lengths`` adds the omitempty context/embedding sizes."""
    out: dict[str, Any] = {
        "parent_model": facts.parent_model,
        "format": facts.format,
        "family": facts.family,
        "families": list(facts.families) if facts.families is not None else None,
        "parameter_size": facts.parameter_size,
        "quantization_level": facts.quantization_level,
    }
    if lengths and facts.context_length:
        out["context_length"] = facts.context_length
    if lengths and facts.embedding_length:
        out["embedding_length"] = facts.embedding_length
    return out


def _display(name: ModelName | str) -> str:
    return name.display if isinstance(name, ModelName) else name


def generate_chunk(
    model: str, text: str, *, thinking: str = "", created_at: str | None = None
) -> dict[str, Any]:
    """One streamed piece of /api/generate (``done: false``)."""
    out: dict[str, Any] = {
        "model": model,
        "created_at": created_at or now_rfc3339(),
        "response": text,
    }
    if thinking:
        out["thinking"] = thinking
    out["done"] = False
    return out


def generate_final(
    model: str,
    *,
    done_reason: DoneReason,
    metrics: Metrics,
    context: Sequence[int] | None = None,
    text: str = "",
    thinking: str = "",
    created_at: str | None = None,
) -> dict[str, Any]:
    """The last /api/generate object; ``text`` carries the whole answer when not streaming.

    ``context`` (prompt + answer tokens) is omitted when empty, and in raw mode.
    """
    out = generate_chunk(model, text, thinking=thinking, created_at=created_at)
    out["done"] = True
    out["done_reason"] = done_reason
    if context:
        out["context"] = [int(t) for t in context]
    out.update(metrics.to_json())
    return out


def generate_lifecycle(
    model: str, done_reason: Literal["load", "unload"], *, created_at: str | None = None
) -> dict[str, Any]:
    """The answer to an empty prompt: loaded, or (keep_alive 0) unloaded."""
    return generate_final(model, done_reason=done_reason, metrics=Metrics(), created_at=created_at)


def generate_debug(
    model: str, rendered: str, *, image_count: int = 0, created_at: str | None = None
) -> dict[str, Any]:
    """``_debug_render_only``: the rendered prompt instead of a generation."""
    out = generate_chunk(model, "", created_at=created_at)
    out["_debug_info"] = _debug_info(rendered, image_count)
    return out


def _debug_info(rendered: str, image_count: int) -> dict[str, Any]:
    info: dict[str, Any] = {"rendered_template": rendered}
    if image_count:
        info["image_count"] = image_count
    return info


def _assistant(
    content: str, thinking: str = "", tool_calls: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if tool_calls:
        message["tool_calls"] = [dict(call) for call in tool_calls]
    return message


def chat_chunk(
    model: str,
    content: str,
    *,
    thinking: str = "",
    tool_calls: Sequence[Mapping[str, Any]] | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """One streamed piece of /api/chat; ``message`` (with its role) is always there.

    ``tool_calls`` items are Ollama's shape: ``{"id"?, "function": {"index",
    "name", "arguments": {object}}}``.
    """
    return {
        "model": model,
        "created_at": created_at or now_rfc3339(),
        "message": _assistant(content, thinking, tool_calls),
        "done": False,
    }


def chat_final(
    model: str,
    *,
    done_reason: DoneReason,
    metrics: Metrics,
    content: str = "",
    thinking: str = "",
    tool_calls: Sequence[Mapping[str, Any]] | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """The last /api/chat object: empty content when streaming, the whole answer when not."""
    out = chat_chunk(
        model, content, thinking=thinking, tool_calls=tool_calls, created_at=created_at
    )
    out["done"] = True
    out["done_reason"] = done_reason
    out.update(metrics.to_json())
    return out


def chat_lifecycle(
    model: str, done_reason: Literal["load", "unload"], *, created_at: str | None = None
) -> dict[str, Any]:
    """The answer to an empty ``messages``: ``message`` is ``{"role":"assistant","content":""}``."""
    return chat_final(model, done_reason=done_reason, metrics=Metrics(), created_at=created_at)


def chat_debug(
    model: str, rendered: str, *, image_count: int = 0, created_at: str | None = None
) -> dict[str, Any]:
    """``_debug_render_only`` for chat (Ollama sends an empty message; mfc keeps the role)."""
    out = chat_chunk(model, "", created_at=created_at)
    out["_debug_info"] = _debug_info(rendered, image_count)
    return out


def embed_response(
    model: str, embeddings: Sequence[Sequence[float]], *, metrics: Metrics | None = None
) -> dict[str, Any]:
    """/api/embed: one vector per input (``[]`` for no input); durations omitted when zero."""
    out: dict[str, Any] = {
        "model": model,
        "embeddings": [[float(x) for x in vector] for vector in embeddings],
    }
    if metrics is not None:
        m = metrics.to_json()
        out.update(
            {k: m[k] for k in ("total_duration", "load_duration", "prompt_eval_count") if k in m}
        )
    return out


def embeddings_response(embedding: Sequence[float]) -> dict[str, Any]:
    """The legacy /api/embeddings answer: one vector, not normalised."""
    return {"embedding": [float(x) for x in embedding]}


def tags_entry(
    name: ModelName | str,
    facts: ModelFacts,
    *,
    size: int,
    digest: str,
    modified_ns: int,
    capabilities: Sequence[str] = (),
    tz: tzinfo | None = None,
) -> dict[str, Any]:
    """One /api/tags model: ``digest`` is the manifest's hex sha256, ``modified_at`` local time."""
    shown = _display(name)
    out: dict[str, Any] = {
        "name": shown,
        "model": shown,
        "modified_at": format_time(modified_ns, tz),
        "size": int(size),
        "digest": digest.removeprefix("sha256:"),
        "details": model_details(facts),
    }
    if capabilities:
        out["capabilities"] = list(capabilities)
    return out


def list_response(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """/api/tags: newest first, as Ollama sorts (``models`` is always an array)."""
    ordered = sorted(entries, key=lambda e: _sort_time(e["modified_at"]), reverse=True)
    return {"models": [dict(e) for e in ordered]}


def ps_entry(
    name: ModelName | str,
    facts: ModelFacts,
    *,
    size: int,
    size_vram: int,
    digest: str,
    context_length: int,
    expires_at_ns: int | None,
    now_ns: int | None = None,
    tz: tzinfo | None = None,
) -> dict[str, Any]:
    """One /api/ps model; ``expires_at_ns`` None (keep_alive < 0) is now + 292 years, as in Go."""
    if expires_at_ns is None:
        expires_at_ns = (time.time_ns() if now_ns is None else now_ns) + INT64_MAX
    shown = _display(name)
    return {
        "name": shown,
        "model": shown,
        "size": int(size),
        "digest": digest.removeprefix("sha256:"),
        "details": model_details(facts, lengths=False),
        "expires_at": format_time(expires_at_ns, tz),
        "size_vram": int(size_vram),
        "context_length": int(context_length),
    }


def ps_response(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """/api/ps: the model that stays loaded longest first."""
    ordered = sorted(entries, key=lambda e: _sort_time(e["expires_at"]), reverse=True)
    return {"models": [dict(e) for e in ordered]}


def _sort_time(text: str) -> float:
    return datetime.fromisoformat(
        re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    ).timestamp()


def show_response(
    facts: ModelFacts,
    *,
    model_info: Mapping[str, Any],
    modified_ns: int,
    license: Sequence[str] = (),
    modelfile: str = "",
    parameters: str = "",
    template: str = "",
    system: str = "",
    messages: Sequence[Mapping[str, Any]] = (),
    capabilities: Sequence[str] = (),
    projector_info: Mapping[str, Any] | None = None,
    tz: tzinfo | None = None,
) -> dict[str, Any]:
    """/api/show, with Go's omitempty rules; ``model_info`` is always present (clients need it).
    ``projector_info``: the projector's metadata (a vision model), omitted when empty."""
    out: dict[str, Any] = {}
    text_fields = {
        "license": "\n".join(license),
        "modelfile": modelfile,
        "parameters": parameters,
        "template": template,
        "system": system,
    }
    out.update({k: v for k, v in text_fields.items() if v})
    out["details"] = model_details(facts)
    if messages:
        out["messages"] = [dict(m) for m in messages]
    out["model_info"] = dict(model_info)
    if projector_info:
        out["projector_info"] = dict(projector_info)
    if capabilities:
        out["capabilities"] = list(capabilities)
    out["modified_at"] = format_time(modified_ns, tz)
    return out


def progress(
    status: str, *, digest: str = "", total: int = 0, completed: int = 0
) -> dict[str, Any]:
    """A create/pull/push status line (``digest``, ``total``, ``completed`` omitted when empty)."""
    out: dict[str, Any] = {"status": status}
    if digest:
        out["digest"] = digest
    if total:
        out["total"] = int(total)
    if completed:
        out["completed"] = int(completed)
    return out


def version_response(version: str, mfc_version: str) -> dict[str, str]:
    """/api/version: the Ollama API level mfc implements (clients gate on it) and mfc's own."""
    return {"version": version, "mfc_version": mfc_version}


def error_body(message: str, diagnostics: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """``{"error": message}``; a broken Modelfile adds its located ``diagnostics``."""
    out: dict[str, Any] = {"error": message}
    if diagnostics:
        out["diagnostics"] = [dict(d) for d in diagnostics]
    return out


_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    '"': '\\"',
    "\\": "\\\\",
}


def _go_quote(text: str) -> str:
    """Go's ``%q`` / ``strconv.Quote``: the spelling Ollama's messages use."""
    out = ['"']
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable() and not _SURROGATE.match(ch):
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


# --- response models (the documented contract; tests validate every builder against them) ------

_RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
Timestamp = Annotated[str, Field(pattern=_RFC3339, json_schema_extra={"format": "date-time"})]
Nanoseconds = Annotated[int, Field(ge=0, description="nanoseconds")]


class _Out(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class ModelDetails(_Out):
    parent_model: str
    format: str
    family: str
    families: list[str] | None
    parameter_size: str
    quantization_level: str
    context_length: int | None = None
    embedding_length: int | None = None


class _MetricsOut(_Out):
    total_duration: Nanoseconds | None = None
    load_duration: Nanoseconds | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: Nanoseconds | None = None
    eval_count: int | None = None
    eval_duration: Nanoseconds | None = None


class DebugInfo(_Out):
    rendered_template: str
    image_count: int | None = None


class ToolCallOut(_Out):
    id: str | None = None
    function: ToolCallFunctionOut


class ToolCallFunctionOut(_Out):
    index: int
    name: str
    arguments: dict[str, Any]


ToolCallOut.model_rebuild()


class GenerateResponse(_MetricsOut):
    model: str
    created_at: Timestamp
    response: str
    thinking: str | None = None
    done: bool
    done_reason: DoneReason | None = None
    context: list[int] | None = None
    tool_calls: list[ToolCallOut] | None = None
    debug_info: DebugInfo | None = Field(None, alias="_debug_info")


class ChatMessageOut(_Out):
    role: str
    content: str
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCallOut] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class ChatResponse(_MetricsOut):
    model: str
    created_at: Timestamp
    message: ChatMessageOut
    done: bool
    done_reason: DoneReason | None = None
    debug_info: DebugInfo | None = Field(None, alias="_debug_info")


class EmbedResponse(_Out):
    model: str
    embeddings: list[list[float]]
    total_duration: Nanoseconds | None = None
    load_duration: Nanoseconds | None = None
    prompt_eval_count: int | None = None


class EmbeddingsResponse(_Out):
    embedding: list[float]


class ListModel(_Out):
    name: str
    model: str
    modified_at: Timestamp
    size: int
    digest: str = Field(pattern=f"^{DIGEST_HEX}$")
    details: ModelDetails
    capabilities: list[str] | None = None


class ListResponse(_Out):
    models: list[ListModel]


class ProcessModel(_Out):
    name: str
    model: str
    size: int
    digest: str = Field(pattern=f"^{DIGEST_HEX}$")
    details: ModelDetails
    expires_at: Timestamp
    size_vram: int
    context_length: int


class ProcessResponse(_Out):
    models: list[ProcessModel]


class ShowResponse(_Out):
    license: str | None = None
    modelfile: str | None = None
    parameters: str | None = None
    template: str | None = None
    system: str | None = None
    details: ModelDetails
    messages: list[dict[str, Any]] | None = None
    model_info: dict[str, Any]
    projector_info: dict[str, Any] | None = None
    capabilities: list[str] | None = None
    modified_at: Timestamp


class ProgressResponse(_Out):
    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


class VersionResponse(_Out):
    version: str = Field(description="the Ollama API level mfc implements (semver)")
    mfc_version: str = Field(description="mfc's own version")


class DiagnosticOut(_Out):
    severity: str
    code: str
    message: str
    line: int | None
    column: int | None
    hint: str | None


class ErrorResponse(_Out):
    error: str
    diagnostics: list[DiagnosticOut] | None = None


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    GenerateResponse,
    ChatResponse,
    EmbedResponse,
    EmbeddingsResponse,
    ListResponse,
    ProcessResponse,
    ShowResponse,
    ProgressResponse,
    VersionResponse,
    ErrorResponse,
)


# --- OpenAPI ------------------------------------------------------------------------------------

_NDJSON = "application/x-ndjson"


@dataclass(frozen=True)
class _Route:
    path: str
    methods: tuple[str, ...]
    summary: str
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    streams: bool = False
    errors: tuple[int, ...] = (400,)


_ROUTES: tuple[_Route, ...] = (
    _Route("/", ("get", "head"), "liveness: `Ollama is running`", errors=()),
    _Route(
        "/api/version",
        ("get", "head"),
        "API level and mfc version",
        None,
        VersionResponse,
        errors=(),
    ),
    _Route(
        "/api/generate",
        ("post",),
        "complete a prompt",
        GenerateRequest,
        GenerateResponse,
        True,
        (400, 404, 500, 503),
    ),
    _Route(
        "/api/chat",
        ("post",),
        "answer a conversation",
        ChatRequest,
        ChatResponse,
        True,
        (400, 404, 500, 503),
    ),
    _Route("/api/tags", ("get", "head"), "list local models", None, ListResponse, errors=()),
    _Route(
        "/api/show", ("post",), "describe a model", ShowRequest, ShowResponse, errors=(400, 404)
    ),
    _Route("/api/copy", ("post",), "copy a model (empty 200 body)", CopyRequest, errors=(400, 404)),
    _Route(
        "/api/delete",
        ("delete",),
        "delete a model (empty 200 body)",
        DeleteRequest,
        errors=(400, 404),
    ),
    _Route("/api/ps", ("get",), "loaded models", None, ProcessResponse, errors=()),
    _Route(
        "/api/create",
        ("post",),
        "create a model (JSON form, or mfc's `modelfile`)",
        CreateRequest,
        ProgressResponse,
        True,
        (400, 404, 500),
    ),
    _Route(
        "/api/embed", ("post",), "embed inputs", EmbedRequest, EmbedResponse, errors=(400, 404, 500)
    ),
    _Route(
        "/api/embeddings",
        ("post",),
        "embed one prompt (legacy)",
        EmbeddingsRequest,
        EmbeddingsResponse,
        errors=(400, 404, 500),
    ),
    _Route(
        "/api/pull",
        ("post",),
        "pull a model from a registry (streams progress objects)",
        PullRequest,
        ProgressResponse,
        True,
        (400, 500),
    ),
    _Route(
        "/api/push",
        ("post",),
        "push a model to the registry its name names (docs/registry.md)",
        PushRequest,
        ProgressResponse,
        True,
        (400, 401, 404, 502),
    ),
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(route: _Route, method: str) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": route.summary, "operationId": _op_id(route.path, method)}
    if route.request is not None:
        op["requestBody"] = {"required": True, "content": _json(_ref(route.request))}
    ok: dict[str, Any] = {"description": "OK"}
    if route.path == "/":
        ok["content"] = {"text/plain": {"schema": {"const": "Ollama is running"}}}
    elif route.response is not None:
        ok["content"] = _json(_ref(route.response))
        if route.streams:
            ok["description"] = (
                'a stream of objects, one per line (the default; `"stream": false` gives one '
                'object); an error after the first line is a final `{"error": ...}` line'
            )
            ok["content"][_NDJSON] = {"schema": _ref(route.response)}
    if method == "head":
        ok.pop("content", None)
    responses: dict[str, Any] = {"200": ok}
    for status in route.errors:
        responses[str(status)] = {
            "description": _STATUS_TEXT[status],
            "content": _json(_ref(ErrorResponse)),
        }
    op["responses"] = responses
    return op


_STATUS_TEXT = {
    400: "bad request",
    401: "the registry refused the credentials (mfc login)",
    404: "model not found",
    500: "internal error",
    502: "the registry failed the request",
    503: "server busy (queue full)",
}


def _op_id(path: str, method: str) -> str:
    tail = path.strip("/").replace("api/", "").replace("/", "_").replace("{", "").replace("}", "")
    return f"{method}_{tail or 'root'}"


def _blob_path() -> dict[str, Any]:
    digest = {
        "name": "digest",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": f"^sha256[:-]{DIGEST_HEX}$"},
    }
    err = {"content": _json(_ref(ErrorResponse))}
    return {
        "parameters": [digest],
        "head": {
            "summary": "is this blob in the store?",
            "operationId": "head_blob",
            "responses": {
                "200": {"description": "present"},
                "404": {"description": "absent", **err},
                "400": {"description": "invalid digest format", **err},
            },
        },
        "post": {
            "summary": "upload a blob; its sha256 is checked while it streams in",
            "operationId": "post_blob",
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
            "responses": {
                "201": {"description": "stored"},
                "200": {"description": "already present"},
                "400": {"description": "invalid digest format or digest mismatch", **err},
            },
        },
    }


def openapi(version: str = "0.0.0") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the native API, from the same models ``parse`` uses."""
    mode: Literal["validation"] = "validation"
    models = [(m, mode) for m in (*REQUEST_MODELS, *RESPONSE_MODELS)]
    _, top = models_json_schema(models, ref_template="#/components/schemas/{model}")
    paths: dict[str, Any] = {}
    for route in _ROUTES:
        paths[route.path] = {m: _operation(route, m) for m in route.methods}
    paths["/api/blobs/{digest}"] = _blob_path()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mfc serve: Ollama's native API",
            "version": version,
            "description": "Field names, types and status codes are Ollama's. mfc refuses "
            "unknown top-level fields and out-of-range options with a 400.",
        },
        "paths": paths,
        "components": {"schemas": top.get("$defs", {})},
    }
