"""Option precedence and load/sampling split (pure: no llama.cpp)."""

from __future__ import annotations

import pytest

from mfc.modelfile.params import PARAMETERS
from mfc.runtime.options import is_load_param, resolve


@pytest.mark.parametrize(
    ("image", "overrides", "env", "want"),
    [
        ({}, {}, {}, 0.8),  # the table's default (Ollama's)
        ({"temperature": 0.2}, {}, {}, 0.2),  # the image's params layer
        ({"temperature": 0.2}, {"temperature": 0.0}, {}, 0.0),  # request / REPL wins
    ],
    ids=["default", "image", "override"],
)
def test_precedence(image: dict, overrides: dict, env: dict, want: float) -> None:
    assert resolve(image, overrides, env=env).values["temperature"] == want


@pytest.mark.parametrize(
    ("image", "overrides", "env", "trained", "want", "warns"),
    [
        ({}, {}, {}, None, 4096, False),
        ({}, {}, {}, 512, 512, False),  # default clamps quietly
        ({}, {}, {"MFC_CONTEXT_LENGTH": "2048"}, None, 2048, False),
        ({}, {}, {"MFC_CONTEXT_LENGTH": "8192"}, 512, 512, True),
        ({"num_ctx": 1024}, {}, {"MFC_CONTEXT_LENGTH": "2048"}, None, 1024, False),
        ({"num_ctx": 1024}, {"num_ctx": 256}, {}, None, 256, False),
        ({"num_ctx": 100_000}, {}, {}, 512, 512, True),
        ({}, {}, {"MFC_CONTEXT_LENGTH": "lots"}, None, 4096, True),
    ],
)
def test_num_ctx(
    image: dict, overrides: dict, env: dict, trained: int | None, want: int, warns: bool
) -> None:
    r = resolve(image, overrides, trained_ctx=trained, env=env)
    assert r.values["num_ctx"] == want
    assert r.load().n_ctx == want
    assert bool(r.warnings) == warns


def test_sampling_and_load_views() -> None:
    r = resolve({"stop": ("a", "b"), "num_thread": 3, "seed": 7}, {"top_k": 5}, env={})
    s, lo = r.sampling(), r.load()
    assert (s.stop, s.seed, s.top_k, s.temperature) == (("a", "b"), 7, 5, 0.8)
    assert (lo.n_threads, lo.n_batch, lo.use_mmap) == (3, 512, True)
    assert resolve({}, env={}).load().n_threads is None  # 0 = llama-cpp-python's choice


def test_unknown_and_deprecated_params_are_ignored_with_a_warning() -> None:
    r = resolve({"mirostat": 2, "bogus": 1}, env={})
    assert "mirostat" not in r.values and "bogus" not in r.values
    assert len(r.warnings) == 2


def test_load_params_come_from_the_table() -> None:
    load = {name for name in PARAMETERS if is_load_param(name)}
    assert {"num_ctx", "num_batch", "num_thread", "num_gpu", "main_gpu", "use_mmap"} <= load
    assert not is_load_param("temperature")


def test_sampling_defaults_are_the_tables() -> None:
    """The parameter table is the one source of defaults; SamplingOptions only names them."""
    from dataclasses import fields

    from mfc.runtime.options import SamplingOptions

    defaults = SamplingOptions()
    for f in fields(SamplingOptions):
        assert getattr(defaults, f.name) == PARAMETERS[f.name].default, f.name
    assert resolve({}, env={}).sampling() == defaults


def test_num_batch_is_clamped_to_num_ctx() -> None:
    from mfc.runtime.options import resolve

    load = resolve({"num_batch": 10**11, "num_ctx": 256}, env={}).load()
    assert (load.n_ctx, load.n_batch) == (256, 256)
