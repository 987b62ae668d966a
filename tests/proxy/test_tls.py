"""Calls upstream over TLS, verified as the system verifies, on one kept-alive HTTP/1.1
connection, even to an upstream that offers HTTP/2 too: a real server of both (Hypercorn)
with a certificate from a local CA the process trusts."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from hypercorn.asyncio import serve
from hypercorn.config import Config

from creditsd.api.app import create_app
from creditsd.inprocess import Ledger
from tests.conftest import LedgerFactory, create_key
from tests.proxy.conftest import FULL_PRICE, MODEL, settled
from tests.proxy.upstream import USAGE

HI = [{"role": "user", "content": "Hi"}]


class TlsUpstream:
    """An OpenAI-compatible chat route that records each call's HTTP version and the
    client's port (one port: one connection)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        sent = b""
        while True:
            message = await receive()
            sent += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append((scope["http_version"], scope["client"][1]))
        answer = {
            "id": "chatcmpl-tls",
            "object": "chat.completion",
            "created": 1764547200,
            "model": json.loads(sent)["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello!"},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
        body = json.dumps(answer).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def tls_upstream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, TlsUpstream]]:
    """The upstream served over TLS, HTTP/2 and HTTP/1.1 offered; its base URL and its
    record."""
    authority = trustme.CA()
    certificate = authority.issue_cert("localhost")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    certificate.cert_chain_pems[0].write_to_path(str(cert_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # what the system trusts, here
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.certfile, config.keyfile = str(cert_file), str(key_file)
    config.alpn_protocols = ["h2", "http/1.1"]
    config.loglevel = "WARNING"
    app = TlsUpstream()
    stopped = asyncio.Event()
    task = asyncio.ensure_future(serve(app, config, shutdown_trigger=stopped.wait))  # type: ignore[arg-type]
    for _ in range(200):
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        break
    try:
        yield f"https://localhost:{port}/api/v1", app
    finally:
        stopped.set()
        await task


async def test_calls_go_upstream_over_one_tls_connection_and_are_billed(
    make_ledger: LedgerFactory, tls_upstream: tuple[str, TlsUpstream]
) -> None:
    base_url, upstream = tls_upstream
    ledger: Ledger = await make_ledger(proxy={"base_url": base_url, "api_key": "sk-tls"})
    await ledger.grant("user_1", 10 * ledger.money.unit)
    app = create_app(ledger, sweep=False)
    headers = {
        "Authorization": f"Bearer {await create_key(ledger, 'app')}",
        "X-Creditsd-Account": "user_1",
    }
    body = {"model": MODEL, "messages": HI, "max_tokens": 600}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://creditsd.test"
    ) as http:
        answers = [
            await http.post("/openai/v1/chat/completions", json=body, headers=headers)
            for _ in range(3)
        ]
    await app.state.proxy.aclose()
    await app.state.stripe.close()
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert answers[0].json()["choices"][0]["message"]["content"] == "Hello!"
    versions = {version for version, _port in upstream.calls}
    ports = {port for _version, port in upstream.calls}
    assert (len(upstream.calls), versions, len(ports)) == (3, {"1.1"}, 1)
    assert await settled(ledger) == (10 * ledger.money.unit - 3 * FULL_PRICE, 0)
