"""`--verbose` statistics, formatted like Ollama's."""

from __future__ import annotations

import pytest

from mfc.runtime.stats import Stats, format_stats, go_duration


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (999, "999ns"),
        (1_500, "1.5µs"),
        (12_345_678, "12.345678ms"),
        (1_000_000_000, "1s"),
        (2_019_766_959, "2.019766959s"),
        (61_500_000_000, "1m1.5s"),
        (3_723_000_000_000, "1h2m3s"),
    ],
)
def test_go_duration(ns: int, text: str) -> None:
    assert go_duration(ns) == text


def test_format_stats(snapshot) -> None:
    stats = Stats(
        total_duration=1_234_567_890,
        load_duration=12_300_000,
        prompt_eval_count=26,
        prompt_eval_duration=123_000_000,
        eval_count=298,
        eval_duration=3_200_000_000,
    )
    assert stats.eval_rate == pytest.approx(93.125)
    assert format_stats(stats) == snapshot


def test_rates_are_zero_without_time() -> None:
    stats = Stats(0, 0, 0, 0, 0, 0)
    assert (stats.prompt_eval_rate, stats.eval_rate) == (0.0, 0.0)
