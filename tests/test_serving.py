"""A real ``creditsd serve`` under hostile connections: requests that never finish
arriving are closed, connections beyond the cap are refused with 503, running out of file
descriptors neither floods the log nor stops the service (issue 10's findings)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.test_processes import admin_secret, serve

pytestmark = pytest.mark.slow

CONFIG = """
[server]
request_timeout = 1
max_connections = 40
"""


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "creditsd.toml"
    path.write_text(CONFIG)
    return path


def _connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _answer(sock: socket.socket) -> bytes:
    """All the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"POST /v1/charges HTTP/1.1\r\nHost: creditsd\r\n",
        b'POST /v1/charges HTTP/1.1\r\nHost: c\r\nContent-Length: 100\r\n\r\n{"account_id"',
    ],
    ids=["nothing", "half the headers", "half the body"],
)
def test_a_request_that_does_not_finish_arriving_is_closed(
    database_url: str, tmp_path: Path, sent: bytes
) -> None:
    with serve(database_url, tmp_path, config=_config(tmp_path)) as base:
        with _connect(base) as sock:
            sock.sendall(sent)
            started = time.monotonic()
            answer = _answer(sock)
            assert time.monotonic() - started < 4
        if sent:
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert b'"code":"request_timeout"' in answer
        # The service goes on answering.
        assert httpx.get(f"{base}/healthz").status_code == 200


async def test_connections_beyond_the_cap_are_refused_with_503_and_retry_after(
    database_url: str, tmp_path: Path
) -> None:
    secret = await admin_secret(database_url)
    with serve(database_url, tmp_path, config=_config(tmp_path)) as base:
        idle = [_connect(base) for _ in range(40)]
        await asyncio.sleep(0.2)
        headers = {"Authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(base_url=base, headers=headers) as http:
            refused = await http.get("/v1/accounts/a")
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "1"
            assert refused.json()["error"]["code"] == "unavailable"
            for sock in idle:
                sock.close()
            await asyncio.sleep(0.2)
            assert (await http.get("/v1/accounts/a")).status_code == 200


async def test_running_out_of_descriptors_neither_floods_the_log_nor_stops_the_service(
    database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "creditsd.toml"
    config.write_text("[server]\nrequest_timeout = 2\nmax_connections = 10000\n")
    with serve(database_url, tmp_path, config=config, open_files=128) as base:
        held = []
        for _ in range(300):  # more than the process may open
            try:
                held.append(_connect(base))
            except OSError:
                break
        await asyncio.sleep(3)  # the server closes what never sent a request
        for sock in held:
            sock.close()
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{base}/healthz", timeout=5)).status_code == 200
    log = "".join(path.read_text() for path in tmp_path.glob("serve-*.log"))  # noqa: ASYNC240
    assert log.count("Traceback") <= 3, log[-3000:]
    assert len(log.splitlines()) < 100, log[-3000:]


def test_one_connection_is_answered_without_waiting_for_delayed_acks(
    database_url: str, tmp_path: Path
) -> None:
    # uvicorn writes a response's head and body apart; with Nagle's algorithm on, the body
    # waits for the client's delayed ACK of the head: ~40 ms a request on Linux.
    with serve(database_url, tmp_path) as base, httpx.Client(base_url=base) as http:
        took = []
        for _ in range(20):
            started = time.perf_counter()
            assert http.get("/healthz").status_code == 200
            took.append(time.perf_counter() - started)
    assert sorted(took)[10] < 0.02, took


# One route of each kind that reads a body: the fast lanes, a FastAPI route, the proxy, the
# gateway's and the providers' webhook receivers, a console form.
BODY_READERS = [
    "/v1/charges",
    "/v1/grants",
    "/openai/v1/chat/completions",
    "/openai/v1/embeddings",
    "/api/internal/webhooks/usage",
    "/webhooks/stripe",
    "/webhooks/clerk",
    "/admin/login",
]
GATEWAY_SECRET = "gateway-internal-secret-0123456789"


def _half_a_body(path: str, secret: str) -> bytes:
    """A request on ``path`` whose headers pass every check made before its body is read,
    and whose body stops after 13 of the 100 bytes it announces."""
    form = path.startswith("/admin/")
    kind = "application/x-www-form-urlencoded" if form else "application/json"
    return (
        f"POST {path} HTTP/1.1\r\nHost: creditsd\r\nContent-Type: {kind}\r\n"
        f"Authorization: Bearer {secret}\r\nX-Creditsd-Account: u\r\n"
        f"X-Internal-Secret: {GATEWAY_SECRET}\r\nContent-Length: 100\r\n\r\n"
        '{"account_id"'
    ).encode()


def _access_lines(tmp_path: Path) -> tuple[str, list[dict[str, object]]]:
    log = "".join(path.read_text() for path in tmp_path.glob("serve-*.log"))
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return log, lines


async def _body_readers_config(database_url: str, tmp_path: Path) -> tuple[str, Path]:
    """An admin key's secret, and a config with the gateway on (its routes read bodies)."""
    secret = await admin_secret(database_url)
    config = tmp_path / "creditsd.toml"
    config.write_text(f'{CONFIG}\n[gateway]\ninternal_secret = "{GATEWAY_SECRET}"\n')
    return secret, config


async def test_a_client_that_hangs_up_mid_body_is_one_499_line_and_no_traceback(
    database_url: str, tmp_path: Path
) -> None:
    secret, config = await _body_readers_config(database_url, tmp_path)
    with serve(database_url, tmp_path, config=config) as base:
        for path in BODY_READERS:
            with _connect(base) as sock:
                sock.sendall(_half_a_body(path, secret))
                await asyncio.sleep(0.1)  # the body is being read when the client leaves
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{base}/healthz")).status_code == 200
    log, lines = _access_lines(tmp_path)
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
    statuses = {line["path"]: line["status"] for line in lines}
    assert statuses == {**dict.fromkeys(BODY_READERS, 499), "/readyz": 200, "/healthz": 200}
    assert len(log.splitlines()) < 30, log


async def test_a_client_that_stalls_mid_body_is_cut_with_408_and_one_line(
    database_url: str, tmp_path: Path
) -> None:
    secret, config = await _body_readers_config(database_url, tmp_path)
    with serve(database_url, tmp_path, config=config) as base:
        for path in BODY_READERS:
            with _connect(base) as sock:
                sock.sendall(_half_a_body(path, secret))
                started = time.monotonic()
                answer = _answer(sock)
                assert time.monotonic() - started < 4
                assert answer.startswith(b"HTTP/1.1 408 "), (path, answer)
        await asyncio.sleep(0.2)
    log, lines = _access_lines(tmp_path)
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
    statuses = {line["path"]: line["status"] for line in lines}
    assert statuses == {**dict.fromkeys(BODY_READERS, 408), "/readyz": 200}
