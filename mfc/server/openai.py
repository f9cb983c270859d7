"""The OpenAI API (``/v1/*``) as a pure translation to and from Ollama's request models.

As Ollama's ``openai/`` package: each OpenAI body becomes an ``ol.ChatRequest``,
``ol.GenerateRequest`` or ``ol.EmbedRequest`` (``chat_request``,
``completion_request``, ``embed_request``, ``responses_request``), which the
dialect-free service runs; the builders here spell its events (``Delta``,
``Final``, ``Outcome``) as OpenAI's payloads, chunks and Responses events. No
I/O, no Starlette, no sampling or template logic: only names and shapes.

Defaults and quirks are Ollama's (``openai/openai.go``, ``openai/responses.go``,
``middleware/openai.go``): temperature and top_p default to 1.0, ``max_tokens``
is ``num_predict``, ``stop`` may be a string, tool-call arguments are JSON
strings, reasoning travels in ``reasoning``, ids are ``chatcmpl-NNN``. Unknown
request fields are ignored, as the SDKs send many. Where mfc differs the module
says so, and ``docs/api.md`` lists it.

Exceptions::

    ValueError
     └── ol.BadRequest   status 400; ``.param`` (when set) names the OpenAI field at fault
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import struct
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError

from mfc.server import ollama as ol
from mfc.store import InvalidNameError, parse_name

if TYPE_CHECKING:
    from mfc.server.service import Delta, Final, Outcome, ToolCall

__all__ = [
    "ChatCompletionRequest",
    "ChatStream",
    "CompletionRequest",
    "CompletionStream",
    "EmbeddingRequest",
    "Invalid",
    "ResponsesRequest",
    "ResponsesStream",
    "chat_completion",
    "chat_image_fields",
    "chat_request",
    "completion",
    "completion_request",
    "embed_request",
    "embedding_list",
    "error_body",
    "error_type",
    "model_entry",
    "model_list",
    "new_id",
    "responses_image_fields",
    "responses_request",
    "to_response",
    "tool_calls",
]

FINGERPRINT = "fp_ollama"


class Invalid(ol.BadRequest):
    """A request OpenAI's API would refuse: 400 with ``param`` naming the field."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


# --- errors ---------------------------------------------------------------------------------------


def error_type(status: int) -> str:
    """Ollama's ``openai.NewError`` types: 400 and 404 have their own, everything else api_error."""
    if status == 400:
        return "invalid_request_error"
    if status == 404:
        return "not_found_error"
    return "api_error"


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}`` (``code`` is always null, as Ollama)."""
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": None}}


def new_id(prefix: str, below: int = 999) -> str:
    """Ollama's ids: a prefix (``chatcmpl-``, ``cmpl-``, ``resp_``, ``msg_``) and a random
    number below ``below`` (999 for completions, 999999 for responses)."""
    return f"{prefix}{random.randrange(below)}"


# --- request models -------------------------------------------------------------------------------


class _Body(ol._Wire):
    """Go's decoding (strict types, ``null`` = absent); unknown fields ignored, as OpenAI SDKs
    send many (``user``, ``store``, ``metadata``, ``parallel_tool_calls`` …)."""


class StreamOptions(_Body):
    include_usage: bool = False


class Reasoning(_Body):
    effort: str = ""
    summary: str = ""
    generate_summary: str = ""


class ChatCompletionRequest(_Body):
    model: str = ""
    messages: list[dict[str, Any]] = Field(default_factory=list)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: ol.Int | None = None
    max_completion_tokens: ol.Int | None = None
    seed: ol.Int | None = None
    stop: Any = None
    temperature: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    top_p: float | None = None
    n: ol.Int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    reasoning: Reasoning | None = None
    reasoning_effort: str | None = None
    logprobs: bool | None = None
    top_logprobs: ol.Int = 0
    debug_render_only: bool = Field(False, alias="_debug_render_only")


class CompletionRequest(_Body):
    model: str = ""
    prompt: Any = None
    suffix: str = ""
    max_tokens: ol.Int | None = None
    seed: ol.Int | None = None
    stop: Any = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    echo: bool = False
    n: ol.Int | None = None
    logprobs: ol.Int | None = None
    debug_render_only: bool = Field(False, alias="_debug_render_only")


class EmbeddingRequest(_Body):
    model: str = ""
    input: Any = None
    dimensions: ol.Int = 0
    encoding_format: str = ""


class ResponsesTextFormat(_Body):
    type: str = ""
    name: str = ""
    schema_: Any = Field(None, alias="schema")
    strict: bool | None = None


class ResponsesText(_Body):
    format: ResponsesTextFormat | None = None


class ResponsesRequest(_Body):
    model: str = ""
    background: bool = False
    input: Any = None
    instructions: str = ""
    max_output_tokens: ol.Int | None = None
    reasoning: Reasoning = Field(default_factory=Reasoning)
    temperature: float | None = None
    text: ResponsesText | None = None
    top_p: float | None = None
    truncation: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    stream: bool | None = None
    previous_response_id: str | None = None


def parse(model_cls: type[ol.M], body: bytes) -> ol.M:
    """Decode a body as ``ol.parse`` does (the same JSON rules and messages)."""
    return ol.parse(model_cls, body)


def _native(model_cls: type[ol.M], data: dict[str, Any], what: str) -> ol.M:
    """The translated request as Ollama's model; a field the native checks refuse is a 400."""
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        raise Invalid(ol._describe(exc, model_cls), _param_of(exc, what)) from None


def _param_of(exc: ValidationError, what: str) -> str | None:
    loc = exc.errors(include_url=False)[0]["loc"]
    head = str(loc[0]) if loc else ""
    return {"options": None, "tools": "tools", "messages": what, "format": None}.get(head, head)


# --- shared pieces --------------------------------------------------------------------------------


def _stop(value: Any, *, strict: bool) -> list[str] | None:
    """``stop``: a string is a list of one; chat drops non-strings (Ollama), completions refuse."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        out = []
        for s in value:
            if isinstance(s, str):
                out.append(s)
            elif strict:
                raise Invalid(f"invalid type for 'stop' field: {_go_type(s)}", "stop")
        return out
    raise Invalid("stop: must be a string or an array of strings", "stop")


def _go_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float64"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return "<nil>" if value is None else "string"


def think_from_effort(effort: str) -> bool | str | None:
    """OpenAI's reasoning effort as Ollama's ``think`` (clamped to Ollama's tiers)."""
    if effort == "":
        return None
    if effort == "none":
        return False
    if effort == "minimal":
        return "low"
    if effort in ("low", "medium", "high", "max"):
        return effort
    if effort in ("xhigh", "ultra"):
        return "max"
    raise Invalid(
        f'invalid reasoning value: "{effort}" (must be "minimal", "low", "medium", "high", '
        '"xhigh", "ultra", "max", or "none")',
        "reasoning_effort",
    )


IMAGE_TYPES = ("jpeg", "jpg", "png", "webp")


def decode_image_url(url: str, param: str) -> str:
    """A ``data:`` URI's image as standard base64 (Ollama's ``decodeImageURL`` rules)."""
    if url.startswith(("http://", "https://")):
        raise Invalid(
            "image URLs are not currently supported, please use base64 encoded data instead "
            "(mfc serve fetches nothing: send the image as a data: URL)",
            param,
        )
    if url.startswith("data:;base64,"):
        data = url.removeprefix("data:;base64,")
    else:
        for t in IMAGE_TYPES:
            prefix = f"data:image/{t};base64,"
            if url.startswith(prefix):
                data = url.removeprefix(prefix)
                break
        else:
            raise Invalid("invalid image input", param)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("invalid image input", param) from None
    return data


def _function_tool(tool: Any, i: int) -> dict[str, Any]:
    """A chat ``tools[i]`` entry, checked: ``{"type": "function", "function": {"name", ...}}``."""
    param = "tools"
    if not isinstance(tool, dict):
        raise Invalid(f"tools[{i}]: must be an object", param)
    if tool.get("type", "function") != "function":
        raise Invalid(f'tools[{i}].type: only "function" tools are supported', param)
    fn = tool.get("function")
    if not isinstance(fn, dict):
        raise Invalid(f"tools[{i}].function: must be an object", param)
    _check_function(fn.get("name"), fn.get("parameters"), f"tools[{i}].function")
    return tool


def _check_function(name: Any, parameters: Any, where: str) -> None:
    if not isinstance(name, str) or not name:
        raise Invalid(f"{where}.name: must be a non-empty string", "tools")
    if parameters is not None and not isinstance(parameters, dict):
        raise Invalid(f"{where}.parameters: must be a JSON Schema object", "tools")


def _arguments(text: Any, param: str) -> dict[str, Any]:
    """A tool call's JSON-string ``arguments`` as the object Ollama's messages carry."""
    if text in (None, ""):
        return {}
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise Invalid("invalid tool call arguments", param)
    return value


def _options(
    *,
    stop: list[str] | None,
    max_tokens: int | None,
    temperature: float | None,
    seed: int | None,
    frequency_penalty: float | None,
    presence_penalty: float | None,
    top_p: float | None,
) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if stop is not None:
        options["stop"] = stop
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    options["temperature"] = 1.0 if temperature is None else temperature
    if seed is not None:
        options["seed"] = seed
    if frequency_penalty is not None:
        options["frequency_penalty"] = frequency_penalty
    if presence_penalty is not None:
        options["presence_penalty"] = presence_penalty
    if top_p is not None:
        options["top_p"] = top_p
    return options


# --- chat completions: request --------------------------------------------------------------------


def chat_request(r: ChatCompletionRequest) -> ol.ChatRequest:
    """Ollama's ``FromChatRequest``, plus the checks OpenAI makes (tools, response_format, n)."""
    if not r.messages:
        raise Invalid("[] is too short - 'messages'", "messages")
    if r.n is not None and r.n != 1:
        raise Invalid("n: only one choice per request is supported", "n")
    messages = _chat_messages(r.messages)
    max_tokens = r.max_completion_tokens if r.max_completion_tokens is not None else r.max_tokens
    options = _options(
        stop=_stop(r.stop, strict=False),
        max_tokens=max_tokens,
        temperature=r.temperature,
        seed=r.seed,
        frequency_penalty=r.frequency_penalty,
        presence_penalty=r.presence_penalty,
        top_p=1.0 if r.top_p is None else r.top_p,
    )
    tools = [_function_tool(t, i) for i, t in enumerate(r.tools or [])]
    if _tool_choice(r.tool_choice) == "none":
        tools = []
    effort = r.reasoning.effort if r.reasoning is not None else (r.reasoning_effort or "")
    body: dict[str, Any] = {
        "model": r.model,
        "messages": messages,
        "options": options,
        "stream": r.stream,
        "logprobs": bool(r.logprobs),
        "top_logprobs": r.top_logprobs,
    }
    fmt = response_format(r.response_format)
    if fmt is not None:
        body["format"] = fmt
    if tools:
        body["tools"] = tools
    think = think_from_effort(effort)
    if think is not None:
        body["think"] = think
    if r.debug_render_only:
        body["_debug_render_only"] = True
    return _native(ol.ChatRequest, body, "messages")


def chat_image_fields(r: ChatCompletionRequest) -> list[str]:
    """Where each image of ``chat_request(r)`` came from (``messages[i].content[j]``), in its
    order: the service names the part at fault when it refuses an image."""
    out = []
    for i, msg in enumerate(r.messages):
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") in ("image_url", "input_audio"):
                    out.append(f"messages[{i}].content[{j}]")
    return out


def _tool_choice(value: Any) -> str:
    """``tool_choice``: "none" drops the tools; "auto", "required" and a named function are
    accepted and left to the model, as Ollama does (it ignores the field)."""
    if value is None:
        return "auto"
    if value in ("none", "auto", "required"):
        return str(value)
    if isinstance(value, dict) and value.get("type") in ("function", "allowed_tools", "custom"):
        return "function"
    raise Invalid(
        'tool_choice: must be "none", "auto", "required" or {"type": "function", ...}',
        "tool_choice",
    )


def response_format(value: Mapping[str, Any] | None) -> Any:
    """``response_format`` as Ollama's ``format``: json_object is "json", json_schema its schema.

    Ollama ignores an unknown type or a json_schema without a schema (an unconstrained
    answer); mfc refuses both, so a client never gets free text it asked to be JSON.
    """
    if value is None:
        return None
    kind = str(value.get("type", "")).strip().lower()
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise Invalid(
                "response_format.json_schema.schema: a JSON Schema object is required",
                "response_format",
            )
        return spec["schema"]
    raise Invalid(
        f"response_format.type: {json.dumps(value.get('type'))} is not one of "
        '"text", "json_object", "json_schema"',
        "response_format",
    )


def _chat_messages(raw: Sequence[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(raw):
        param = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise Invalid(f"{param}: must be an object", "messages")
        role = msg.get("role")
        if not isinstance(role, str):
            raise Invalid(f"{param}.role: must be a string", "messages")
        thinking = msg.get("reasoning") or msg.get("reasoning_content") or ""
        if not isinstance(thinking, str):
            raise Invalid(f"{param}.reasoning: must be a string", "messages")
        tool_call_id = msg.get("tool_call_id") or ""
        tool_name = ""
        if role.lower() == "tool":
            tool_name = msg.get("name") or ""
            if not tool_name and tool_call_id:
                tool_name = _name_from_call_id(raw, tool_call_id)
        calls = msg.get("tool_calls")
        native_calls = _from_tool_calls(calls, param) if calls else None
        content = msg.get("content")
        if isinstance(content, str):
            m = {"role": role, "content": content}
            out.append(_msg(m, thinking, native_calls, tool_name, tool_call_id))
        elif isinstance(content, list):
            added = 0
            for j, part in enumerate(content):
                out.append({"role": role, **_part(part, f"{param}.content[{j}]")})
                added += 1
            if added and native_calls:
                out[-1] = _msg(out[-1], thinking, native_calls, tool_name, tool_call_id)
        else:
            if calls is None:
                raise Invalid(
                    f"invalid message content type: {_go_type(content)}", "messages"
                ) from None
            out.append(_msg({"role": role}, thinking, native_calls, "", tool_call_id))
    return out


def _msg(
    m: dict[str, Any],
    thinking: str,
    calls: list[dict[str, Any]] | None,
    tool_name: str,
    tool_call_id: str,
) -> dict[str, Any]:
    m = dict(m)
    if thinking:
        m["thinking"] = thinking
    if calls:
        m["tool_calls"] = calls
    if tool_name:
        m["tool_name"] = tool_name
    if tool_call_id:
        m["tool_call_id"] = tool_call_id
    return m


def _part(part: Any, param: str) -> dict[str, Any]:
    """One content part as its own message (Ollama splits a message's parts this way)."""
    if not isinstance(part, dict):
        raise Invalid("invalid message format", "messages")
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise Invalid("invalid message format", "messages")
        return {"content": text}
    if kind == "image_url":
        spec = part.get("image_url")
        url = spec.get("url") if isinstance(spec, dict) else spec
        if not isinstance(url, str):
            raise Invalid("invalid message format", "messages")
        return {"images": [decode_image_url(url, "messages")]}
    if kind == "input_audio":
        audio = part.get("input_audio")
        data = audio.get("data") if isinstance(audio, dict) else None
        if not isinstance(data, str):
            raise Invalid("invalid input_audio format", "messages")
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise Invalid("invalid input_audio base64 data", "messages") from None
        return {"images": [data]}
    raise Invalid(f"{param}: invalid message format", "messages")


def _from_tool_calls(calls: Any, param: str) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise Invalid(f"{param}.tool_calls: must be an array", "messages")
    out = []
    for call in calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            raise Invalid("invalid tool call arguments", "messages")
        native: dict[str, Any] = {
            "function": {
                "name": fn.get("name") or "",
                "arguments": _arguments(fn.get("arguments"), "messages"),
            }
        }
        if call.get("id"):
            native["id"] = call["id"]
        out.append(native)
    return out


def _name_from_call_id(messages: Sequence[Any], call_id: str) -> str:
    """The function a tool result answers, from the assistant message that called it."""
    for msg in reversed(messages):
        for call in (msg.get("tool_calls") or []) if isinstance(msg, dict) else []:
            if isinstance(call, dict) and call.get("id") == call_id:
                fn = call.get("function") or {}
                return str(fn.get("name") or "")
    return ""


# --- chat completions: answers --------------------------------------------------------------------


def _arguments_text(arguments: Mapping[str, Any]) -> str:
    return json.dumps(dict(arguments), separators=(",", ":"), ensure_ascii=False)


def tool_calls(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    """OpenAI's tool calls: ``arguments`` is a JSON string (Ollama's ``ToToolCalls``)."""
    return [
        {
            "id": c.id,
            "index": c.index,
            "type": "function",
            "function": {"name": c.name, "arguments": _arguments_text(c.arguments)},
        }
        for c in calls
    ]


def usage(final: Final) -> dict[str, int]:
    m = final.metrics
    return {
        "prompt_tokens": m.prompt_eval_count,
        "completion_tokens": m.eval_count,
        "total_tokens": m.prompt_eval_count + m.eval_count,
    }


def _logprobs(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    return {"content": [dict(e) for e in entries]} if entries else None


def finish_reason(final: Final, called: bool) -> str:
    """Ollama's done reason, with "stop" becoming "tool_calls" when the answer called tools."""
    reason = final.done_reason or "stop"
    return "tool_calls" if reason == "stop" and called else reason


def _reasoning(text: str) -> dict[str, str]:
    """The thinking under both names clients read: Ollama's ``reasoning``, and
    ``reasoning_content`` (DeepSeek's and vLLM's, which LiteLLM and LangChain read)."""
    return {"reasoning": text, "reasoning_content": text}


def chat_completion(id: str, model: str, created: int, got: Outcome) -> dict[str, Any]:
    """A non-streamed ``chat.completion`` (Ollama's ``ToChatCompletion``)."""
    message: dict[str, Any] = {"role": "assistant", "content": got.content}
    if got.thinking:
        message.update(_reasoning(got.thinking))
    if got.tool_calls:
        message["tool_calls"] = tool_calls(got.tool_calls)
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "finish_reason": finish_reason(got.final, bool(got.tool_calls)),
    }
    lp = _logprobs(got.logprobs)
    if lp is not None:
        choice["logprobs"] = lp
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [choice],
        "usage": usage(got.final),
    }


def chat_debug(
    id: str, model: str, created: int, rendered: str, image_count: int = 0
) -> dict[str, Any]:
    """``_debug_render_only``: an empty completion carrying the rendered prompt (Ollama's)."""
    debug: dict[str, Any] = {"rendered_template": rendered}
    if image_count:
        debug["image_count"] = image_count
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": None}
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "_debug_info": debug,
    }


class ChatStream:
    """The chunks of a streamed chat completion (Ollama's ``ChatWriter``): the first delta
    carries the role; thinking and content of one step go in two chunks; a finish chunk
    with an empty delta; with ``include_usage`` a usage chunk with no choices; ``[DONE]``."""

    def __init__(self, id: str, model: str, created: int, include_usage: bool = False):
        self.id = id
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.first_sent = False
        self.called = False

    def _chunk(self, delta: dict[str, Any], logprobs: Any = None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
        if logprobs is not None:
            choice["logprobs"] = logprobs
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [choice],
        }

    def delta(self, d: Delta) -> list[dict[str, Any]]:
        calls = tool_calls(d.tool_calls)
        role = {} if self.first_sent else {"role": "assistant"}
        self.first_sent = True
        self.called = self.called or bool(calls)
        lp = _logprobs(d.logprobs)
        if d.thinking and (d.content or calls):
            reasoning = self._chunk({**role, **_reasoning(d.thinking)}, lp)
            rest: dict[str, Any] = {"content": d.content}
            if calls:
                rest["tool_calls"] = calls
            return [reasoning, self._chunk(rest)]
        out: dict[str, Any] = {**role, "content": d.content}
        if d.thinking:
            out.update(_reasoning(d.thinking))
        if calls:
            out["tool_calls"] = calls
        return [self._chunk(out, lp)]

    def final(self, f: Final) -> list[dict[str, Any] | str]:
        out: list[dict[str, Any] | str] = []
        if not self.first_sent:  # a wholly empty answer still opens with the role
            self.first_sent = True
            out.append(self._chunk({"role": "assistant", "content": ""}))
        finish = self._chunk({})
        finish["choices"][0]["finish_reason"] = finish_reason(f, self.called)
        out.append(finish)
        if self.include_usage:
            out.append({**finish, "choices": [], "usage": usage(f)})
        out.append("[DONE]")
        return out


# --- completions ----------------------------------------------------------------------------------


def completion_request(r: CompletionRequest) -> ol.GenerateRequest:
    """Ollama's ``FromCompleteRequest``: one string prompt; ``logprobs`` N is top_logprobs N."""
    prompt = r.prompt
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        raise Invalid(
            "prompt: must be a string (lists of prompts and token arrays are not supported)",
            "prompt",
        )
    if r.n is not None and r.n != 1:
        raise Invalid("n: only one choice per request is supported", "n")
    options = _options(
        stop=_stop(r.stop, strict=True),
        max_tokens=r.max_tokens,
        temperature=r.temperature,
        seed=r.seed,
        frequency_penalty=r.frequency_penalty,
        presence_penalty=r.presence_penalty,
        top_p=r.top_p if r.top_p != 0.0 else 1.0,
    )
    body: dict[str, Any] = {
        "model": r.model,
        "prompt": prompt,
        "options": options,
        "stream": r.stream,
    }
    if r.suffix:
        body["suffix"] = r.suffix
    if r.logprobs is not None and r.logprobs > 0:
        body["logprobs"] = True
        body["top_logprobs"] = r.logprobs
    if r.debug_render_only:
        body["_debug_render_only"] = True
    return _native(ol.GenerateRequest, body, "prompt")


def _completion_logprobs(entries: Sequence[Mapping[str, Any]], offset: int) -> dict[str, Any]:
    """The legacy completions shape (tokens, token_logprobs, top_logprobs, text_offset)."""
    tokens, lps, tops, offsets = [], [], [], []
    for e in entries:
        token = str(e.get("token", ""))
        tokens.append(token)
        lps.append(e.get("logprob"))
        tops.append({str(t.get("token")): t.get("logprob") for t in e.get("top_logprobs") or []})
        offsets.append(offset)
        offset += len(token)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


def _completion_choice(
    text: str, reason: str | None, entries: Sequence[Mapping[str, Any]] = (), offset: int = 0
) -> dict[str, Any]:
    choice: dict[str, Any] = {"text": text, "index": 0, "finish_reason": reason}
    if entries:
        choice["logprobs"] = _completion_logprobs(entries, offset)
    return choice


def completion(
    id: str, model: str, created: int, got: Outcome, *, echo: str = ""
) -> dict[str, Any]:
    """A non-streamed ``text_completion`` (``echo`` puts the prompt before the text)."""
    return {
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            _completion_choice(
                echo + got.content, got.final.done_reason or None, got.logprobs, len(echo)
            )
        ],
        "usage": usage(got.final),
    }


class CompletionStream:
    """Chunks of a streamed completion (Ollama's ``CompleteWriter``): one per delta, a last one
    with the finish reason; with ``include_usage`` every chunk carries a zero ``usage`` and a
    final chunk with no choices carries the real one; ``[DONE]``."""

    def __init__(self, id: str, model: str, include_usage: bool = False, echo: str = ""):
        self.id = id
        self.model = model
        self.include_usage = include_usage
        self.echo = echo
        self.offset = 0

    def _chunk(self, choice: dict[str, Any]) -> dict[str, Any]:
        out = {
            "id": self.id,
            "object": "text_completion",
            "created": int(time.time()),
            "choices": [choice],
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
        }
        if self.include_usage:
            out["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        return out

    def delta(self, d: Delta) -> list[dict[str, Any]]:
        text, self.echo = self.echo + d.content, ""
        out = self._chunk(_completion_choice(text, None, d.logprobs, self.offset))
        self.offset += len(text)
        return [out]

    def final(self, f: Final) -> list[dict[str, Any] | str]:
        text, self.echo = self.echo, ""
        last = self._chunk(_completion_choice(text, f.done_reason or None))
        out: list[dict[str, Any] | str] = [last]
        if self.include_usage:
            out.append({**last, "choices": [], "usage": usage(f)})
        out.append("[DONE]")
        return out


# --- models ---------------------------------------------------------------------------------------


def _owner(name: str) -> str:
    try:
        return parse_name(name).namespace
    except InvalidNameError:
        return ""


def model_entry(name: str, created: int) -> dict[str, Any]:
    """One model: ``owned_by`` is the name's namespace (``library`` for official names)."""
    return {"id": name, "object": "model", "created": created, "owned_by": _owner(name)}


def model_list(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``GET /v1/models`` from /api/tags entries (``data`` is [] when empty; Ollama sends null)."""
    data = []
    for e in entries:
        name = str(e.get("model") or e.get("name"))
        data.append(model_entry(name, _unix(str(e["modified_at"]))))
    return {"object": "list", "data": data}


def _unix(rfc3339: str) -> int:
    return int(ol._sort_time(rfc3339))


# --- embeddings -----------------------------------------------------------------------------------


def embed_request(r: EmbeddingRequest) -> ol.EmbedRequest:
    """Ollama's ``EmbeddingsMiddleware`` checks, then its ``EmbedRequest``."""
    fmt = r.encoding_format
    if fmt and fmt.lower() not in ("float", "base64"):
        raise Invalid(
            f"Invalid value for 'encoding_format' = {fmt}. Supported values: ['float', 'base64'].",
            "encoding_format",
        )
    value = r.input
    if value == "":
        value = [""]
    if value is None or value == []:
        raise Invalid("invalid input", "input")
    if not (isinstance(value, str) or all(isinstance(v, str) for v in value)):
        raise Invalid(
            "invalid input type: `input` must be a string or an array of strings "
            "(token arrays are not supported)",
            "input",
        )
    body: dict[str, Any] = {"model": r.model, "input": value}
    if r.dimensions:
        body["dimensions"] = r.dimensions
    return _native(ol.EmbedRequest, body, "input")


def _base64_floats(vector: Sequence[float]) -> str:
    """Little-endian float32 bytes, base64 (what the SDK decodes with numpy.frombuffer)."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_list(
    model: str, vectors: Sequence[Sequence[float]], prompt_tokens: int, encoding_format: str = ""
) -> dict[str, Any]:
    b64 = encoding_format.lower() == "base64"
    data = [
        {
            "object": "embedding",
            "embedding": _base64_floats(v) if b64 else [float(x) for x in v],
            "index": i,
        }
        for i, v in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


# --- responses: request ---------------------------------------------------------------------------


def responses_request(r: ResponsesRequest) -> ol.ChatRequest:
    """Ollama's ``FromResponsesRequest`` (stateless: no previous_response_id, no web search)."""
    if r.previous_response_id:
        raise Invalid(
            "previous_response_id is not supported: responses are not stored; "
            "send the whole conversation in input",
            "previous_response_id",
        )
    messages: list[dict[str, Any]] = []
    if r.instructions:
        messages.append({"role": "system", "content": r.instructions})
    if isinstance(r.input, str):
        if r.input:
            messages.append({"role": "user", "content": r.input})
    elif isinstance(r.input, list):
        _input_items(r.input, messages)
    elif r.input is not None:
        raise Invalid("input must be a string or array", "input")
    options: dict[str, Any] = {"temperature": 1.0 if r.temperature is None else r.temperature}
    if r.top_p is not None:
        options["top_p"] = r.top_p
    if r.max_output_tokens is not None:
        options["num_predict"] = r.max_output_tokens
    think = think_from_effort(r.reasoning.effort)
    tools: list[dict[str, Any]] = []
    for i, t in enumerate(r.tools or []):
        tools.extend(_responses_tools(t, f"tools[{i}]"))
    if r.tool_choice == "none":
        tools = []
    body: dict[str, Any] = {
        "model": r.model,
        "messages": messages,
        "options": options,
        "stream": bool(r.stream),
    }
    if tools:
        body["tools"] = tools
    fmt = r.text.format if r.text is not None else None
    if fmt is not None:
        if fmt.type == "json_schema":
            if not isinstance(fmt.schema_, dict):
                raise Invalid("text.format.schema: a JSON Schema object is required", "text")
            body["format"] = fmt.schema_
        elif fmt.type == "json_object":
            body["format"] = "json"
        elif fmt.type not in ("", "text"):
            raise Invalid(
                f'text.format.type: "{fmt.type}" is not one of "text", "json_schema", '
                '"json_object"',
                "text",
            )
    if think is not None:
        body["think"] = think
    return _native(ol.ChatRequest, body, "input")


def responses_image_fields(r: ResponsesRequest) -> list[str]:
    """Where each image of ``responses_request(r)`` came from (``input[i].content[j]``, or
    ``input[i].output[j]``), in its order."""
    out: list[str] = []
    if not isinstance(r.input, list):
        return out
    for i, item in enumerate(r.input):
        if not isinstance(item, dict):
            continue
        kind = item.get("type") or ("message" if item.get("role") else "")
        key = {"message": "content", "function_call_output": "output"}.get(kind)
        parts = item.get(key) if key else None
        if not isinstance(parts, list):
            continue
        for j, part in enumerate(parts):
            url = part.get("image_url") if isinstance(part, dict) else None
            if part.get("type") == "input_image" and isinstance(url, str) and url:
                out.append(f"input[{i}].{key}[{j}]")
    return out


def _responses_tools(t: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(t, dict):
        raise Invalid(f"{where}: must be an object", "tools")
    kind = t.get("type")
    if kind == "namespace":
        out = []
        prefix = f"{t.get('name')}." if t.get("name") else ""
        for j, member in enumerate(t.get("tools") or []):
            for tool in _responses_tools(member, f"{where}.tools[{j}]"):
                name = tool["function"]["name"]
                if prefix and not name.startswith(prefix):
                    tool["function"]["name"] = prefix + name
                out.append(tool)
        return out
    if kind != "function":
        raise Invalid(f'{where}.type: "{kind}" tools are not supported (only "function")', "tools")
    _check_function(t.get("name"), t.get("parameters"), where)
    fn: dict[str, Any] = {"name": t["name"], "description": t.get("description") or ""}
    if t.get("parameters") is not None:
        fn["parameters"] = t["parameters"]
    return [{"type": "function", "function": fn}]


def _content_text(content: Any, where: str) -> tuple[str, list[str]]:
    """Responses content (a string or parts) as text and images (input_file is refused)."""
    if isinstance(content, str):
        return content, []
    if content is None:
        return "", []
    if not isinstance(content, list):
        raise Invalid(f"{where}: content must be a string or array", "input")
    text, images = "", []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text"):
            value = part.get("text")
            if not isinstance(value, str):
                raise Invalid(f"{where}[{j}].text: must be a string", "input")
            text += value
        elif kind == "input_image":
            url = part.get("image_url")
            if isinstance(url, str) and url:
                images.append(decode_image_url(url, "input"))
        elif kind == "input_file":
            raise Invalid("file inputs are not currently supported", "input")
        else:
            raise Invalid(f"{where}[{j}]: unknown content type: {kind}", "input")
    return text, images


def _input_items(items: Sequence[Any], messages: list[dict[str, Any]]) -> None:
    pending = ""
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise Invalid(f"{where}: must be an object", "input")
        kind = item.get("type") or ("message" if item.get("role") else "")
        if kind == "reasoning":
            pending = str(item.get("encrypted_content") or "")
        elif kind == "message":
            text, images = _content_text(item.get("content"), f"{where}.content")
            msg: dict[str, Any] = {"role": str(item.get("role") or ""), "content": text}
            if images:
                msg["images"] = images
            if msg["role"] == "assistant" and pending:
                msg["thinking"], pending = pending, ""
            nxt = items[i + 1] if i + 1 < len(items) else None
            answered = nxt.get("call_id") if isinstance(nxt, dict) else None
            is_output = isinstance(nxt, dict) and nxt.get("type") == "function_call_output"
            last = messages[-1] if messages else None
            if (
                msg["role"] == "assistant"
                and is_output
                and answered
                and last is not None
                and last.get("role") == "assistant"
                and any(c.get("id") == answered for c in last.get("tool_calls") or [])
            ):
                if last.get("content") and msg["content"]:
                    last["content"] += "\n"
                last["content"] = last.get("content", "") + msg["content"]
                if images:
                    last.setdefault("images", []).extend(images)
                if msg.get("thinking"):
                    last["thinking"] = msg["thinking"]
                continue
            messages.append(msg)
        elif kind == "function_call":
            call = {
                "id": str(item.get("call_id") or ""),
                "function": {
                    "name": str(item.get("name") or ""),
                    "arguments": _arguments(item.get("arguments"), "input"),
                },
            }
            if messages and messages[-1].get("role") == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
                if pending:
                    messages[-1]["thinking"], pending = pending, ""
            else:
                msg = {"role": "assistant", "content": "", "tool_calls": [call]}
                if pending:
                    msg["thinking"], pending = pending, ""
                messages.append(msg)
        elif kind == "function_call_output":
            output = item.get("output")
            text, images = _content_text(output, f"{where}.output")
            msg = {"role": "tool", "content": text, "tool_call_id": str(item.get("call_id") or "")}
            if images:
                msg["images"] = images
            messages.append(msg)
        elif kind == "web_search_call":
            continue
        elif not kind:
            raise Invalid(f"{where}: input item missing required 'type' field", "input")
        else:
            raise Invalid(f'{where}: unknown input item type: "{kind}"', "input")
    if pending:
        messages.append({"role": "assistant", "content": "", "thinking": pending})


# --- responses: answers ---------------------------------------------------------------------------


def _text_format(r: ResponsesRequest) -> dict[str, Any]:
    fmt = r.text.format if r.text is not None else None
    if fmt is None:
        return {"type": "text"}
    out: dict[str, Any] = {"type": fmt.type}
    if fmt.name:
        out["name"] = fmt.name
    if fmt.schema_ is not None:
        out["schema"] = fmt.schema_
    if fmt.strict is not None:
        out["strict"] = fmt.strict
    return out


def _echo_tools(r: ResponsesRequest) -> list[dict[str, Any]]:
    return [
        {
            "type": t.get("type"),
            "name": t.get("name"),
            "description": t.get("description"),
            "strict": t.get("strict"),
            "parameters": t.get("parameters"),
        }
        for t in r.tools or []
    ]


def _response_object(
    r: ResponsesRequest,
    id: str,
    status: str,
    output: list[Any],
    usage: dict[str, Any] | None,
    created: int,
) -> dict[str, Any]:
    reasoning = None
    if r.reasoning.effort or r.reasoning.summary:
        reasoning = {"effort": r.reasoning.effort or None, "summary": r.reasoning.summary or None}
    return {
        "id": id,
        "object": "response",
        "created_at": created,
        "completed_at": None,
        "status": status,
        "incomplete_details": None,
        "model": r.model,
        "previous_response_id": None,
        "instructions": r.instructions or None,
        "output": output,
        "error": None,
        "tools": _echo_tools(r),
        "tool_choice": "auto",
        "truncation": r.truncation if r.truncation is not None else "disabled",
        "parallel_tool_calls": True,
        "text": {"format": _text_format(r)},
        "top_p": 1.0 if r.top_p is None else r.top_p,
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "top_logprobs": 0,
        "temperature": 1.0 if r.temperature is None else r.temperature,
        "reasoning": reasoning,
        "usage": usage,
        "max_output_tokens": r.max_output_tokens,
        "max_tool_calls": None,
        "store": False,
        "background": r.background,
        "service_tier": "default",
        "metadata": {},
        "safety_identifier": None,
        "prompt_cache_key": None,
    }


def _responses_usage(final: Final) -> dict[str, Any]:
    m = final.metrics
    return {
        "input_tokens": m.prompt_eval_count,
        "output_tokens": m.eval_count,
        "total_tokens": m.prompt_eval_count + m.eval_count,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [_output_text(text)],
    }


def _reasoning_item(item_id: str, thinking: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": thinking}],
        "encrypted_content": thinking,
    }


def _call_item(item_id: str, call: Mapping[str, Any], status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call["id"],
        "name": call["function"]["name"],
        "arguments": call["function"]["arguments"],
    }


def to_response(
    r: ResponsesRequest, id: str, item_id: str, got: Outcome, created: int, completed: int
) -> dict[str, Any]:
    """A non-streamed Responses answer (Ollama's ``ToResponse``): a reasoning item, then the
    function calls or the message."""
    output: list[Any] = []
    if got.thinking:
        output.append(_reasoning_item(f"rs_{id}", got.thinking))
    if got.tool_calls:
        for i, call in enumerate(tool_calls(got.tool_calls)):
            output.append(_call_item(f"fc_{id}_{i}", call))
    else:
        output.append(_message_item(item_id, got.content))
    out = _response_object(r, id, "completed", output, _responses_usage(got.final), created)
    out["completed_at"] = completed
    return out


class ResponsesStream:
    """The Responses API's event sequence (Ollama's ``ResponsesStreamConverter``).

    ``delta`` and ``final`` return ``(event, data)`` pairs, each with its ``type`` and
    ``sequence_number``: response.created and response.in_progress first; a reasoning
    item's summary deltas; each function call as added / arguments delta / done / item
    done; the message's content part and text deltas; then the closing events and
    response.completed with the whole output.
    """

    def __init__(self, r: ResponsesRequest, id: str, item_id: str, created: int | None = None):
        self.r = r
        self.id = id
        self.item_id = item_id
        self.created = int(time.time()) if created is None else created
        self.first = True
        self.output_index = 0
        self.content_started = False
        self.calls_sent = False
        self.text = ""
        self.seq = 0
        self.thinking = ""
        self.reasoning_id = ""
        self.reasoning_started = False
        self.completed: list[Any] = []

    def _event(self, kind: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        data = {"type": kind, **data, "sequence_number": self.seq}
        self.seq += 1
        return kind, data

    def _response(self, status: str, output: list[Any], usage: Any) -> dict[str, Any]:
        return _response_object(self.r, self.id, status, output, usage, self.created)

    def _start(self) -> list[tuple[str, dict[str, Any]]]:
        if not self.first:
            return []
        self.first = False
        return [
            self._event("response.created", {"response": self._response("in_progress", [], None)}),
            self._event(
                "response.in_progress", {"response": self._response("in_progress", [], None)}
            ),
        ]

    def delta(self, d: Delta) -> list[tuple[str, dict[str, Any]]]:
        events = self._start()
        if d.thinking:
            events += self._thinking(d.thinking)
        if d.tool_calls:
            events += self._finish_reasoning()
            events += self._calls(d.tool_calls)
            self.calls_sent = True
        elif not self.calls_sent and d.content:
            events += self._text(d.content)
        return events

    def _thinking(self, thinking: str) -> list[tuple[str, dict[str, Any]]]:
        events = []
        if not self.reasoning_started:
            self.reasoning_started = True
            self.reasoning_id = new_id("rs_", 999999)
            item = {"id": self.reasoning_id, "type": "reasoning", "summary": []}
            events.append(
                self._event(
                    "response.output_item.added", {"output_index": self.output_index, "item": item}
                )
            )
        self.thinking += thinking
        events.append(
            self._event(
                "response.reasoning_summary_text.delta",
                {
                    "item_id": self.reasoning_id,
                    "output_index": self.output_index,
                    "summary_index": 0,
                    "delta": thinking,
                },
            )
        )
        return events

    def _finish_reasoning(self) -> list[tuple[str, dict[str, Any]]]:
        if not self.reasoning_started:
            return []
        item = _reasoning_item(self.reasoning_id, self.thinking)
        index = self.output_index
        self.completed.append(item)
        events = [
            self._event(
                "response.reasoning_summary_text.done",
                {
                    "item_id": self.reasoning_id,
                    "output_index": index,
                    "summary_index": 0,
                    "text": self.thinking,
                },
            ),
            self._event("response.output_item.done", {"output_index": index, "item": item}),
        ]
        self.thinking, self.reasoning_id, self.reasoning_started = "", "", False
        self.output_index += 1
        return events

    def _calls(self, calls: Sequence[ToolCall]) -> list[tuple[str, dict[str, Any]]]:
        events = []
        converted = tool_calls(calls)
        for i, call in enumerate(converted):
            index = self.output_index + i
            fc_id = f"fc_{random.randrange(999999)}_{i}"
            item = _call_item(fc_id, call)
            self.completed.append(item)
            args = call["function"]["arguments"]
            events += [
                self._event(
                    "response.output_item.added",
                    {
                        "output_index": index,
                        "item": {**item, "status": "in_progress", "arguments": ""},
                    },
                ),
                self._event(
                    "response.function_call_arguments.delta",
                    {"item_id": fc_id, "output_index": index, "delta": args},
                ),
                self._event(
                    "response.function_call_arguments.done",
                    {"item_id": fc_id, "output_index": index, "arguments": args},
                ),
                self._event("response.output_item.done", {"output_index": index, "item": item}),
            ]
        self.output_index += len(converted)
        return events

    def _text(self, content: str) -> list[tuple[str, dict[str, Any]]]:
        events = self._finish_reasoning()
        if not self.content_started:
            self.content_started = True
            events += [
                self._event(
                    "response.output_item.added",
                    {
                        "output_index": self.output_index,
                        "item": {**_message_item(self.item_id, "", "in_progress"), "content": []},
                    },
                ),
                self._event(
                    "response.content_part.added",
                    {
                        "item_id": self.item_id,
                        "output_index": self.output_index,
                        "content_index": 0,
                        "part": _output_text(""),
                    },
                ),
            ]
        self.text += content
        events.append(
            self._event(
                "response.output_text.delta",
                {
                    "item_id": self.item_id,
                    "output_index": self.output_index,
                    "content_index": 0,
                    "delta": content,
                    "logprobs": [],
                },
            )
        )
        return events

    def final(self, f: Final, completed_at: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        events = self._start()
        events += self._finish_reasoning()
        output = list(self.completed)
        if not self.calls_sent and self.content_started:
            common = {"item_id": self.item_id, "output_index": self.output_index}
            events += [
                self._event(
                    "response.output_text.done",
                    {**common, "content_index": 0, "text": self.text, "logprobs": []},
                ),
                self._event(
                    "response.content_part.done",
                    {**common, "content_index": 0, "part": _output_text(self.text)},
                ),
                self._event(
                    "response.output_item.done",
                    {
                        "output_index": self.output_index,
                        "item": _message_item(self.item_id, self.text),
                    },
                ),
            ]
        if self.content_started:
            output.append(_message_item(self.item_id, self.text))
        response = self._response("completed", output, _responses_usage(f))
        response["completed_at"] = int(time.time()) if completed_at is None else completed_at
        events.append(self._event("response.completed", {"response": response}))
        return events

    def failed(self, message: str) -> list[tuple[str, dict[str, Any]]]:
        """A stream that breaks after it started ends with response.failed (as Ollama's
        web-search writer does), its error in the response object."""
        events = self._start()
        response = self._response("failed", list(self.completed), None)
        response["error"] = {"code": "server_error", "message": message}
        events.append(self._event("response.failed", {"response": response}))
        return events
