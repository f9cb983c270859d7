"""Generation statistics, printed like `ollama run --verbose`.

Durations are kept in nanoseconds, the unit of Ollama's API; `format_stats`
renders them the way Go prints a `time.Duration`, so the output reads the same
as Ollama's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Stats:
    total_duration: int  # ns, whole request including load
    load_duration: int  # ns, model load (0 when already loaded)
    prompt_eval_count: int  # prompt tokens actually evaluated (cached prefix excluded)
    prompt_eval_duration: int  # ns
    eval_count: int  # generated tokens
    eval_duration: int  # ns
    done_reason: str = "stop"  # "stop" | "length" | "cancel"
    stop_sequence: str = ""  # the stop string that ended the answer ("" for the end token)

    @property
    def prompt_eval_rate(self) -> float:
        return _rate(self.prompt_eval_count, self.prompt_eval_duration)

    @property
    def eval_rate(self) -> float:
        return _rate(self.eval_count, self.eval_duration)


def _rate(count: int, ns: int) -> float:
    return count / (ns / 1e9) if ns > 0 else 0.0


def go_duration(ns: int) -> str:
    """Format like Go's `time.Duration.String` (e.g. `1.5s`, `12.345ms`, `800µs`, `0s`)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_trim(ns / 1_000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_trim(ns / 1_000_000)}ms"
    seconds = ns / 1e9
    if seconds < 60:
        return f"{sign}{_trim(seconds)}s"
    minutes, secs = divmod(ns, 60_000_000_000)
    hours, minutes = divmod(minutes, 60)
    head = f"{hours}h{minutes}m" if hours else f"{minutes}m"
    return f"{sign}{head}{_trim(secs / 1e9)}s"


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def format_stats(stats: Stats) -> str:
    rows = [
        ("total duration", go_duration(stats.total_duration)),
        ("load duration", go_duration(stats.load_duration)),
        ("prompt eval count", f"{stats.prompt_eval_count} token(s)"),
        ("prompt eval duration", go_duration(stats.prompt_eval_duration)),
        ("prompt eval rate", f"{stats.prompt_eval_rate:.2f} tokens/s"),
        ("eval count", f"{stats.eval_count} token(s)"),
        ("eval duration", go_duration(stats.eval_duration)),
        ("eval rate", f"{stats.eval_rate:.2f} tokens/s"),
    ]
    return "\n".join(f"{label + ':':<22}{value}" for label, value in rows)
