"""Bad input against a real `mfc serve`: every mistake is a clear 4xx, never a 500, never a hang.

Each case asserts the status and that the ``{"error": ...}`` text says what was wrong;
after all of them (and after a randomized run over every POST route) the server still
answers a good request.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

GOOD = {"model": "counter", "prompt": "abc", "stream": False, "options": {"temperature": 0}}
ANSWER = "defghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def client(served: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=60) as c:
        yield c


def post(client: httpx.Client, path: str, body: Any, method: str = "POST") -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.request(method, path, content=content)


def error_of(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) >= {"error"}, body
    assert isinstance(body["error"], str) and body["error"]
    return str(body["error"])


def still_serving(client: httpx.Client) -> None:
    r = post(client, "/api/generate", GOOD)
    assert r.status_code == 200, r.text
    assert r.json()["response"] == ANSWER


# --- bodies ------------------------------------------------------------------------------------

BODIES = [
    # (path, raw body, status, words the error must contain)
    ("/api/generate", b"", 400, ["missing request body"]),
    ("/api/generate", b'{"model": "counter",', 400, ["invalid JSON", "line 1"]),
    ("/api/chat", b"{'model': 'counter'}", 400, ["invalid JSON"]),
    ("/api/generate", b"[1, 2, 3]", 400, ["must be a JSON object", "array"]),
    ("/api/generate", b'"counter"', 400, ["must be a JSON object", "string"]),
    ("/api/show", b"null", 400, ["must be a JSON object"]),
    ("/api/generate", b"\xff\xfe{}", 400, ["not UTF-8"]),
    ("/api/generate", b"[" * 100_000 + b"]" * 100_000, 400, ["nested deeper than 128"]),
    ("/api/generate", b'{"a":' * 5_000 + b"1" + b"}" * 5_000, 400, ["nested deeper"]),
    ("/api/chat", b'{"model":"counter","messages":' + b"[" * 300 + b"]" * 300 + b"}", 400, []),
]


@pytest.mark.parametrize(("path", "raw", "status", "words"), BODIES)
def test_malformed_bodies(
    client: httpx.Client, path: str, raw: bytes, status: int, words: list[str]
) -> None:
    message = error_of(post(client, path, raw), status)
    for word in words:
        assert word in message, message


# --- fields ------------------------------------------------------------------------------------

FIELDS = [
    ("/api/generate", {"model": "counter", "prompt": 5}, ["prompt", "must be a string", "number"]),
    ("/api/generate", {"model": 1}, ["model", "must be a string"]),
    ("/api/generate", {"model": "counter", "stream": "no"}, ["stream", "true or false"]),
    ("/api/chat", {"model": "counter", "messages": "hi"}, ["messages", "must be an array"]),
    (
        "/api/chat",
        {"model": "counter", "messages": [{"role": "user", "content": ["a"]}]},
        ["messages[0].content", "must be a string"],
    ),
    ("/api/generate", {"model": "counter", "prompt": "abc", "promt": "x"}, ["unknown field"]),
    ("/api/generate", {"model": "counter", "prompt": "abc", "temprature": 1}, ['"temprature"']),
    ("/api/chat", {"model": "counter", "messages": [], "stream": False, "foo": 1}, ['"foo"']),
    ("/api/generate", {"model": "counter", "options": []}, ["options", "must be an object"]),
    ("/api/generate", {"model": "counter", "context": [1.5]}, ["context[0]", "integer"]),
    ("/api/embed", {"model": "counter", "input": 3}, ["input", "string or an array"]),
    (
        "/api/generate",
        {"model": "counter", "prompt": "a", "keep_alive": "5 parsecs"},
        ["keep_alive"],
    ),
    ("/api/generate", {"model": "counter", "prompt": "a", "keep_alive": [5]}, ["keep_alive"]),
    ("/api/generate", {"model": "counter", "prompt": "a", "format": "xml"}, ["invalid format"]),
    ("/api/generate", {"model": "counter", "prompt": "a", "format": 3}, ["invalid format"]),
    ("/api/generate", {"model": "counter", "prompt": "a", "think": "lots"}, ["invalid think"]),
    ("/api/chat", {"model": "counter", "messages": [], "think": 1}, ["think must be"]),
    ("/api/generate", {"model": "counter", "top_logprobs": 99}, ["top_logprobs", "0 and 20"]),
    ("/api/generate", {"model": "counter", "images": ["not base64!"]}, ["images[0]", "base64"]),
    (
        "/api/chat",
        {"model": "counter", "messages": [{"role": "user", "content": "x", "images": ["%%"]}]},
        ["base64"],
    ),
    ("/api/generate", {"model": "counter", "prompt": "a", "images": ["aGk="]}, ["images"]),
    ("/api/copy", {"source": "counter", "destination": "Bad Name!"}, ["destination", "invalid"]),
    (
        "/api/create",
        {"model": "x", "from": "counter", "quantize": "q9_9", "stream": False},
        ["Q9_9"],
    ),
    # streamed or not, a Modelfile that does not compile is a 400 carrying its diagnostics
    (
        "/api/create",
        {"model": "x", "modelfile": "FROM counter\nPARAMETER temprature 1\n"},
        ["temprature"],
    ),
]


@pytest.mark.parametrize(("path", "body", "words"), FIELDS)
def test_wrong_fields(client: httpx.Client, path: str, body: Any, words: list[str]) -> None:
    message = error_of(post(client, path, body), 400)
    for word in words:
        assert word in message, message


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "method"),
    [
        ("/api/generate", {"model": "nope", "prompt": "abc"}, "POST"),
        ("/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, "POST"),
        ("/api/show", {"model": "nope"}, "POST"),
        ("/api/embed", {"model": "nope", "input": "x"}, "POST"),
        ("/api/embeddings", {"model": "nope", "prompt": "x"}, "POST"),
        ("/api/copy", {"source": "nope", "destination": "other"}, "POST"),
        ("/api/delete", {"model": "nope"}, "DELETE"),
    ],
)
def test_unknown_model_is_404(
    client: httpx.Client, path: str, body: dict[str, Any], method: str
) -> None:
    assert error_of(post(client, path, body, method), 404) == 'model "nope" not found'


@pytest.mark.parametrize("name", ["Bad Name!", "a/b/c/d/e", "../../etc/passwd", ":tag", "x" * 400])
@pytest.mark.parametrize("path", ["/api/generate", "/api/chat", "/api/show", "/api/embed"])
def test_invalid_names_are_400(client: httpx.Client, path: str, name: str) -> None:
    message = error_of(post(client, path, {"model": name}), 400)
    assert "invalid" in message.lower() or "name" in message.lower(), message


def test_missing_model_is_400(client: httpx.Client) -> None:
    assert error_of(post(client, "/api/generate", {"prompt": "abc"}), 400) == "model is required"


# --- options -----------------------------------------------------------------------------------


def test_nan_option_names_option_and_range(client: httpx.Client) -> None:
    # Python's json writes the NaN literal, as a careless client would.
    raw = json.dumps({**GOOD, "options": {"temperature": float("nan")}})
    assert "NaN" in raw
    message = error_of(post(client, "/api/generate", raw), 400)
    assert '"temperature"' in message and "at least 0" in message and "NaN" in message


def test_nan_outside_options(client: httpx.Client) -> None:
    raw = json.dumps({**GOOD, "top_logprobs": float("inf")})
    assert "finite" in error_of(post(client, "/api/generate", raw), 400)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"temperature": -1}, ['"temperature"', "at least 0"]),
        ({"top_p": 7}, ['"top_p"', "between 0.0 and 1.0"]),
        ({"num_ctx": 0}, ['"num_ctx"', "at least 1"]),
        ({"num_ctx": "big"}, ['"num_ctx"', "integer"]),
        ({"num_predict": 1.5}, ['"num_predict"', "integer"]),
        ({"stop": "x"}, ['"stop"', "array"]),
        ({"temperature": 1e39}, ['"temperature"', "32-bit float"]),
        ({"seed": 2**70}, ['"seed"', "64-bit"]),
        # llama.cpp does not survive these from a request (17 GB, then SIGSEGV)
        ({"num_batch": 100_000_000_000}, ['"num_batch"', "between 1 and 65536"]),
        ({"num_thread": 100_000}, ['"num_thread"', "between 0 and 256"]),
    ],
)
def test_out_of_range_options(
    client: httpx.Client, options: dict[str, Any], words: list[str]
) -> None:
    message = error_of(post(client, "/api/generate", {**GOOD, "options": options}), 400)
    for word in words:
        assert word in message, message


def test_over_long_prompt_gives_both_token_counts(client: httpx.Client) -> None:
    body = {**GOOD, "prompt": "abc " * 300, "options": {"num_ctx": 64}}
    message = error_of(post(client, "/api/generate", body), 400)
    assert "context window (num_ctx) is 64" in message, message
    assert re.search(r"the prompt is (\d{3,}) tokens", message), message


# --- size, methods, paths ----------------------------------------------------------------------

LIMIT = 64 * 1024 * 1024  # ServerConfig.max_body_bytes


def test_declared_body_over_limit_is_413(served: Any) -> None:
    """A Content-Length over the limit is refused before a byte of the body is read."""
    url = urlparse(served.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall(
            b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {LIMIT + 1}\r\nConnection: close\r\n\r\n".encode()
            + b'{"model": "counter"'
        )
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert f"the limit is {LIMIT}".encode() in body


def test_chunked_body_over_limit_is_413(client: httpx.Client) -> None:
    """No Content-Length: the server counts while reading and stops past the limit."""
    piece = b" " * (1024 * 1024)

    def chunks() -> Iterator[bytes]:
        yield b'{"model": "counter", "prompt": "'
        for _ in range(LIMIT // len(piece) + 2):
            yield piece

    try:
        r = client.post("/api/generate", content=chunks())
    except httpx.TransportError:  # the server may answer and close while we still send
        return
    assert "over the limit" in error_of(r, 413)


def test_wrong_method_is_405(client: httpx.Client) -> None:
    for method, path in [("GET", "/api/generate"), ("POST", "/api/tags"), ("GET", "/api/delete")]:
        r = client.request(method, path)
        assert r.status_code == 405, (method, path, r.text)
        assert r.text == "405 method not allowed"


def test_unknown_path_is_404(client: httpx.Client) -> None:
    for path in ["/api/nothing", "/v2/chat", "/api/generate/extra"]:
        r = client.post(path, content=b"{}")
        assert r.status_code == 404, (path, r.text)
        assert r.text == "404 page not found"


def test_push_of_a_bad_name_is_a_400(client: httpx.Client) -> None:
    assert "invalid model name" in error_of(post(client, "/api/push", {"model": "../x"}), 400)


def test_pull_of_a_bad_name_is_a_400(client: httpx.Client) -> None:
    assert "invalid model name" in error_of(post(client, "/api/pull", {"model": "../x"}), 400)


# --- templates ---------------------------------------------------------------------------------

LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"


def test_template_over_budget_is_a_quick_400(client: httpx.Client) -> None:
    start = time.monotonic()
    r = post(client, "/api/generate", {**GOOD, "template": LOOPS})
    elapsed = time.monotonic() - start
    message = error_of(r, 400)
    # Whichever budget runs out first (time on a slow machine, output on a fast one).
    assert "template of model counter" in message and "budget" in message, message
    assert elapsed < 15, elapsed
    start = time.monotonic()
    flood = "{% for i in range(100000) %}" + "y" * 1000 + "{% endfor %}"
    message = error_of(post(client, "/api/generate", {**GOOD, "template": flood}), 400)
    assert "output budget" in message, message
    assert time.monotonic() - start < 15


def test_normal_template_override_still_works(client: httpx.Client) -> None:
    r = post(client, "/api/generate", {**GOOD, "template": "{{ .Prompt }}"})
    assert r.status_code == 200, r.text
    assert r.json()["response"] == ANSWER


# --- randomized: every POST route, any JSON-ish body ----------------------------------------------

POST_ROUTES = [
    ("POST", "/api/generate"),
    ("POST", "/api/chat"),
    ("POST", "/api/show"),
    ("POST", "/api/copy"),
    ("POST", "/api/create"),
    ("POST", "/api/embed"),
    ("POST", "/api/embeddings"),
    ("POST", "/api/pull"),
    ("POST", "/api/push"),
    ("POST", "/api/blobs/sha256:" + "0" * 64),
    ("DELETE", "/api/delete"),
]
NAMES = st.sampled_from(["fuzz", "missing", "Bad Name!", "", "a/b/c/d/e", "fuzz:latest"])
FIELD_NAMES = st.sampled_from(
    [
        "model",
        "prompt",
        "messages",
        "options",
        "stream",
        "format",
        "keep_alive",
        "think",
        "template",
        "system",
        "raw",
        "context",
        "images",
        "tools",
        "input",
        "source",
        "destination",
        "from",
        "files",
        "parameters",
        "modelfile",
        "quantize",
        "suffix",
        "truncate",
        "dimensions",
        "role",
        "content",
        "name",
    ]
)
OPTION_VALUES = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=5),
)
OPTIONS = st.dictionaries(
    st.sampled_from(["temperature", "num_ctx", "num_predict", "top_k", "seed", "stop", "bogus"]),
    OPTION_VALUES,
    max_size=3,
)
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    NAMES,
    OPTIONS,
)
JSONISH = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(FIELD_NAMES, st.text(max_size=8)), inner, max_size=5),
    ),
    max_leaves=12,
)
BODY = st.one_of(
    st.fixed_dictionaries({"model": NAMES}, optional={"options": OPTIONS}).flatmap(
        lambda base: st.dictionaries(FIELD_NAMES, JSONISH, max_size=4).map(
            lambda more: {**more, **base}
        )
    ),
    JSONISH,
    st.binary(max_size=40),
)


@pytest.fixture(scope="module")
def fuzz_model(client: httpx.Client) -> str:
    """A copy the random bodies may use, change or delete; `counter` itself stays intact."""
    assert (
        post(client, "/api/copy", {"source": "counter", "destination": "fuzz"}).status_code == 200
    )
    return "fuzz"


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(route=st.sampled_from(POST_ROUTES), body=BODY)
def test_random_bodies_never_500(
    client: httpx.Client, fuzz_model: str, route: tuple[str, str], body: Any
) -> None:
    method, path = route
    if isinstance(body, dict) and path in ("/api/generate", "/api/chat"):
        body.setdefault("stream", False)
        opts = body.get("options")
        if isinstance(opts, dict) and isinstance(opts.get("num_predict"), int):
            opts["num_predict"] = min(opts["num_predict"], 32)  # keep each generation short
    transfer = path in ("/api/pull", "/api/push")
    if transfer and isinstance(body, dict):
        # No test reaches the internet: a name that would go to registry.ollama.ai goes to a
        # closed loopback port instead (connection refused at once).
        for key in ("model", "name"):
            if isinstance(body.get(key), str) and body[key]:
                body[key] = "127.0.0.1:9/library/fuzz"
    r = post(client, path, body, method)
    if transfer and "127.0.0.1:9" in r.text:
        return  # the registry could not be reached: an upstream failure, not bad input
    assert r.status_code < 500, (method, path, body, r.status_code, r.text)


def test_still_serving_after_everything(client: httpx.Client, served: Any) -> None:
    still_serving(client)
    assert "Traceback" not in served.logs(), served.logs()[-3000:]
