"""The seed documents' examples, run as written against a real `mfc serve`.

`curl` is the real binary (a subprocess), the Python snippet is run by a fresh
interpreter with the `requests` library, as a user would paste it. Only the
address changes: the fixture's free port instead of 11434.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ANSWER = "defghijklmnopqrstuvwxyz"  # the counter model's greedy continuation of "abc"

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def curl(url: str, *args: str) -> str:
    out = subprocess.run(
        ["curl", "-sS", "--fail-with-body", "--max-time", "60", url, *args],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert out.returncode == 0, (out.returncode, out.stdout, out.stderr)
    return out.stdout


def local(served: Any, command: str) -> str:
    """The docs' address, pointed at the test server."""
    return command.replace("http://localhost:11434", served.url)


@needs_curl
def test_curl_generate_not_streamed(served: Any) -> None:
    # docs/serve.md, verbatim apart from the port
    url = local(served, "http://localhost:11434/api/generate")
    body = curl(url, "-d", '{"model": "counter", "prompt": "abc", "stream": false}')
    assert body.count("\n") <= 1  # exactly one JSON object
    answer = json.loads(body)
    assert answer["response"] == ANSWER
    assert answer["done"] is True and answer["done_reason"] == "stop"
    assert answer["eval_count"] == len(ANSWER)


@needs_curl
def test_curl_generate_streamed(served: Any) -> None:
    body = curl(
        local(served, "http://localhost:11434/api/generate"),
        "-d",
        '{"model": "counter", "prompt": "abc"}',
    )
    lines = [json.loads(line) for line in body.splitlines()]
    assert all(body.splitlines())  # NDJSON: never a blank line
    assert "".join(line["response"] for line in lines) == ANSWER
    assert lines[-1]["done"] is True and not any(line["done"] for line in lines[:-1])


@needs_curl
def test_curl_chat_multi_turn(served: Any) -> None:
    history = {
        "model": "counter",
        "stream": False,
        "messages": [
            {"role": "user", "content": "abc"},
            {"role": "assistant", "content": ANSWER},
            {"role": "user", "content": "abc"},
        ],
    }
    body = curl(local(served, "http://localhost:11434/api/chat"), "-d", json.dumps(history))
    answer = json.loads(body)
    assert answer["message"]["role"] == "assistant"
    assert answer["message"]["content"] == ANSWER
    assert answer["done"] is True
    assert answer["prompt_eval_count"] > 10  # all three turns went into the prompt


@needs_curl
def test_curl_tags(served: Any) -> None:
    tags = json.loads(curl(local(served, "http://localhost:11434/api/tags")))
    names = {m["name"] for m in tags["models"]}
    assert {"counter:latest", "counter-sys:latest"} <= names
    for m in tags["models"]:
        assert len(m["digest"]) == 64 and m["details"]["format"] == "gguf"


@needs_curl
def test_curl_unknown_model(served: Any) -> None:
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-w",
            "\n%{http_code}",
            local(served, "http://localhost:11434/api/generate"),
            "-d",
            '{"model": "nope", "prompt": "abc"}',
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    body, status = out.stdout.rsplit("\n", 1)
    assert status == "404"
    assert json.loads(body) == {"error": 'model "nope" not found'}


REQUESTS_SNIPPET = """
import json
import requests

r = requests.post(
    "http://localhost:11434/api/generate",
    json={"model": "counter", "prompt": "abc", "stream": False},
)
r.raise_for_status()
print(r.json()["response"])

# streamed: one JSON object per line
with requests.post(
    "http://localhost:11434/api/chat",
    json={"model": "counter", "messages": [{"role": "user", "content": "abc"}]},
    stream=True,
) as r:
    for line in r.iter_lines():
        chunk = json.loads(line)
        print(chunk["message"]["content"], end="", flush=True)
print()
"""


def test_python_requests_snippet(served: Any, tmp_path: Path) -> None:
    pytest.importorskip("requests")
    script = tmp_path / "snippet.py"
    script.write_text(textwrap.dedent(local(served, REQUESTS_SNIPPET)))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{ANSWER}\n{ANSWER}\n"
