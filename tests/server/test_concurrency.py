"""Concurrency and model lifecycle against a live `mfc serve` (real runners, real llama.cpp).

Models (all built from the counter fixture, see docs/fixtures.md):

- ``counter``: greedy "abc" -> "defghijklmnopqrstuvwxyz", then EOS;
- ``endless``: counter + lora-constant, prints "_" forever (bounded by num_predict; the engine
  shifts the context when it is full), so a stream stays open as long as a test needs;
- ``mix``: counter + lora-constant + lora-shift, a cycle "_acegikmoqsuwy_…" that never stops,
  entered at a place that depends on the prompt's last character — different prompts give
  different answers of any length;
- ``broken``: counter-f16 with a hyperparameter that passes mfc's GGUF checks but makes llama.cpp
  abort (GGML_ASSERT, SIGABRT) while loading it. (A damaged vocabulary would do too, but the
  server refuses that one itself before any runner starts.)

Each test is bounded in time (every HTTP call has a timeout; every wait has a deadline).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from mfc.build import build_text
from mfc.store import Store
from mfc.testing import fixtures
from mfc.testing.server import Server, start_server, stop_server

ANSWER = "defghijklmnopqrstuvwxyz"
GREEDY = {"temperature": 0, "seed": 1}
FOREVER = {**GREEDY, "num_predict": 1_000_000}  # never ends by itself within a test
BUSY = "server busy, please try again.  maximum pending requests exceeded"
N_SOLO = 200  # long enough (in engine time) for 8 requests to overlap
PROMPTS = ["a", "b", "c", "d", "k", "p", "_", "x"]  # 8 distinct phases of the mix cycle


# -- helpers ------------------------------------------------------------------------------------


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}")
        time.sleep(0.05)


def engines(server: Server) -> dict[str, dict[str, Any]]:
    models = httpx.get(server.url + "/mfc/engines", timeout=10).json()["models"]
    return {m["name"].removesuffix(":latest"): m for m in models}


def ps_models(server: Server) -> dict[str, dict[str, Any]]:
    """/api/ps by model name ("counter" for "counter:latest")."""
    models = httpx.get(server.url + "/api/ps", timeout=10).json()["models"]
    return {m["name"].removesuffix(":latest"): m for m in models}


def ps_names(server: Server) -> list[str]:
    return list(ps_models(server))


def generate(server: Server, model: str, prompt: str, timeout: float = 30, **extra: Any) -> Any:
    body = {"model": model, "prompt": prompt, "stream": False, "options": GREEDY, **extra}
    return httpx.post(server.url + "/api/generate", json=body, timeout=timeout)


def stream_lines(server: Server, body: dict[str, Any], timeout: float = 30) -> list[dict[str, Any]]:
    with httpx.stream("POST", server.url + "/api/generate", json=body, timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        return [json.loads(line) for line in r.iter_lines()]


class OpenStream:
    """A streaming generate held open by the test: read some lines, then close or read on."""

    def __init__(self, server: Server, body: dict[str, Any], timeout: float = 30):
        self.client = httpx.Client(timeout=timeout)
        self.cm = self.client.stream("POST", server.url + "/api/generate", json=body)
        self.response = self.cm.__enter__()
        assert self.response.status_code == 200, self.response.read()
        self.lines = self.response.iter_lines()

    def take(self, n: int) -> list[dict[str, Any]]:
        return [json.loads(next(self.lines)) for _ in range(n)]

    def rest(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    def close(self) -> None:
        self.cm.__exit__(None, None, None)
        self.client.close()


def aborting_gguf(path: Path) -> Path:
    """The counter model (F16) with ``llama.expert_used_count = 2`` and no experts: mfc's own GGUF
    checks pass, and llama.cpp aborts while loading it
    (``GGML_ASSERT(hparams.n_expert_used <= hparams.n_expert)`` → SIGABRT)."""
    add_hparams = fixtures.add_llama_hparams

    def with_experts(w: Any, **kw: Any) -> None:
        add_hparams(w, **kw)
        w.add_expert_used_count(2)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fixtures, "add_llama_hparams", with_experts)
        fixtures._counter(path, fixtures._QT.F16)
    return path


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, fixture_models: dict[str, Path]) -> Store:
    store = Store(tmp_path_factory.mktemp("concurrency") / "models")
    # One llama.cpp thread: on a shared 2-core machine, a decode step's thread barriers wait
    # for preempted threads (8 sequences of this tiny model: ~20 ms a step instead of <1 ms).
    base = f"FROM {fixture_models['counter-f32.gguf']}\nPARAMETER num_thread 1\n"
    constant = f"ADAPTER {fixture_models['lora-constant.gguf']}\n"
    shift = f"ADAPTER {fixture_models['lora-shift.gguf']}\n"
    cwd = Path.cwd()
    build_text(base, cwd, "counter", store=store)
    build_text(base + constant, cwd, "endless", store=store)
    build_text(base + constant + shift, cwd, "mix", store=store)
    bad = aborting_gguf(tmp_path_factory.mktemp("bad") / "abort.gguf")
    build_text(f"FROM {bad}\nPARAMETER num_thread 1\n", cwd, "broken", store=store)
    return store


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, store: Store) -> Iterator[Server]:
    """Default settings: NUM_PARALLEL 4, MAX_QUEUE 512, MAX_LOADED_MODELS 3."""
    srv = start_server(tmp_path_factory.mktemp("serve"), store)
    try:
        yield srv
    finally:
        stop_server(srv)
    assert "Traceback" not in srv.logs(), srv.logs()


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory, store: Store) -> Iterator[Server]:
    """One slot, a queue of two, one model at a time, keep_alive 1s by default."""
    env = {
        "MFC_NUM_PARALLEL": "1",
        "MFC_MAX_QUEUE": "2",
        "MFC_MAX_LOADED_MODELS": "1",
        "MFC_KEEP_ALIVE": "1s",
    }
    srv = start_server(tmp_path_factory.mktemp("serve-tight"), store, env)
    try:
        yield srv
    finally:
        stop_server(srv)
    assert "Traceback" not in srv.logs(), srv.logs()


@pytest.fixture(scope="module")
def solo(server: Server) -> dict[str, str]:
    """Each prompt's answer from `mix` run alone, one request at a time."""
    out = {}
    for prompt in PROMPTS:
        r = generate(server, "mix", prompt, options={**GREEDY, "num_predict": N_SOLO})
        assert r.status_code == 200, r.text
        out[prompt] = r.json()["response"]
    return out


# -- batching -----------------------------------------------------------------------------------


def concurrent_streams(server: Server, n: int, tokens: int) -> list[tuple[str, str, Any]]:
    client = ollama.Client(host=server.url, timeout=60)
    barrier = threading.Barrier(n)

    def one(i: int) -> tuple[str, str, Any]:
        prompt = PROMPTS[i % len(PROMPTS)]
        barrier.wait(10)
        parts = list(
            client.generate(
                model="mix", prompt=prompt, options={**GREEDY, "num_predict": tokens}, stream=True
            )
        )
        return prompt, "".join(p.response for p in parts), parts[-1]

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_counter_model_answers(server: Server) -> None:
    r = generate(server, "counter", "abc")
    assert r.status_code == 200, r.text
    assert r.json()["response"] == ANSWER


def test_eight_concurrent_streams_match_their_solo_answers(
    server: Server, solo: dict[str, str]
) -> None:
    assert len(set(solo.values())) == len(PROMPTS)  # the prompts really differ
    assert all(len(text) == N_SOLO for text in solo.values())
    for prompt, text, last in concurrent_streams(server, 8, N_SOLO):
        assert text == solo[prompt], prompt
        assert last.done and last.done_reason == "length"
    counters = engines(server)["mix"]["counters"]
    assert counters["max_sequences_in_decode"] > 1
    assert counters["max_sequences_in_decode"] <= 4  # NUM_PARALLEL
    assert counters["running"] == 0 and counters["waiting"] == 0


def test_num_parallel_8_decodes_more_sequences_together(
    tmp_path: Path, store: Store, solo: dict[str, str]
) -> None:
    wide = start_server(tmp_path, store, {"MFC_NUM_PARALLEL": "8"})
    try:
        for prompt, text, _last in concurrent_streams(wide, 8, 100):
            assert text == solo[prompt][:100], prompt  # greedy: a prefix of the longer answer
        counters = engines(wide)["mix"]["counters"]
        assert counters["max_sequences_in_decode"] > 1
        assert counters["max_sequences_in_decode"] <= 8
    finally:
        stop_server(wide)


# -- disconnects, queue limits ----------------------------------------------------------------


def test_a_disconnect_mid_stream_frees_the_slot(server: Server) -> None:
    stream = OpenStream(server, {"model": "endless", "prompt": "abc", "options": FOREVER})
    first = stream.take(2)
    assert [line["response"] for line in first] == ["_", "_"]
    assert engines(server)["endless"]["counters"]["running"] == 1
    stream.close()
    wait_until(
        lambda: engines(server)["endless"]["counters"]["running"] == 0,
        timeout=5,
        what="the disconnected stream's slot to be freed",
    )
    info = engines(server)["endless"]
    assert info["active"] == 0
    time.sleep(0.2)  # nothing decodes any more
    assert (
        engines(server)["endless"]["counters"]["tokens_decoded"]
        == info["counters"]["tokens_decoded"]
    )
    r = generate(server, "endless", "abc", options={**GREEDY, "num_predict": 5})
    assert r.status_code == 200 and r.json()["response"] == "_____"


def test_a_disconnect_of_a_non_streamed_request_frees_the_slot(server: Server) -> None:
    body = {"model": "endless", "prompt": "abc", "stream": False, "options": FOREVER}
    generate(server, "endless", "abc", options={**GREEDY, "num_predict": 1})  # loaded
    with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes the connection
        httpx.post(server.url + "/api/generate", json=body, timeout=httpx.Timeout(5, read=1))
    wait_until(
        lambda: engines(server)["endless"]["counters"]["running"] == 0,
        timeout=5,
        what="the abandoned request's slot to be freed",
    )
    assert engines(server)["endless"]["active"] == 0


def test_a_disconnect_while_queued_gives_up_the_place(tight: Server) -> None:
    holder = OpenStream(tight, {"model": "endless", "prompt": "x", "options": FOREVER})
    queued = None
    try:
        holder.take(1)
        queued = httpx.Client(timeout=httpx.Timeout(5, read=1))
        with pytest.raises(httpx.ReadTimeout):  # waits behind the holder, then gives up
            queued.post(
                tight.url + "/api/generate",
                json={"model": "endless", "prompt": "abc", "options": FOREVER},
            )
        queued.close()
        wait_until(
            lambda: engines(tight)["endless"]["active"] == 1, timeout=5, what="the queue to empty"
        )
        assert engines(tight)["endless"]["counters"]["waiting"] == 0
        holder.close()
        wait_until(
            lambda: engines(tight)["endless"]["counters"]["running"] == 0,
            timeout=5,
            what="the slot to be freed (the abandoned request must not run)",
        )
    finally:
        holder.close()
        if queued is not None:
            queued.close()


def test_past_max_queue_requests_get_503_and_the_server_still_answers(tight: Server) -> None:
    # NUM_PARALLEL 1 + MAX_QUEUE 2: the holder and two waiting requests fill the model.
    holder = OpenStream(tight, {"model": "endless", "prompt": "x", "options": FOREVER})
    try:
        holder.take(1)
        with ThreadPoolExecutor(2) as pool:
            waiting = [
                pool.submit(
                    generate, tight, "endless", "abc", 30, options={**GREEDY, "num_predict": 3}
                )
                for _ in range(2)
            ]
            wait_until(
                lambda: engines(tight)["endless"]["active"] == 3,
                timeout=10,
                what="two requests waiting behind the holder",
            )
            refused = [generate(tight, "endless", "abc", timeout=5) for _ in range(3)]
            for r in refused:
                assert r.status_code == 503, r.text
                assert r.json() == {"error": BUSY}
            # A streamed request is refused the same way, before any line.
            with httpx.stream(
                "POST",
                tight.url + "/api/generate",
                json={"model": "endless", "prompt": "abc"},
                timeout=5,
            ) as r:
                assert r.status_code == 503
                assert json.loads(r.read()) == {"error": BUSY}
            assert not any(f.done() for f in waiting)  # still queued behind the holder
            holder.close()
            for f in waiting:
                r = f.result(timeout=30)
                assert r.status_code == 200, r.text
                assert r.json()["response"] == "___"
    finally:
        holder.close()
    r = generate(tight, "endless", "abc", options={**GREEDY, "num_predict": 2}, keep_alive="5m")
    assert r.status_code == 200 and r.json()["response"] == "__"


# -- keep_alive ---------------------------------------------------------------------------------


def test_keep_alive_0_unloads_after_the_request(server: Server) -> None:
    r = generate(server, "counter", "abc")
    assert r.status_code == 200
    assert "counter" in ps_names(server)
    pid = engines(server)["counter"]["pid"]
    r = generate(server, "counter", "abc", keep_alive=0)
    assert r.status_code == 200 and r.json()["response"] == ANSWER
    assert "counter" not in ps_names(server)  # unloaded before the answer was sent
    wait_until(lambda: not alive(pid), timeout=5, what="the runner to exit")


def test_keep_alive_0_during_a_stream_answers_at_once_and_unloads_after_it(
    server: Server,
) -> None:
    """As Ollama's expireRunner: `mfc stop` does not wait for running requests (one may never
    end); the model is unloaded when they are done."""
    stream = OpenStream(server, {"model": "endless", "prompt": "a", "options": FOREVER})
    try:
        stream.take(1)
        r = httpx.post(
            server.url + "/api/generate", json={"model": "endless", "keep_alive": 0}, timeout=5
        )
        assert r.status_code == 200 and r.json()["done_reason"] == "unload"
        assert stream.take(3)  # the running stream is not cut short
        assert "endless" in ps_names(server)
    finally:
        stream.close()
    wait_until(lambda: "endless" not in ps_names(server), timeout=5, what="the unload")


def test_keep_alive_expiry_unloads(server: Server) -> None:
    r = generate(server, "counter", "abc", keep_alive="1s")
    assert r.status_code == 200
    entry = ps_models(server)["counter"]
    assert entry["expires_at"]  # RFC 3339, about a second from now
    pid = engines(server)["counter"]["pid"]
    wait_until(lambda: "counter" not in ps_names(server), timeout=4, what="keep_alive expiry")
    wait_until(lambda: not alive(pid), timeout=5, what="the runner to exit")


def test_keep_alive_default_comes_from_the_environment(tight: Server) -> None:
    r = generate(tight, "counter", "abc")  # MFC_KEEP_ALIVE=1s on this server
    assert r.status_code == 200 and r.json()["response"] == ANSWER
    assert "counter" in ps_names(tight)
    wait_until(lambda: "counter" not in ps_names(tight), timeout=4, what="MFC_KEEP_ALIVE expiry")


# -- several models -----------------------------------------------------------------------------


def test_max_loaded_models_1_evicts_in_turn(tight: Server) -> None:
    pids = set()
    for i in range(3):
        model, want = ("counter", ANSWER) if i % 2 == 0 else ("endless", "____")
        r = generate(
            tight,
            model,
            "abc",
            options={**GREEDY, "num_predict": 4 if i % 2 else 100},
            keep_alive="5m",
        )
        assert r.status_code == 200, r.text
        assert r.json()["response"] == want
        assert ps_names(tight) == [model]
        pids.add(engines(tight)[model]["pid"])
    assert len(pids) == 3  # every switch started a fresh runner
    wait_until(lambda: len(tight.runner_pids()) <= 1, timeout=5, what="evicted runners to exit")

    # Concurrent requests for both models: each waits its turn; nothing crashes.
    def one(i: int) -> tuple[str, int, str]:
        model = "counter" if i % 2 == 0 else "endless"
        r = generate(tight, model, "abc", options={**GREEDY, "num_predict": 4}, keep_alive="5m")
        return model, r.status_code, r.json().get("response", r.text)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(4)))
    for model, status, text in results:
        assert status == 200, text
        assert text == ("defg" if model == "counter" else "____")
    assert len(ps_names(tight)) == 1
    assert tight.proc.poll() is None


def test_sigkill_of_a_runner_mid_stream(server: Server, solo: dict[str, str]) -> None:
    victim = OpenStream(server, {"model": "endless", "prompt": "abc", "options": FOREVER})
    other = OpenStream(
        server, {"model": "mix", "prompt": "k", "options": {**GREEDY, "num_predict": N_SOLO}}
    )
    try:
        victim.take(2)
        head = other.take(1)
        pid = engines(server)["endless"]["pid"]
        os.kill(pid, signal.SIGKILL)
        lines = victim.rest()  # ends: the server does not hang on a dead runner
        assert lines, "the stream ended without a final line"
        assert "error" in lines[-1], lines[-1]
        assert "SIGKILL" in lines[-1]["error"]
        assert "endless" in lines[-1]["error"]
        assert all(line.get("response") == "_" for line in lines[:-1])
        rest = other.rest()
        text = "".join(line.get("response", "") for line in head + rest)
        assert text == solo["k"]
        assert rest[-1]["done"] and "error" not in rest[-1]
    finally:
        victim.close()
        other.close()
    r = generate(server, "endless", "abc", options={**GREEDY, "num_predict": 3})
    assert r.status_code == 200, r.text
    assert r.json()["response"] == "___"
    assert engines(server)["endless"]["pid"] != pid


def test_a_model_that_aborts_llama_cpp_is_a_500_for_that_model_only(server: Server) -> None:
    for _ in range(2):  # and again: each request gets a fresh runner, and the same answer
        r = generate(server, "broken", "abc")
        assert r.status_code == 500, r.text
        error = r.json()["error"]
        assert "broken" in error and "SIGABRT" in error, error
        assert "GGML_ASSERT" in error and "n_expert_used" in error, error  # llama.cpp's reason
    assert "broken" not in ps_names(server)
    r = generate(server, "counter", "abc")
    assert r.status_code == 200 and r.json()["response"] == ANSWER
    assert server.proc.poll() is None


def test_a_load_option_change_reloads(server: Server) -> None:
    def context_length() -> int:
        return int(ps_models(server)["counter"]["context_length"])

    pids = []
    for num_ctx in (256, 512):
        r = generate(server, "counter", "abc", options={**GREEDY, "num_ctx": num_ctx})
        assert r.status_code == 200, r.text
        assert r.json()["response"] == ANSWER
        assert context_length() == num_ctx
        pids.append(engines(server)["counter"]["pid"])
    assert len(set(pids)) == 2
    r = generate(server, "counter", "abc", options={**GREEDY, "num_ctx": 512})
    assert engines(server)["counter"]["pid"] == pids[-1]  # same options: no reload


# -- shutdown -----------------------------------------------------------------------------------


def test_sigterm_with_open_streams_exits_cleanly(tmp_path: Path, store: Store) -> None:
    srv = start_server(tmp_path, store)
    streams: list[OpenStream] = []
    try:
        streams = [
            OpenStream(srv, {"model": "endless", "prompt": "abc", "options": FOREVER}),
            OpenStream(srv, {"model": "mix", "prompt": "a", "options": FOREVER}),
        ]
        for s in streams:
            s.take(1)
        runners = srv.runner_pids()
        assert len(runners) == 2
        start = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        for s in streams:
            lines = s.rest()  # ends with a complete body: a final error line, not a cut
            assert lines[-1] == {"error": "the server is shutting down"}, lines[-1]
        assert srv.proc.wait(10) == 0
        # Without waiting out uvicorn's graceful timeout (3 s) for streams that never end.
        assert time.monotonic() - start < 3
        for pid in runners:
            wait_until(lambda pid=pid: not alive(pid), timeout=5, what=f"runner {pid} to exit")
        assert "Traceback" not in srv.logs()
    finally:
        for s in streams:
            s.close()
        stop_server(srv)
