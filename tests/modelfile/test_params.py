"""The parameter table: Ollama's names and defaults, Go typing rules, ranges, printing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfc.modelfile.params import (
    PARAMETERS,
    ParamValueError,
    format_param_value,
    parse_param_value,
)

OLLAMA_OPTIONS = {
    "num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "draft_num_predict",
    "num_keep", "seed", "num_predict", "top_k", "top_p", "min_p", "typical_p", "repeat_last_n",
    "temperature", "repeat_penalty", "presence_penalty", "frequency_penalty", "stop",
}  # fmt: skip
DEPRECATED = {
    "penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock",
    "mirostat", "mirostat_tau", "mirostat_eta",
}  # fmt: skip


def test_table_covers_ollama() -> None:
    assert {n for n, p in PARAMETERS.items() if not p.deprecated} == OLLAMA_OPTIONS
    assert {n for n, p in PARAMETERS.items() if p.deprecated} == DEPRECATED
    assert [n for n, p in PARAMETERS.items() if p.repeatable] == ["stop"]


@pytest.mark.parametrize(
    "name,default",
    [
        ("temperature", 0.8), ("top_k", 40), ("top_p", 0.9), ("min_p", 0.0), ("typical_p", 1.0),
        ("repeat_last_n", 64), ("repeat_penalty", 1.0), ("presence_penalty", 0.0),
        ("frequency_penalty", 0.0), ("seed", -1), ("num_predict", -1), ("num_batch", 512),
        ("num_keep", 4), ("num_ctx", 4096), ("use_mmap", True), ("num_thread", 0),
    ],
)  # fmt: skip
def test_ollama_defaults(name: str, default) -> None:
    assert PARAMETERS[name].default == default


def test_phases() -> None:
    load = {n for n, p in PARAMETERS.items() if p.phase == "load" and not p.deprecated}
    assert {"num_ctx", "num_batch", "num_thread", "num_gpu", "main_gpu", "use_mmap"} <= load
    assert PARAMETERS["temperature"].phase == "sampling"


@pytest.mark.parametrize(
    "name,text,value",
    [
        ("num_ctx", "4096", 4096), ("num_ctx", "+8", 8), ("seed", "-5", -5),
        ("temperature", "0.7", 0.7), ("temperature", "1", 1.0), ("temperature", "1e-3", 0.001),
        ("temperature", ".5", 0.5), ("top_p", "1.0", 1.0),
        *[("use_mmap", t, True) for t in ["1", "t", "T", "TRUE", "true", "True"]],
        *[("use_mmap", t, False) for t in ["0", "f", "F", "FALSE", "false", "False"]],
        ("stop", "<|eot_id|>", "<|eot_id|>"),
    ],
)  # fmt: skip
def test_parse_ok(name: str, text: str, value) -> None:
    got = parse_param_value(PARAMETERS[name], text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    "name,text,out_of_range",
    [
        ("num_ctx", "4k", False), ("num_ctx", "1.5", False), ("num_ctx", "1e3", False),
        ("num_ctx", "-1", True), ("num_ctx", "0", True), ("top_p", "1.01", True),
        ("top_p", "-0.1", True), ("temperature", "-1", True), ("temperature", "nan", False),
        ("temperature", "inf", False), ("temperature", "1e39", True), ("use_mmap", "yes", False),
        ("top_k", "1_000", False), ("num_ctx", "", False), ("seed", str(2**63), True),
    ],
)  # fmt: skip
def test_parse_errors(name: str, text: str, out_of_range: bool) -> None:
    with pytest.raises(ParamValueError) as info:
        parse_param_value(PARAMETERS[name], text)
    assert info.value.out_of_range is out_of_range
    assert f"`{name}`" in info.value.message or text in info.value.message


@pytest.mark.parametrize(
    "value,text", [(1000000, "1000000"), (0.7, "0.7"), (True, "true"), (False, "false"),
                   (1e-05, "1e-05"), (4096.0, "4096.0"), ("a b", "a b")]
)  # fmt: skip
def test_format_value(value, text: str) -> None:
    assert format_param_value(value) == text


@given(st.integers(min_value=1, max_value=2**62))
def test_int_roundtrip(n: int) -> None:
    assert parse_param_value(PARAMETERS["num_ctx"], format_param_value(n)) == n


@given(st.floats(min_value=0, max_value=1e30, allow_nan=False))
def test_float_roundtrip(x: float) -> None:
    assert parse_param_value(PARAMETERS["temperature"], format_param_value(x)) == x
