"""The cost of the API dialects: the same answer through /api/chat, /v1/chat/completions and
/v1/messages, streamed and not, against one live `mfc serve` (run by hand, not in tests).

The counter fixture answers "abc" with 23 tokens in well under a millisecond of engine time, so
what is measured is everything around the engine: parsing, translation, the service, the runner
round trip and the wire format. Rounds alternate the dialects; the baseline is the native API in
the same round; figures are medians of per-round ratios.

    python bench/dialects.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from mfc.store import Store
from mfc.testing import fixtures
from mfc.testing.server import build_counter, start_server, stop_server

USER = [{"role": "user", "content": "abc"}]
BODIES = {
    "native": ("/api/chat", {"model": "counter", "messages": USER, "options": {"temperature": 0}}),
    "openai": ("/v1/chat/completions", {"model": "counter", "messages": USER, "temperature": 0}),
    "anthropic": (
        "/v1/messages",
        {"model": "counter", "messages": USER, "max_tokens": 64, "temperature": 0},
    ),
}


def one(client: httpx.Client, path: str, body: dict, stream: bool) -> float:
    start = time.perf_counter()
    if stream:
        with client.stream("POST", path, json={**body, "stream": True}) as r:
            for _ in r.iter_bytes():
                pass
    else:
        client.post(path, json={**body, "stream": False}).raise_for_status()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="mfc-bench-dialects-"))
    fixtures.generate(tmp / "fx")
    store = Store(tmp / "models")
    build_counter(store, {"counter-f32.gguf": tmp / "fx" / "counter-f32.gguf"}, "counter")
    server = start_server(tmp, store)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for path, body in BODIES.values():  # load and warm
                one(client, path, body, False)
            for stream in (False, True):
                times: dict[str, list[float]] = {k: [] for k in BODIES}
                for r in range(args.rounds):
                    order = list(BODIES)[r % 3 :] + list(BODIES)[: r % 3]
                    for name in order:
                        path, body = BODIES[name]
                        times[name].append(one(client, path, body, stream))
                print(f"\n{'streamed' if stream else 'not streamed'} ({args.rounds} rounds)")
                base = times["native"]
                for name, ts in times.items():
                    ratios = [t / b for t, b in zip(ts, base, strict=True)]
                    print(
                        f"  {name:10s} median {statistics.median(ts) * 1000:7.2f} ms"
                        f"   ratio vs native {statistics.median(ratios):.2f}x"
                    )
    finally:
        stop_server(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
