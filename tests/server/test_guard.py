"""DNS-rebinding and CORS guard, as a pure function and as ASGI middleware."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from mfc.server.config import load
from mfc.server.guard import Guard, host_allowed, origin_allowed


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:11434",
        "localhost",
        "localhost:1",
        "LOCALHOST",
        "app.localhost:3",
        "[::1]:11434",
        "127.1.2.3",
    ],
)
def test_local_hosts_pass(host: str) -> None:
    assert host_allowed(host)


@pytest.mark.parametrize(
    "host",
    [
        ":11434",
        "",
        None,
        "evil.example",
        "evil.example:11434",
        "192.168.1.5",
        "localhost.evil.example",
        "0.0.0.0",
    ],
)
def test_foreign_or_empty_hosts_are_refused(host: str | None) -> None:
    assert not host_allowed(host)


def test_allowed_hosts_extend_the_list() -> None:
    assert host_allowed("box.lan:11434", ["box.lan"])
    assert not host_allowed("other.lan", ["box.lan"])


def test_origins() -> None:
    origins = load({"OLLAMA_ORIGINS": "https://app.example"}).config.cors_origins
    assert origin_allowed("http://localhost:3000", origins)
    assert origin_allowed("vscode-webview://abc", origins)
    assert origin_allowed("https://app.example", origins)
    assert not origin_allowed("https://evil.example", origins)


def _client(loopback: bool = True) -> TestClient:
    app = Starlette(routes=[Route("/", lambda r: PlainTextResponse("ok"), methods=["GET", "POST"])])
    guarded = Guard(app, loopback_bind=loopback, origins=load({}).config.cors_origins)
    return TestClient(guarded, base_url="http://127.0.0.1:11434")


def test_middleware_refuses_rebinding_and_empty_host() -> None:
    c = _client()
    assert c.get("/").status_code == 200
    assert c.get("/", headers={"Host": "evil.example:11434"}).status_code == 403
    assert c.get("/", headers={"Host": ":11434"}).status_code == 403
    # bound to a public address, the Host header is not checked (as in Ollama)
    assert _client(loopback=False).get("/", headers={"Host": "evil.example"}).status_code == 200


def test_middleware_cors() -> None:
    c = _client()
    pre = c.options(
        "/",
        headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "POST" in pre.headers["access-control-allow-methods"]
    ok = c.get("/", headers={"Origin": "http://localhost:5173"})
    assert ok.headers["access-control-allow-origin"] == "http://localhost:5173"
    bad = c.get("/", headers={"Origin": "https://evil.example"})
    assert bad.status_code == 403
