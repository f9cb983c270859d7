"""Modelfile.lock: bytes, round trip, and the drift report `--locked` prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfc.build.lockfile import Lock, LockedInput, drift, lock_path, read_lock, write_lock

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def lock(*inputs: LockedInput, args: dict[str, str] | None = None, q: str | None = None) -> Lock:
    return Lock(inputs, tuple(sorted((args or {}).items())), q, D3)


FROM = LockedInput("FROM", "./m.gguf", "file", D1, path="m.gguf", size=10)
ADAPTER = LockedInput("ADAPTER", "a.gguf", "file", D2, path="a.gguf", size=5, scale=0.5)


def test_lock_path() -> None:
    assert lock_path(Path("/x/Modelfile")) == Path("/x/Modelfile.lock")
    assert lock_path(Path("/x/chat.modelfile")) == Path("/x/chat.modelfile.lock")


def test_bytes_are_stable_and_readable(tmp_path: Path, snapshot) -> None:
    lk = lock(FROM, ADAPTER, args={"B": "2", "A": "1"}, q="Q8_0")
    path = tmp_path / "Modelfile.lock"
    write_lock(path, lk)
    assert path.read_bytes() == lk.to_bytes()
    assert read_lock(path) == lk
    assert lk.to_bytes().decode() == snapshot


def test_missing_and_malformed(tmp_path: Path) -> None:
    assert read_lock(tmp_path / "none.lock") is None
    bad = tmp_path / "bad.lock"
    bad.write_text('{"lockVersion": 1}')
    with pytest.raises(ValueError, match="malformed lockfile"):
        read_lock(bad)
    bad.write_text('{"lockVersion": 99}')
    with pytest.raises(ValueError, match="unsupported lockVersion 99"):
        read_lock(bad)


@pytest.mark.parametrize(
    ("fresh", "expected"),
    [
        (lock(FROM, ADAPTER), []),
        (
            lock(LockedInput("FROM", "./m.gguf", "file", D2), ADAPTER),
            [f"FROM ./m.gguf: locked {D1}, now resolves to {D2}"],
        ),
        (lock(FROM), ["ADAPTER a.gguf: in the lockfile but no longer in the Modelfile"]),
        (
            lock(FROM, ADAPTER, LockedInput("ADAPTER", "b.gguf", "file", D3)),
            [f"ADAPTER b.gguf: not in the lockfile (now {D3})"],
        ),
        (
            lock(FROM, LockedInput("ADAPTER", "a.gguf", "file", D2, scale=1.0)),
            ["ADAPTER a.gguf: scale locked 0.5, now 1.0"],
        ),
        (
            lock(LockedInput("FROM", "./m.gguf", "model", D1), ADAPTER),
            ["FROM ./m.gguf: locked as a file, now a model"],
        ),
        (
            lock(FROM, ADAPTER, args={"X": "1"}, q="Q4_K_M"),
            ["build arg X: locked unset, now `1`", "--quantize: locked None, now Q4_K_M"],
        ),
    ],
    ids=["same", "digest", "removed", "added", "scale", "kind", "args+quantize"],
)
def test_drift(fresh: Lock, expected: list[str]) -> None:
    assert [d.message for d in drift(lock(FROM, ADAPTER), fresh)] == expected


def test_drift_points_at_the_input() -> None:
    changed = lock(FROM, LockedInput("ADAPTER", "a.gguf", "file", D3), args={"X": "1"})
    assert [d.input_index for d in drift(lock(FROM, ADAPTER), changed)] == [1, None]


_text = st.text(min_size=1, max_size=20)
_digest = st.sampled_from([D1, D2, D3])
_input = st.builds(
    LockedInput,
    instruction=st.sampled_from(["FROM", "ADAPTER"]),
    ref=_text,
    kind=st.sampled_from(["file", "modelfile", "model", "registry_cache"]),
    digest=_digest,
    path=st.none() | _text,
    size=st.none() | st.integers(min_value=0, max_value=2**50),
    name=st.none() | _text,
    scale=st.none() | st.floats(allow_nan=False, allow_infinity=False),
)


@given(
    inputs=st.lists(_input, max_size=4),
    args=st.dictionaries(_text, st.text(max_size=10), max_size=3),
    quantize=st.none() | st.sampled_from(["Q8_0", "Q4_K_M"]),
)
def test_round_trip(inputs: list[LockedInput], args: dict[str, str], quantize: str | None) -> None:
    lk = Lock(tuple(inputs), tuple(sorted(args.items())), quantize, D3)
    again = Lock.from_bytes(lk.to_bytes())
    assert again == lk
    assert drift(lk, again) == []
