"""The parameter table: the one source for PARAMETER names, types, defaults and ranges.

Used by the semantic pass (Modelfile PARAMETER lines), the runtime (`/set
parameter`, llama.cpp options) and the builder (`mfc show --modelfile`).
Defaults are Ollama's. Typing follows Ollama's (Go) rules: ints are decimal
integers, floats accept exponents, bools accept Go's ParseBool forms.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from mfc.modelfile.chars import describe, escape, is_printable

ParamType = Literal["int", "float", "bool", "str"]
Phase = Literal["load", "sampling"]
Scalar = int | float | bool | str


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    type: ParamType
    default: Scalar | tuple[str, ...] | None  # None: decided at run time (see doc)
    minimum: float | None = None
    maximum: float | None = None
    phase: Phase = "sampling"  # load: model/context creation; sampling: per generation
    repeatable: bool = False  # several lines gather into a tuple (stop)
    deprecated: bool = False  # accepted with a warning and dropped (as Ollama does)
    doc: str = ""


def _p(name: str, type_: ParamType, default, lo=None, hi=None, phase: Phase = "sampling", doc=""):
    return ParamSpec(name, type_, default, lo, hi, phase, doc=doc)


def _deprecated(name: str, type_: ParamType) -> ParamSpec:
    return ParamSpec(name, type_, None, deprecated=True, doc="deprecated in Ollama; ignored")


_TABLE: tuple[ParamSpec, ...] = (
    # load time: changing one reloads the model
    _p(
        "num_ctx",
        "int",
        4096,
        1,
        phase="load",
        doc="context window in tokens; the runtime "
        "reads MFC_CONTEXT_LENGTH for the default and clamps to the trained context",
    ),
    _p("num_batch", "int", 512, 1, phase="load", doc="prompt processing batch size"),
    _p("num_gpu", "int", -1, -1, phase="load", doc="layers to offload to the GPU; -1 = auto"),
    _p("main_gpu", "int", 0, 0, phase="load", doc="GPU index for the main model"),
    _p("use_mmap", "bool", True, phase="load", doc="memory-map the model file"),
    _p("num_thread", "int", 0, 0, phase="load", doc="CPU threads; 0 = auto"),
    _p(
        "draft_num_predict",
        "int",
        0,
        0,
        phase="load",
        doc="tokens the DRAFT model proposes per step; 0 = no speculative decoding",
    ),
    # sampling: per generation, no reload
    _p("num_keep", "int", 4, -1, doc="prompt tokens kept when the context shifts; -1 = all"),
    _p("seed", "int", -1, doc="random seed; -1 (any negative) = random"),
    _p(
        "num_predict",
        "int",
        -1,
        -2,
        doc="max tokens to generate; -1 = until a stop, -2 = fill the context",
    ),
    _p("top_k", "int", 40, 0, doc="sample from the k most likely tokens; 0 = all"),
    _p("top_p", "float", 0.9, 0.0, 1.0, doc="nucleus sampling threshold"),
    _p("min_p", "float", 0.0, 0.0, 1.0, doc="minimum probability relative to the top token"),
    _p("typical_p", "float", 1.0, 0.0, 1.0, doc="locally typical sampling; 1.0 = off"),
    _p(
        "repeat_last_n",
        "int",
        64,
        -1,
        doc="tokens looked back for penalties; -1 = num_ctx, 0 = off",
    ),
    _p("temperature", "float", 0.8, 0.0, doc="randomness; 0 = greedy"),
    _p("repeat_penalty", "float", 1.0, 0.0, doc="penalty for repeated tokens; 1.0 = off"),
    _p("presence_penalty", "float", 0.0, doc="penalty for tokens already present"),
    _p("frequency_penalty", "float", 0.0, doc="penalty proportional to token frequency"),
    ParamSpec("stop", "str", (), repeatable=True, doc="stop sequence; repeat the line for several"),
    # deprecated in Ollama: a warning, then dropped
    _deprecated("penalize_newline", "bool"),
    _deprecated("low_vram", "bool"),
    _deprecated("f16_kv", "bool"),
    _deprecated("logits_all", "bool"),
    _deprecated("vocab_only", "bool"),
    _deprecated("use_mlock", "bool"),
    _deprecated("mirostat", "int"),
    _deprecated("mirostat_tau", "float"),
    _deprecated("mirostat_eta", "float"),
)

PARAMETERS: Mapping[str, ParamSpec] = {p.name: p for p in _TABLE}

# PARAMETER names that are really instructions (Ollama treats `PARAMETER system x` as SYSTEM).
INSTRUCTION_LIKE = {
    "system": "SYSTEM",
    "template": "TEMPLATE",
    "model": "FROM",
    "from": "FROM",
    "adapter": "ADAPTER",
    "license": "LICENSE",
    "message": "MESSAGE",
    "renderer": "RENDERER",
    "parser": "PARSER",
    "requires": "REQUIRES",
    "draft": "DRAFT",
}


class ParamValueError(ValueError):
    """A value that does not fit its parameter; ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None, out_of_range: bool = False):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.out_of_range = out_of_range


_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_FLOAT32_MAX = 3.4028234663852886e38
_INT64 = (-(2**63), 2**63 - 1)


def suggest(name: str) -> str | None:
    """The closest known parameter name, for 'did you mean'."""
    if name.lower() in PARAMETERS:
        return name.lower()
    match = difflib.get_close_matches(name.lower(), PARAMETERS, n=1, cutoff=0.7)
    return match[0] if match else None


def parse_param_value(spec: ParamSpec, text: str) -> Scalar:
    """Type one value by the table's rules; raise ParamValueError with a fix.

    Messages quote the value with invisible characters escaped (`\\u00a00.7`):
    quoted as is, an NBSP would read as a plain space, or as nothing.
    """
    if spec.type == "str":
        return text
    if spec.type == "bool":
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ParamValueError(
            f"`{spec.name}` takes true or false, not `{escape(text)}`",
            _invisible_hint(text)
            or "use true or false (also accepted: 1 t T TRUE True, 0 f F FALSE False)",
        )
    if spec.type == "int":
        if not _INT.fullmatch(text):
            hint = "a decimal integer, e.g. `4096`"
            if _FLOAT.fullmatch(text):
                hint = f"`{spec.name}` is a whole number: drop the fraction or exponent"
            hint = _invisible_hint(text) or hint
            raise ParamValueError(f"`{spec.name}` takes an integer, not `{escape(text)}`", hint)
        value: int | float = int(text)
        if not _INT64[0] <= value <= _INT64[1]:
            raise ParamValueError(f"`{escape(text)}` does not fit a 64-bit integer", None, True)
    else:
        if not _FLOAT.fullmatch(text):
            raise ParamValueError(
                f"`{spec.name}` takes a number, not `{escape(text)}`",
                _invisible_hint(text) or "e.g. `0.7`, `1`, `1e-3`",
            )
        value = float(text)
        if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
            raise ParamValueError(f"`{escape(text)}` is too large for `{spec.name}`", None, True)
    _check_range(spec, value, text)
    return value


def _invisible_hint(text: str) -> str | None:
    odd = next((ch for ch in text if not is_printable(ch)), None)
    if odd is None:
        return None
    return (
        f"delete the invisible {describe(odd)} (Ollama drops invisible characters from "
        "values; mfc keeps them)"
    )


def _check_range(spec: ParamSpec, value: float, text: str) -> None:
    lo, hi = spec.minimum, spec.maximum
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if lo is not None and hi is not None:
            want = f"between {format_param_value(lo)} and {format_param_value(hi)}"
        elif lo is not None:
            want = f"at least {format_param_value(lo)}"
        else:
            want = f"at most {format_param_value(hi)}"  # type: ignore[arg-type]
        raise ParamValueError(
            f"`{spec.name}` must be {want}, not `{escape(text)}`",
            f"`{spec.name}`: {spec.doc}" if spec.doc else None,
            out_of_range=True,
        )


def format_param_value(value: Scalar | tuple[str, ...]) -> str:
    """Print a value so that parse_param_value reads it back (no `1e+06` for ints)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form: `0.7`, `1000000.0`, `1e-05`
    if isinstance(value, tuple):
        raise TypeError("format each element of a repeatable parameter separately")
    return value
