"""`mfc serve` configuration: Ollama's host and duration rules, the env table, MFC_ twins."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mfc.server.config import (
    ENV_VARS,
    FOREVER,
    ConfigError,
    keep_alive_seconds,
    load,
    parse_go_duration,
    parse_host,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("", "127.0.0.1", 11434),
        (None, "127.0.0.1", 11434),
        (":56789", "127.0.0.1", 56789),
        ("1.2.3.4", "1.2.3.4", 11434),
        ("example.com:56789", "example.com", 56789),
        ("http://example.com", "example.com", 80),
        ("https://example.com", "example.com", 443),
        ("http://127.0.0.1:8080/path", "127.0.0.1", 8080),
        ("[::1]:11435", "::1", 11435),
        ("::1", "::1", 11434),
        ("0.0.0.0", "0.0.0.0", 11434),
        ('"127.0.0.1:9"', "127.0.0.1", 9),
    ],
)
def test_parse_host_follows_ollama(text: str | None, host: str, port: int) -> None:
    a = parse_host(text)
    assert (a.host, a.port) == (host, port)


@pytest.mark.parametrize("text", ["127.0.0.1:abc", "127.0.0.1:70000", "ftp://x:1", "[::1"])
def test_bad_hosts_are_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_host(text)


def test_loopback_and_connect_url() -> None:
    assert parse_host("127.0.0.1:1").is_loopback
    assert parse_host("localhost:1").is_loopback
    assert not parse_host("0.0.0.0:1").is_loopback
    assert parse_host("0.0.0.0:5").connect_url == "http://127.0.0.1:5"
    assert parse_host("[::]:5").connect_url == "http://[::1]:5"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m", 300),
        ("1h30m", 5400),
        ("0", 0),
        ("-1s", -1),
        ("1.5s", 1.5),
        ("300ms", 0.3),
        ("2h", 7200),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["3600", "", "5 m", "5x", "m5"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_go_duration(text)


def test_keep_alive_values() -> None:
    assert keep_alive_seconds(10) == 10
    assert keep_alive_seconds(0.5) == 0.5
    assert keep_alive_seconds("5m") == 300
    assert keep_alive_seconds(-1) == FOREVER
    assert keep_alive_seconds("-1m") == math.inf
    assert keep_alive_seconds(0) == 0
    for bad in (True, None, [], "3600", float("nan")):
        with pytest.raises(ConfigError):
            keep_alive_seconds(bad)


def test_mfc_twin_wins_and_sources_are_named() -> None:
    env = {"OLLAMA_NUM_PARALLEL": "2", "MFC_NUM_PARALLEL": "6", "OLLAMA_KEEP_ALIVE": "3600"}
    loaded = load(env)
    assert loaded.config.num_parallel == 6
    assert loaded.sources["num_parallel"] == "MFC_NUM_PARALLEL"
    assert loaded.config.keep_alive == 3600  # integer seconds are accepted in the environment
    assert load({"OLLAMA_KEEP_ALIVE": "-1"}).config.keep_alive == FOREVER
    assert load({"OLLAMA_FLASH_ATTENTION": "1"}).config.flash_attention is True
    assert load({"OLLAMA_FLASH_ATTENTION": "nonsense"}).config.flash_attention is True  # Go rule
    assert load({"OLLAMA_ORIGINS": "http://a.example, http://b.example"}).config.origins == (
        "http://a.example",
        "http://b.example",
    )


def test_defaults() -> None:
    c = load({}).config
    assert (c.address.host, c.address.port) == ("127.0.0.1", 11434)
    assert (c.num_parallel, c.max_queue, c.keep_alive, c.flash_attention) == (4, 512, 300, False)
    assert c.models is None


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="OLLAMA_MAX_QUEUE"):
        load({"OLLAMA_MAX_QUEUE": "many"})
    with pytest.raises(ConfigError, match="MFC_HOST"):
        load({"MFC_HOST": "127.0.0.1:port"})


def test_max_transfer_streams_reaches_the_pull() -> None:
    assert load({}).config.max_transfer_streams == 4
    assert load({"OLLAMA_MAX_TRANSFER_STREAMS": "2"}).config.max_transfer_streams == 2
    with pytest.raises(ConfigError, match="MFC_MAX_TRANSFER_STREAMS"):
        load({"MFC_MAX_TRANSFER_STREAMS": "0"})


def test_unsupported_variables_warn_once() -> None:
    loaded = load({"OLLAMA_SCHED_SPREAD": "1", "OLLAMA_GPU_OVERHEAD": "100"})
    assert len(loaded.warnings) == 2
    assert all("mfc does not use it" in w for w in loaded.warnings)


def test_every_variable_is_documented() -> None:
    doc = (ROOT / "docs" / "serve.md").read_text(encoding="utf-8")
    for var in ENV_VARS:
        assert f"OLLAMA_{var.suffix}" in doc or f"MFC_{var.suffix}" in doc, var.suffix


def test_quantized_kv_cache_needs_flash_attention() -> None:
    without = load({"OLLAMA_KV_CACHE_TYPE": "q8_0"})
    assert without.config.kv_cache_type == "f16"
    assert any("needs flash attention" in w for w in without.warnings)
    with_fa = load({"OLLAMA_KV_CACHE_TYPE": "q8_0", "OLLAMA_FLASH_ATTENTION": "1"})
    assert with_fa.config.kv_cache_type == "q8_0" and not with_fa.warnings
    with pytest.raises(ConfigError, match="KV_CACHE_TYPE"):
        load({"MFC_KV_CACHE_TYPE": "q9"})
