"""Go semantics at render time: the values Ollama hands its templates, and Go's builtins.

Translated templates (see ``go_translate``) call only the ``go_*`` functions here
— never Python attribute access — so Go meaning survives the trip to Jinja2:
truthiness (empty string/slice/map is false), ``eq`` with several operands,
``len`` in bytes, ``%v`` printing (``<no value>`` for a missing map key), and
``json`` as Go's ``encoding/json`` writes it (compact, ``<>&`` escaped).

Ollama passes its templates a ``map[string]any`` root (missing keys are zero)
holding ``api`` structs (unknown fields are errors); ``GoStruct`` models the
latter. Structs that have a ``String()`` method in Ollama (tools, tool
functions, tool-call arguments) print as JSON, as they do there.
"""

from __future__ import annotations

import html
import json
import math
import re
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

MAX_RANGE = 100_000  # like Jinja's sandbox: `range N` and printf widths stay small
MAX_WIDTH = 10_000


class GoExecError(Exception):
    """A Go template execution error (wrong argument types, bad field, …)."""


class _Missing:
    """A key absent from a Go map: false, and printed as ``<no value>``."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


class GoStruct:
    """An Ollama ``api`` struct: fixed Go field names, JSON names, ``omitempty``."""

    __slots__ = ("fields", "spec", "stringer", "type_name")

    def __init__(
        self,
        type_name: str,
        spec: tuple[tuple[str, str, bool], ...],
        values: Mapping[str, Any],
        *,
        stringer: bool = False,
    ):
        self.type_name = type_name
        self.spec = spec  # (Go field, json name, omitempty)
        self.fields = {go: values.get(go) for go, _, _ in spec}
        self.stringer = stringer


class JSONList(list):
    """A Go slice type with a ``String()`` method that marshals JSON (``api.Tools``)."""


class NilJSONList(JSONList):
    """A nil ``api.Tools`` (no tools in the request): empty, and marshals as ``null``."""


class JSONMap(dict):
    """A Go map type with a ``String()`` method that marshals JSON (tool-call arguments)."""


# -- building the values Ollama passes ------------------------------------------------------------

_MESSAGE = (
    ("Role", "role", False),
    ("Content", "content", False),
    ("Thinking", "thinking", True),
    ("Images", "images", True),
    ("ToolCalls", "tool_calls", True),
    ("ToolName", "tool_name", True),
    ("ToolCallID", "tool_call_id", True),
)
_TOOL_CALL = (("ID", "id", True), ("Function", "function", False))
_TOOL_CALL_FUNCTION = (
    ("Index", "index", True),
    ("Name", "name", False),
    ("Arguments", "arguments", False),
)
_TOOL = (("Type", "type", False), ("Items", "items", True), ("Function", "function", False))
_TOOL_FUNCTION = (
    ("Name", "name", False),
    ("Description", "description", True),
    ("Parameters", "parameters", False),
)
_TOOL_PARAMETERS = (
    ("Type", "type", False),
    ("Defs", "$defs", True),
    ("Items", "items", True),
    ("Required", "required", True),
    ("Properties", "properties", False),
)
_TOOL_PROPERTY = (
    ("AnyOf", "anyOf", True),
    ("Type", "type", True),
    ("Items", "items", True),
    ("Description", "description", True),
    ("Enum", "enum", True),
    ("Properties", "properties", True),
)


def _get(data: Mapping[str, Any], go: str, json_name: str, default: Any) -> Any:
    if json_name in data:
        return data[json_name]
    return data.get(go, default)


def _struct(
    type_name: str,
    spec: tuple[tuple[str, str, bool], ...],
    data: Any,
    defaults: Mapping[str, Any],
    *,
    stringer: bool = False,
    convert: Mapping[str, Any] | None = None,
) -> GoStruct:
    if isinstance(data, GoStruct):
        return data
    if not isinstance(data, Mapping):
        raise TypeError(f"{type_name}: expected a mapping, got {type(data).__name__}")
    values: dict[str, Any] = {}
    for go, json_name, _ in spec:
        value = _get(data, go, json_name, None)
        if value is None:  # absent or null: Go's zero value
            value = defaults.get(go)
        if convert and go in convert and value is not None:
            value = convert[go](value)
        values[go] = plain(value) if not (convert and go in convert) else value
    return GoStruct(type_name, spec, values, stringer=stringer)


def plain(value: Any) -> Any:
    """Caller data → Go-like plain data: mappings → dict, sequences → list."""
    if isinstance(value, (GoStruct, str, bytes, bool, int, float)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [plain(v) for v in value]
    raise TypeError(f"cannot pass a {type(value).__name__} to a template")


def _tool_call(data: Any) -> GoStruct:
    function = _struct(
        "api.ToolCallFunction",
        _TOOL_CALL_FUNCTION,
        (data or {}).get("function", {}),
        {"Index": 0, "Name": "", "Arguments": {}},
        convert={"Arguments": lambda v: JSONMap(plain(v))},
    )
    return _struct("api.ToolCall", _TOOL_CALL, {**data, "function": function}, {"ID": ""})


def message(data: Mapping[str, Any]) -> GoStruct:
    return _struct(
        "*api.Message",
        _MESSAGE,
        data,
        {
            "Role": "",
            "Content": "",
            "Thinking": "",
            "Images": [],
            "ToolCalls": [],
            "ToolName": "",
            "ToolCallID": "",
        },
        convert={"ToolCalls": lambda calls: [_tool_call(c) for c in calls]},
    )


def _tool_property(data: Any) -> GoStruct:
    return _struct(
        "api.ToolProperty",
        _TOOL_PROPERTY,
        data,
        {"AnyOf": [], "Type": "", "Items": None, "Description": "", "Enum": [], "Properties": {}},
    )


def tool(data: Mapping[str, Any]) -> GoStruct:
    def parameters(p: Any) -> GoStruct:
        return _struct(
            "api.ToolFunctionParameters",
            _TOOL_PARAMETERS,
            p,
            {"Type": "", "Defs": None, "Items": None, "Required": [], "Properties": {}},
            stringer=True,
            convert={"Properties": lambda props: {k: _tool_property(v) for k, v in props.items()}},
        )

    def function(f: Any) -> GoStruct:
        return _struct(
            "api.ToolFunction",
            _TOOL_FUNCTION,
            f,
            {"Name": "", "Description": "", "Parameters": {}},
            stringer=True,
            convert={"Parameters": parameters},
        )

    return _struct(
        "api.Tool",
        _TOOL,
        data,
        {"Type": "", "Items": None, "Function": {}},
        stringer=True,
        convert={"Function": function},
    )


# -- Go semantics ----------------------------------------------------------------------------------


def truth(value: Any) -> bool:
    """Go's truth: false, 0, nil, and empty strings, slices and maps are false."""
    if value is None or value is MISSING:
        return False
    if isinstance(value, GoStruct):
        return True
    if isinstance(value, (bool, int, float)):
        return bool(value)
    if isinstance(value, (str, list, dict, tuple)):
        return len(value) > 0
    return bool(value)


def _type(value: Any) -> str:
    if isinstance(value, GoStruct):
        return value.type_name
    return {
        bool: "bool",
        int: "int",
        float: "float64",
        str: "string",
        dict: "map[string]interface {}",
        list: "[]interface {}",
        JSONList: "api.Tools",
        JSONMap: "api.ToolCallFunctionArguments",
    }.get(
        type(value), "interface {}" if value is None or value is MISSING else type(value).__name__
    )


def field(value: Any, *names: str) -> Any:
    for name in names:
        if isinstance(value, GoStruct):
            if name not in value.fields:
                raise GoExecError(f"can't evaluate field {name} in type {value.type_name}")
            value = value.fields[name]
        elif isinstance(value, dict):
            value = value.get(name, MISSING)
        elif value is None or value is MISSING:
            raise GoExecError(f"nil pointer evaluating interface {{}}.{name}")
        else:
            raise GoExecError(f"can't evaluate field {name} in type {_type(value)}")
    return value


def range_items(value: Any) -> Iterator[tuple[Any, Any]]:
    if value is None or value is MISSING:
        return iter(())
    if isinstance(value, (list, tuple)):
        return enumerate(value)
    if isinstance(value, dict):
        return iter(sorted(value.items(), key=lambda kv: kv[0]))
    if isinstance(value, int) and not isinstance(value, bool):
        if value > MAX_RANGE:
            raise GoExecError(f"range over {value}: more than {MAX_RANGE} iterations")
        return ((i, i) for i in range(value))
    raise GoExecError(f"range can't iterate over {format_value(value)}")


def _format_float(x: float, *, json_form: bool = False) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "0"
    r = repr(x)
    mantissa = r.partition("e")[0]
    digits = mantissa.replace("-", "").replace(".", "").lstrip("0") or "0"
    digits = digits.rstrip("0") or "0"
    exp = math.floor(math.log10(abs(x)))
    # correct rounding edge cases of log10
    if abs(x) >= 10 ** (exp + 1):
        exp += 1
    elif abs(x) < 10**exp:
        exp -= 1
    lo = -7 if json_form else -5
    if lo < exp < 21:
        text = f"{x:.{max(0, len(digits) - 1 - exp)}f}"
        return text
    sign = "-" if x < 0 else ""
    frac = digits[1:]
    esign = "-" if exp < 0 else "+"
    ex = f"{abs(exp):02d}" if not json_form else str(abs(exp))
    return f"{sign}{digits[0]}{'.' + frac if frac else ''}e{esign}{ex}"


def format_value(value: Any) -> str:
    """Go's ``%v`` as text/template prints values."""
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, (JSONList, JSONMap)) or (isinstance(value, GoStruct) and value.stringer):
        return to_json(value)
    if isinstance(value, GoStruct):
        inner = " ".join(format_value(v) for v in value.fields.values())
        return ("&{" if value.type_name.startswith("*") else "{") + inner + "}"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{format_value(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


_JSON_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _json_string(s: str) -> str:
    out = json.dumps(s, ensure_ascii=False)
    return re.sub("[<>&\u2028\u2029]", lambda m: _JSON_ESCAPES[m.group()], out)


def _empty(value: Any) -> bool:
    return (
        value is None or value is MISSING or (not isinstance(value, GoStruct) and not truth(value))
    )


def to_json(value: Any) -> str:
    """``encoding/json.Marshal`` as Ollama's ``json`` template function uses it."""
    if value is None or value is MISSING or isinstance(value, NilJSONList):
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_float(value, json_form=True)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, GoStruct):
        parts = [
            f"{_json_string(json_name)}:{to_json(value.fields[go])}"
            for go, json_name, omit in value.spec
            if not (omit and _empty(value.fields[go]))
        ]
        return "{" + ",".join(parts) + "}"
    if isinstance(value, Mapping):
        items = sorted(value.items()) if not isinstance(value, JSONMap) else value.items()
        return "{" + ",".join(f"{_json_string(str(k))}:{to_json(v)}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    raise GoExecError(f"json: unsupported type {_type(value)}")


# -- builtins ------------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None or value is MISSING:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "other"


def go_eq(arg1: Any, *args: Any) -> bool:
    if not args:
        raise GoExecError("missing argument for comparison")
    k1 = _kind(arg1)
    if k1 == "other":
        raise GoExecError(f"non-comparable type {format_value(arg1)}: {_type(arg1)}")
    for arg in args:
        k2 = _kind(arg)
        if k2 == "other":
            raise GoExecError(f"non-comparable type {format_value(arg)}: {_type(arg)}")
        if k1 == "nil" or k2 == "nil":
            if k1 == k2:
                return True
            continue
        if k1 != k2:
            raise GoExecError("incompatible types for comparison")
        if arg1 == arg:
            return True
    return False


def go_ne(arg1: Any, arg2: Any) -> bool:
    return not go_eq(arg1, arg2)


def _ordered(a: Any, b: Any) -> None:
    ka, kb = _kind(a), _kind(b)
    if ka not in ("int", "float", "string") or kb not in ("int", "float", "string"):
        raise GoExecError("invalid type for comparison")
    if ka != kb:
        raise GoExecError("incompatible types for comparison")


def go_lt(a: Any, b: Any) -> bool:
    _ordered(a, b)
    return bool(a < b)


def go_le(a: Any, b: Any) -> bool:
    _ordered(a, b)
    return bool(a <= b)


def go_gt(a: Any, b: Any) -> bool:
    _ordered(a, b)
    return bool(a > b)


def go_ge(a: Any, b: Any) -> bool:
    _ordered(a, b)
    return bool(a >= b)


def go_len(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, (list, tuple, dict)):
        return len(value)
    raise GoExecError(f"len of type {_type(value)}")


def _int_index(i: Any) -> int:
    if isinstance(i, bool) or not isinstance(i, int):
        raise GoExecError(f"cannot index slice/array with type {_type(i)}")
    return i


def go_index(value: Any, *indexes: Any) -> Any:
    for i in indexes:
        if isinstance(value, dict):
            value = value.get(i, MISSING)
        elif isinstance(value, (list, tuple, str)):
            seq: Any = value.encode("utf-8") if isinstance(value, str) else value
            n = _int_index(i)
            if not 0 <= n < len(seq):
                raise GoExecError(f"error calling index: index out of range: {n}")
            value = seq[n]
        elif value is None or value is MISSING:
            raise GoExecError("error calling index: index of untyped nil")
        else:
            raise GoExecError(f"error calling index: can't index item of type {_type(value)}")
    return value


def go_slice(value: Any, *indexes: Any) -> Any:
    if isinstance(value, str):
        seq: Any = value.encode("utf-8")
        if len(indexes) > 2:
            raise GoExecError("error calling slice: cannot 3-index slice a string")
    elif isinstance(value, (list, tuple)):
        seq = value
    elif value is None or value is MISSING:
        raise GoExecError("error calling slice: slice of untyped nil")
    else:
        raise GoExecError(f"error calling slice: can't slice item of type {_type(value)}")
    if len(indexes) > 3:
        raise GoExecError(f"error calling slice: too many slice indexes: {len(indexes)}")
    idx = [_int_index(i) for i in indexes]
    bounds = [0, len(seq)]
    bounds[: len(idx)] = idx[:2]
    lo, hi = bounds[0], bounds[1]
    cap = idx[2] if len(idx) == 3 else len(seq)
    if not 0 <= lo <= hi <= cap <= len(seq):
        raise GoExecError(f"error calling slice: index out of range: {lo}:{hi}")
    out = seq[lo:hi]
    return out.decode("utf-8", errors="replace") if isinstance(out, bytes) else list(out)


def go_json(value: Any) -> str:
    return to_json(value)


def go_print(*args: Any) -> str:
    """``fmt.Sprint``: a space between operands when neither side is a string."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if i > 0 and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(format_value(arg))
    return "".join(out)


def go_println(*args: Any) -> str:
    return " ".join(format_value(a) for a in args) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")


def go_printf(fmt: Any, *args: Any) -> str:
    if not isinstance(fmt, str):
        raise GoExecError("printf: format must be a string")
    arg_iter = iter(args)
    used = 0

    def verb(m: re.Match[str]) -> str:
        nonlocal used
        flags, width, prec, v = m.group(1), m.group(2), m.group(3), m.group(4)
        if v == "%":
            return "%"
        if max(int(width or 0), int(prec or 0)) > MAX_WIDTH:
            raise GoExecError(f"printf: width or precision larger than {MAX_WIDTH}")
        try:
            arg = next(arg_iter)
        except StopIteration:
            return f"%!{v}(MISSING)"
        used += 1
        if v in "vs":
            text = format_value(arg)
            if prec is not None:
                text = text[: int(prec)]
        elif v == "q":
            text = json.dumps(
                arg if isinstance(arg, str) else format_value(arg), ensure_ascii=False
            )
        elif v == "d" and isinstance(arg, int):
            text = str(arg)
        elif v == "t" and isinstance(arg, bool):
            text = format_value(arg)
        elif v in "feEgG" and isinstance(arg, (int, float)):
            text = f"%{flags}.{prec or 6}{v}" % arg if v in "feE" else _format_float(float(arg))
        elif v in "xX" and isinstance(arg, (int, str)):
            text = arg.encode().hex() if isinstance(arg, str) else f"{arg:x}"
            text = text.upper() if v == "X" else text
        elif v == "c" and isinstance(arg, int):
            text = chr(arg)
        else:
            return f"%!{v}({_type(arg)}={format_value(arg)})"
        if width:
            text = (
                text.ljust(int(width))
                if "-" in flags
                else text.rjust(int(width), "0" if "0" in flags else " ")
            )
        return text

    out = _VERB.sub(verb, fmt)
    extra = list(arg_iter)
    if extra:
        out += "%!(EXTRA " + ", ".join(f"{_type(a)}={format_value(a)}" for a in extra) + ")"
    return out


def go_html(*args: Any) -> str:
    text = go_print(*args)
    return html.escape(text, quote=True).replace("&quot;", "&#34;").replace("&#x27;", "&#39;")


def go_js(*args: Any) -> str:
    text = go_print(*args)
    table = {
        "\\": "\\\\",
        "'": "\\'",
        '"': '\\"',
        "<": "\\u003C",
        ">": "\\u003E",
        "&": "\\u0026",
        "=": "\\u003D",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
    }
    return "".join(table.get(c, c) for c in text)


def go_urlquery(*args: Any) -> str:
    return urllib.parse.quote_plus(go_print(*args))


def go_fail(message: str) -> None:
    raise GoExecError(message)


def go_output(value: Any) -> str:
    """What ``{{ pipeline }}`` writes."""
    return format_value(value)


BUILTINS: dict[str, Any] = {
    "go_truth": truth,
    "go_field": field,
    "go_range": range_items,
    "go_output": go_output,
    "go_eq": go_eq,
    "go_ne": go_ne,
    "go_lt": go_lt,
    "go_le": go_le,
    "go_gt": go_gt,
    "go_ge": go_ge,
    "go_len": go_len,
    "go_index": go_index,
    "go_slice": go_slice,
    "go_json": go_json,
    "go_print": go_print,
    "go_printf": go_printf,
    "go_println": go_println,
    "go_html": go_html,
    "go_js": go_js,
    "go_urlquery": go_urlquery,
    "go_fail": go_fail,
}
