"""Anthropic's Messages API (``/v1/messages``) as a pure translation, as Ollama's ``anthropic``
package is: an Anthropic request becomes Ollama's ``ol.ChatRequest`` (which the service
answers like any ``/api/chat``), and the service's events become Anthropic's response body
or its server-sent event sequence. No I/O, no Starlette, no sampling or template logic.

What mfc means by each field is what Ollama means (``anthropic/anthropic.go``):

- ``system`` (a string, or text blocks joined without a separator) is a system message;
- text blocks of a message are joined; ``tool_use`` blocks are tool calls; ``tool_result``
  blocks are ``tool`` messages (placed before the user's text, in block order), their
  content arrays flattened to their text; a ``thinking`` block is the message's thinking
  (its signature is not checked);
- ``max_tokens`` is ``num_predict``, ``stop_sequences`` is ``stop``; ``temperature``,
  ``top_p``, ``top_k`` keep their names; ``thinking`` enabled/disabled is ``think``
  true/false, otherwise ``output_config.effort`` picks a level; ``budget_tokens``,
  ``tool_choice`` and ``metadata`` are accepted and ignored;
- ``stop_reason`` is ``tool_use`` when the answer calls a tool, else ``end_turn`` for
  Ollama's ``stop``, ``max_tokens`` for ``length``, and ``stop_sequence`` (with the string in
  ``stop_sequence``) when one of ``stop_sequences`` ended the answer — the engine reports
  which one matched; Ollama cannot tell a stop sequence from the end of the turn.

Where mfc differs, it says so with a 400: a server tool (``web_search_*``: Ollama runs the
search on ollama.com) and an image whose source is not base64.

Exceptions::

    ValueError
     └── ol.BadRequest   status 400; every problem of a request body
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mfc.server import ollama as ol

__all__ = [
    "ContentBlock",
    "CountTokensRequest",
    "MessageParam",
    "MessagesRequest",
    "StreamConverter",
    "Tool",
    "count_tokens_response",
    "error_body",
    "error_type",
    "estimate_tokens",
    "image_fields",
    "message_id",
    "messages_request",
    "messages_response",
    "request_id",
    "stop_reason",
]


# --- ids and errors -----------------------------------------------------------------------------


def _id(prefix: str) -> str:
    """``prefix_`` and 24 hex digits (12 random bytes), as Ollama's ``generateID``."""
    return f"{prefix}_{secrets.token_hex(12)}"


def message_id() -> str:
    return _id("msg")


def request_id() -> str:
    return _id("req")


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status (Ollama's ``NewError`` table, plus 413)."""
    return _ERROR_TYPES.get(status, "api_error")


def error_body(status: int, message: str, req_id: str | None = None) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    out: dict[str, Any] = {
        "type": "error",
        "error": {"type": error_type(status), "message": message},
    }
    if req_id:
        out["request_id"] = req_id
    return out


# --- request models -----------------------------------------------------------------------------


class _In(BaseModel):
    """Go's decoding, as Ollama reads these bodies: strict types, ``null`` = absent, and
    unknown fields ignored (SDKs and Claude Code send many: ``cache_control``, ``metadata``,
    ``context_management``, ``betas``...)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_absent(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {k: v for k, v in data.items() if v is not None}


class ImageSource(_In):
    type: str = ""
    media_type: str = ""
    data: str = ""
    url: str = ""


class ContentBlock(_In):
    """One block of a message: text, image, tool_use, tool_result, thinking (others ignored)."""

    type: str = ""
    text: str | None = None
    source: ImageSource | None = None
    id: str = ""
    name: str = ""
    input: dict[str, Any] | None = None
    tool_use_id: str = ""
    content: Any = None
    is_error: bool = False
    thinking: str | None = None
    signature: str = ""


class MessageParam(_In):
    """A turn; a plain string ``content`` is one text block."""

    role: str = ""
    content: list[ContentBlock] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _string_is_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("content"), str):
            return {**data, "content": [{"type": "text", "text": data["content"]}]}
        return data


class Tool(_In):
    type: str = ""  # "" or "custom": a client tool; "web_search_...": a server tool
    name: str = ""
    description: str = ""
    input_schema: dict[str, Any] | None = None


class ToolChoice(_In):
    type: str = ""
    name: str = ""
    disable_parallel_tool_use: bool = False


class ThinkingConfig(_In):
    type: str = ""  # "enabled", "disabled", "adaptive"
    budget_tokens: int = 0


class OutputConfig(_In):
    effort: str = ""


class CountTokensRequest(_In):
    model: str = ""
    messages: list[MessageParam] = Field(default_factory=list)
    system: Any = None  # a string or a list of text blocks
    tools: list[Tool] = Field(default_factory=list)
    thinking: ThinkingConfig | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: int = 0
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] = Field(default_factory=list)
    tool_choice: ToolChoice | None = None  # accepted and ignored, as by Ollama
    metadata: dict[str, Any] | None = None  # accepted and ignored
    output_config: OutputConfig | None = None


# --- request translation ------------------------------------------------------------------------


def check(req: MessagesRequest) -> None:
    """The middleware's checks before translation, with Ollama's texts."""
    if not req.model:
        raise ol.BadRequest("model is required")
    if req.max_tokens <= 0:
        raise ol.BadRequest("max_tokens is required and must be positive")
    if not req.messages:
        raise ol.BadRequest("messages is required")


def messages_request(req: MessagesRequest) -> ol.ChatRequest:
    """Ollama's ``FromMessagesRequest``: the Anthropic request as a native chat request."""
    check(req)
    messages: list[dict[str, Any]] = []
    system = system_text(req.system)
    if system:
        messages.append({"role": "system", "content": system})
    for i, msg in enumerate(req.messages):
        messages.extend(_message(msg, i))
    options: dict[str, Any] = {"num_predict": req.max_tokens}
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(req, name)
        if value is not None:
            options[name] = value
    if req.stop_sequences:
        options["stop"] = list(req.stop_sequences)
    body: dict[str, Any] = {
        "model": req.model,
        "messages": messages,
        "options": options,
        "stream": req.stream,
    }
    tools = [_tool(t, i) for i, t in enumerate(req.tools)]
    if tools:
        body["tools"] = tools
    think = _think(req)
    if think is not None:
        body["think"] = think
    try:
        return ol.ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ol.BadRequest(f"{where}: {first['msg']}") from None


def system_text(system: Any) -> str:
    """A string, or the text of its ``text`` blocks joined without a separator."""
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "".join(
            b["text"]
            for b in system
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        )
    return ""


def _message(msg: MessageParam, i: int) -> list[dict[str, Any]]:
    """Ollama's ``convertMessage``: one Anthropic turn as native messages."""
    role = msg.role.lower()
    text: list[str] = []
    images: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking = ""
    results: list[dict[str, Any]] = []
    for j, block in enumerate(msg.content):
        where = f"messages[{i}].content[{j}]"
        if block.type == "text":
            text.append(block.text or "")
        elif block.type == "image":
            images.append(_image(block.source, where))
        elif block.type == "tool_use":
            if not block.id:
                raise ol.BadRequest("tool_use block missing required 'id' field")
            if not block.name:
                raise ol.BadRequest("tool_use block missing required 'name' field")
            calls.append(
                {"id": block.id, "function": {"name": block.name, "arguments": block.input or {}}}
            )
        elif block.type == "tool_result":
            content, result_images = _tool_result(block.content, where)
            result: dict[str, Any] = {
                "role": "tool",
                "content": content,
                "tool_call_id": block.tool_use_id,
            }
            if result_images:
                result["images"] = result_images
            results.append(result)
        elif block.type == "thinking":
            thinking = block.thinking or ""
        # other blocks (redacted_thinking, document, server tool results...) are skipped
    out: list[dict[str, Any]] = []
    if role == "user":
        out.extend(results)
    joined = "".join(text)
    if joined or images or calls or thinking:
        m: dict[str, Any] = {"role": role, "content": joined}
        if images:
            m["images"] = images
        if calls:
            m["tool_calls"] = calls
        if thinking:
            m["thinking"] = thinking
        out.append(m)
    if role != "user":
        out.extend(results)
    return out


def image_fields(req: MessagesRequest) -> list[str]:
    """Where each image of ``messages_request(req)`` came from (``messages[i].content[j]``, or
    ``…content[j].content[k]`` inside a tool_result), in its order: a user turn's tool results
    come before its own blocks, an assistant turn's after (as `_message` orders them)."""
    out: list[str] = []
    for i, msg in enumerate(req.messages):
        own: list[str] = []
        results: list[str] = []
        for j, block in enumerate(msg.content):
            where = f"messages[{i}].content[{j}]"
            if block.type == "image":
                own.append(where)
            elif block.type == "tool_result" and isinstance(block.content, list):
                for k, item in enumerate(block.content):
                    if isinstance(item, dict) and item.get("type") == "image":
                        results.append(f"{where}.content[{k}]")
        out.extend(results + own if msg.role.lower() == "user" else own + results)
    return out


def _image(source: ImageSource | None, where: str) -> str:
    if source is None:
        raise ol.BadRequest("invalid image source")
    if source.type != "base64":
        raise ol.BadRequest(
            f"{where}: invalid image source type: {source.type}. Only base64 images are "
            "supported (mfc serve fetches nothing: send the image's bytes as a base64 source)."
        )
    try:
        base64.b64decode(source.data.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        raise ol.BadRequest(f"{where}: invalid base64 image data") from None
    return source.data


def _tool_result(content: Any, where: str) -> tuple[str, list[str]]:
    """A tool_result's content: a string, or the text of its blocks joined (images kept)."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        return "", []
    text: list[str] = []
    images: list[str] = []
    for item in content:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "text" and isinstance(item.get("text"), str):
            text.append(item["text"])
        elif item.get("type") == "image":
            source = item.get("source")
            if not isinstance(source, dict):
                raise ol.BadRequest("invalid tool_result image source")
            try:
                parsed = ImageSource.model_validate(source)
            except ValidationError:
                raise ol.BadRequest("invalid tool_result image source") from None
            images.append(_image(parsed, where))
    return "".join(text), images


def _tool(tool: Tool, i: int) -> dict[str, Any]:
    """A client tool as Ollama's function tool; its ``input_schema`` is the parameters."""
    if tool.type not in ("", "custom"):
        raise ol.BadRequest(
            f"tools[{i}]: server tool type {tool.type!r} is not supported by mfc "
            "(Ollama runs web search on ollama.com; mfc serves local models only)"
        )
    if not tool.name:
        raise ol.BadRequest(f"tools[{i}].name: required")
    out = {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.input_schema or {},
        },
    }
    try:
        ol.Tool.model_validate(out)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = [str(p) for p in first["loc"][2:]]  # below function.parameters
        where = ".".join(["input_schema", *loc])
        raise ol.BadRequest(
            f"invalid input_schema for tool {tool.name!r}: {where}: {first['msg']}"
        ) from None
    return out


def _think(req: MessagesRequest) -> bool | str | None:
    """``thinking`` enabled/disabled wins; otherwise ``output_config.effort`` (xhigh is high)."""
    if req.thinking is not None and req.thinking.type == "enabled":
        return True
    if req.thinking is not None and req.thinking.type == "disabled":
        return False
    effort = (req.output_config.effort if req.output_config else "").strip().lower()
    if effort == "xhigh":
        effort = "high"
    if effort in ("high", "medium", "low", "max"):
        return effort
    return None


# --- token estimate (message_start and /v1/messages/count_tokens) -------------------------------


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _block_len(block: ContentBlock) -> int:
    n = _utf8_len(block.text or "") + _utf8_len(block.thinking or "")
    if block.type in ("tool_use", "tool_result"):
        n += _utf8_len(_compact(block.model_dump(exclude_defaults=True, exclude_none=True)))
    return n


def estimate_tokens(req: CountTokensRequest) -> int:
    """Ollama's ``EstimateCountTokens``: UTF-8 bytes of system, roles, blocks and tools over 4
    (at least 1 when there is any message or system)."""
    total = 0
    if isinstance(req.system, str):
        total += _utf8_len(req.system)
    elif isinstance(req.system, list):
        for item in req.system:
            if isinstance(item, dict):
                try:
                    total += _block_len(ContentBlock.model_validate(item))
                except ValidationError:
                    continue
    elif req.system is not None:
        total += _utf8_len(_compact(req.system))
    for msg in req.messages:
        total += _utf8_len(msg.role) + sum(_block_len(b) for b in msg.content)
    for tool in req.tools:
        schema = _compact(tool.input_schema) if tool.input_schema is not None else ""
        total += _utf8_len(tool.name) + _utf8_len(tool.description) + _utf8_len(schema)
    tokens = total // 4
    if tokens == 0 and (req.messages or req.system is not None):
        tokens = 1
    return tokens


def count_tokens_response(tokens: int) -> dict[str, int]:
    return {"input_tokens": int(tokens)}


# --- responses ----------------------------------------------------------------------------------


class Call(Protocol):
    """A tool call as this module reads it (the service's ``ToolCall`` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def arguments(self) -> Mapping[str, Any]: ...


def stop_reason(done_reason: str, has_tool_calls: bool, stop_sequence: str = "") -> str | None:
    """Ollama's ``mapStopReason``, and ``stop_sequence`` when one of the request's stop
    strings ended the answer (Ollama cannot tell it from the end of the turn; mfc's engine
    reports which string matched)."""
    if has_tool_calls:
        return "tool_use"
    if done_reason == "stop":
        return "stop_sequence" if stop_sequence else "end_turn"
    if done_reason == "length":
        return "max_tokens"
    return "stop_sequence" if done_reason else None


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"input_tokens": int(input_tokens), "output_tokens": int(output_tokens)}


def _tool_use(call: Call, with_input: bool = True) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": call.id,
        "name": call.name,
        "input": dict(call.arguments) if with_input else {},
    }


def messages_response(
    msg_id: str,
    model: str,
    *,
    content: str,
    thinking: str,
    tool_calls: Sequence[Call],
    done_reason: str,
    input_tokens: int,
    output_tokens: int,
    stop_sequence: str = "",
) -> dict[str, Any]:
    """Ollama's ``ToMessagesResponse``: blocks in the order thinking, text, tool_use.

    A thinking block carries ``"signature": ""`` (the SDK's type has the field; Ollama leaves
    it out): mfc does not sign thinking, and does not check signatures it is sent back.
    """
    blocks: list[dict[str, Any]] = []
    if thinking:
        blocks.append({"type": "thinking", "thinking": thinking, "signature": ""})
    if content:
        blocks.append({"type": "text", "text": content})
    blocks.extend(_tool_use(c) for c in tool_calls)
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason(done_reason, bool(tool_calls), stop_sequence),
        "stop_sequence": stop_sequence if stop_sequence and not tool_calls else None,
        "usage": _usage(input_tokens, output_tokens),
    }


# --- streaming ----------------------------------------------------------------------------------


Event = tuple[str, dict[str, Any]]


@dataclass
class StreamConverter:
    """Ollama's ``StreamConverter``: the service's deltas as Anthropic's event sequence.

    ``message_start``; then content blocks, each ``content_block_start``, its deltas and
    ``content_block_stop``, numbered from 0: one thinking block (thinking after the answer
    began is dropped, as Ollama drops it), text blocks, and a block per tool call whose
    arguments arrive whole in one ``input_json_delta``; then ``message_delta`` (stop_reason,
    usage) and ``message_stop``. ``input_tokens`` in ``message_start`` is the estimate
    (the prompt is counted by the runner later); ``message_delta`` has the real counts.
    """

    id: str
    model: str
    estimated_input_tokens: int = 0
    _started: bool = False
    _index: int = 0
    _open: str | None = None  # "thinking" | "text"
    _thinking_done: bool = False
    _calls: int = 0
    _seen: set[str] = field(default_factory=set)

    def _start(self) -> Iterator[Event]:
        if self._started:
            return
        self._started = True
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(self.estimated_input_tokens, 0),
        }
        yield "message_start", {"type": "message_start", "message": message}

    def _close(self) -> Iterator[Event]:
        if self._open is None:
            return
        if self._open == "thinking":
            self._thinking_done = True
        yield "content_block_stop", {"type": "content_block_stop", "index": self._index}
        self._index += 1
        self._open = None

    def _begin(self, block: dict[str, Any]) -> Event:
        return (
            "content_block_start",
            {"type": "content_block_start", "index": self._index, "content_block": block},
        )

    def _delta(self, delta: dict[str, Any]) -> Event:
        return (
            "content_block_delta",
            {"type": "content_block_delta", "index": self._index, "delta": delta},
        )

    def delta(self, content: str, thinking: str, tool_calls: Sequence[Call]) -> list[Event]:
        """The events for one delta of the service (any part may be empty)."""
        out = list(self._start())
        if thinking and not self._thinking_done:
            if self._open == "text":
                out.extend(self._close())
            if self._open is None:
                self._open = "thinking"
                out.append(self._begin({"type": "thinking", "thinking": "", "signature": ""}))
            out.append(self._delta({"type": "thinking_delta", "thinking": thinking}))
        if content:
            if self._open == "thinking":
                out.extend(self._close())
            if self._open is None:
                self._open = "text"
                out.append(self._begin({"type": "text", "text": ""}))
            out.append(self._delta({"type": "text_delta", "text": content}))
        for call in tool_calls:
            if call.id in self._seen:
                continue
            self._seen.add(call.id)
            out.extend(self._close())
            out.append(self._begin(_tool_use(call, with_input=False)))
            partial = _compact(dict(call.arguments))
            out.append(self._delta({"type": "input_json_delta", "partial_json": partial}))
            out.append(("content_block_stop", {"type": "content_block_stop", "index": self._index}))
            self._index += 1
            self._calls += 1
        return out

    def final(
        self, done_reason: str, input_tokens: int, output_tokens: int, stop_sequence: str = ""
    ) -> list[Event]:
        """Close the open block; ``message_delta`` with the stop reason and usage; the end."""
        out = list(self._start())
        out.extend(self._close())
        called = self._calls > 0
        delta = {
            "stop_reason": stop_reason(done_reason, called, stop_sequence),
            "stop_sequence": stop_sequence if stop_sequence and not called else None,
        }
        out.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": delta,
                    "usage": _usage(input_tokens, output_tokens),
                },
            )
        )
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    @staticmethod
    def error(status: int, message: str) -> Event:
        """A failure after the stream began: Anthropic's ``error`` event."""
        body = {"type": "error", "error": {"type": error_type(status), "message": message}}
        return "error", body
