"""The HTTP edge under attack: connections that never finish their headers (slowloris), bodies
too big or too slow, X-Forwarded-For from proxies trusted and not, and the demo page in someone
else's frame. A real app on uvicorn as `serve` configures it; raw TCP where an HTTP client
library would be too polite."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets

from flowengine.server.config import ServerConfig
from tests.app_server import AppServer
from tests.server_process import Client, Listening, ServerProcess

HEADER_TIMEOUT = 0.5
MARGIN = 5.0  # closed within the timeout and this (a loaded CI box), never "fast"
# A socket over its address's budget: refused before the handshake (HTTP 429, or 403), or
# accepted and closed with 1013 ("try again later").
REFUSED = (429, 403, 1013)


def _config(**overrides: Any) -> ServerConfig:
    options: dict[str, Any] = {
        "handoff_config": None,
        "header_timeout": HEADER_TIMEOUT,
        "keep_alive_timeout": 1,
        "body_timeout": 0.5,
    }
    return ServerConfig(**{**options, **overrides})


@pytest.fixture
async def app() -> AsyncIterator[AppServer]:
    async with AppServer(_config()) as server:
        yield server


async def _open(app: AppServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", app.port)


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sent until it closed the connection (fails if it did not within
    `seconds`). A reset counts as closed: a server that closes while bytes the client kept
    sending are still unread makes the kernel answer with RST instead of FIN."""
    got = b""
    async with asyncio.timeout(seconds):
        try:
            while chunk := await reader.read(65536):
                got += chunk
        except ConnectionResetError:
            pass
    return got


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), MARGIN)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", 0))), 5)
    return int(lines[0].split()[1]), headers, body


async def test_connections_that_never_finish_their_headers_are_closed(app: AppServer) -> None:
    silent = [await _open(app) for _ in range(20)]
    half = [await _open(app) for _ in range(20)]
    for _, writer in half:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    opened = time.monotonic()

    async def trickle(writer: asyncio.StreamWriter) -> None:
        """A byte of header now and then, as slowloris does (each resets an idle timer)."""
        for _ in range(40):
            await asyncio.sleep(0.1)
            if writer.is_closing():
                return
            writer.write(b"X")

    trickling = [asyncio.create_task(trickle(w)) for _, w in half]
    closed = await asyncio.gather(*(_closed_within(r, HEADER_TIMEOUT + MARGIN) for r, _ in silent))
    closed += await asyncio.gather(*(_closed_within(r, HEADER_TIMEOUT + MARGIN) for r, _ in half))
    assert closed == [b""] * 40  # closed, with nothing said
    assert time.monotonic() - opened < HEADER_TIMEOUT + MARGIN
    for task in trickling:
        task.cancel()
    for _, writer in silent + half:
        writer.close()
    # and the server still answers whoever asks properly
    async with httpx.AsyncClient() as http:
        assert (await http.get(app.http + "/healthz")).status_code == 200


async def test_a_kept_alive_connection_gets_the_same_deadline_for_its_next_request(
    app: AppServer,
) -> None:
    reader, writer = await _open(app)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, _ = await _response(reader)
    assert status == 200
    # The next request's headers, a byte every 0.1 s: never idle, never finished.
    writer.write(b"G")
    for _ in range(int((HEADER_TIMEOUT + MARGIN) / 0.1)):
        await asyncio.sleep(0.1)
        if reader.at_eof() or writer.is_closing():
            break
        writer.write(b"E")
    assert await _closed_within(reader, 1.0) == b""
    writer.close()

    # Idle after a response: the keep-alive timeout closes it.
    reader, writer = await _open(app)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await _response(reader))[0] == 200
    assert await _closed_within(reader, 1 + MARGIN) == b""
    writer.close()


async def test_a_body_nobody_reads_cannot_keep_a_connection(app: AppServer) -> None:
    """/healthz reads no body: it answers, and a client still trickling one is then closed."""
    reader, writer = await _open(app)
    writer.write(b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    status, _, _ = await _response(reader)
    assert status == 405
    for _ in range(int((HEADER_TIMEOUT + MARGIN) / 0.1)):
        if reader.at_eof() or writer.is_closing():
            break
        writer.write(b"1\r\nx\r\n")
        await asyncio.sleep(0.1)
    assert await _closed_within(reader, 1.0) == b""
    writer.close()


async def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(
    app: AppServer,
) -> None:
    for path in ("/healthz", "/agent/api/login", "/no-such-page"):
        reader, writer = await _open(app)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000000\r\n\r\n".encode()
        )
        status, _, body = await _response(reader)  # no byte of the body was sent
        assert status == 413, path
        assert json.loads(body) == {"error": "the request body may be at most 65536 bytes"}
        # The body it said it would send never comes: closed as idle (keep-alive timeout).
        assert await _closed_within(reader, 1 + MARGIN) == b""
        writer.close()


async def test_a_client_that_sends_its_refused_body_anyway_reads_the_413_and_is_closed(
    app: AppServer,
) -> None:
    async with httpx.AsyncClient() as http:  # it sends the 5 MB; the answer is still read
        r = await http.post(app.http + "/healthz", content=b"x" * 5_000_000)
        assert r.status_code == 413
    reader, writer = await _open(app)
    writer.write(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
    assert (await _response(reader))[0] == 413
    for _ in range(int((HEADER_TIMEOUT + MARGIN) / 0.1)):  # the body, on and on
        if reader.at_eof() or writer.is_closing():
            break
        writer.write(b"x" * 1000)
        await asyncio.sleep(0.1)
    assert await _closed_within(reader, 1.0) == b""  # within the header timeout
    writer.close()


async def test_a_streamed_body_is_counted_and_refused_once_past_the_limit() -> None:
    # Below the login's own 4 KiB, so that what answers is the limit on every route.
    async with AppServer(_config(max_body_bytes=1024)) as app:
        reader, writer = await _open(app)
        writer.write(
            b"POST /agent/api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(3):
            writer.write(b"200\r\n" + b" " * 0x200 + b"\r\n")  # 512 bytes a chunk
        status, _, body = await _response(reader)
        assert status == 413
        assert json.loads(body) == {"error": "the request body may be at most 1024 bytes"}
        assert await _closed_within(reader, 1 + MARGIN) == b""
        writer.close()
        # A small login is read as before.
        async with httpx.AsyncClient() as http:
            r = await http.post(app.http + "/agent/api/login", json={"username": "x"})
            assert r.status_code == 400


async def test_a_body_that_does_not_arrive_in_time_gets_408(app: AppServer) -> None:
    reader, writer = await _open(app)
    writer.write(
        b"POST /agent/api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n" + b'{"username":'
    )
    status, headers, body = await _response(reader)  # within body_timeout and the margin
    assert status == 408 and headers["connection"] == "close"
    assert json.loads(body) == {"error": "the request body did not arrive within 0.5 s"}
    assert await _closed_within(reader, MARGIN) == b""
    writer.close()


async def test_sockets_are_not_held_to_the_http_deadlines(app: AppServer) -> None:
    c = await Client.connect(app.ws_url)
    await c.until(lambda f: f.get("seq") == 1)
    await asyncio.sleep(HEADER_TIMEOUT * 3)  # past every HTTP deadline: idle is fine here
    await c.send({"type": "ping", "id": "p1"})
    assert (await c.next("pong"))["type"] == "pong"
    await c.close()


async def _xff_socket(app: Listening, forwarded_for: str) -> Any:
    """A shopper socket that says it comes through a proxy for `forwarded_for`: its first
    frame (a session: accepted), or how it was refused (an HTTP status or a close code)."""
    try:
        ws = await websockets.connect(
            app.ws_url, additional_headers={"X-Forwarded-For": forwarded_for}
        )
    except websockets.InvalidStatus as refused:
        return refused.response.status_code
    await ws.send(json.dumps({"type": "hello", "session": None, "last_seq": 0, "locale": "en"}))
    try:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
    except websockets.ConnectionClosed:
        return ws.close_code
    assert frame["type"] == "session", frame
    return ws


async def test_behind_a_trusted_proxy_each_shopper_has_their_own_socket_budget() -> None:
    config = _config(max_sockets_per_ip=1)
    async with AppServer(config, forwarded_allow_ips="127.0.0.1") as app:
        first = await _xff_socket(app, "203.0.113.5")
        other = await _xff_socket(app, "198.51.100.7, 203.0.113.9")  # the nearest untrusted hop
        assert not isinstance(first, int) and not isinstance(other, int)
        assert await _xff_socket(app, "203.0.113.5") in REFUSED  # that shopper's one is used
        again = await _xff_socket(app, "203.0.113.6")
        assert not isinstance(again, int)
        for ws in (first, other, again):
            await ws.close()


async def test_x_forwarded_for_from_an_untrusted_address_is_ignored() -> None:
    config = _config(max_sockets_per_ip=1)
    # This test connects from 127.0.0.1, which is not the proxy here.
    async with AppServer(config, forwarded_allow_ips="10.9.9.9") as app:
        first = await _xff_socket(app, "203.0.113.5")
        assert not isinstance(first, int)
        assert await _xff_socket(app, "198.51.100.7") in REFUSED  # both are 127.0.0.1
        await first.close()


async def test_serve_takes_the_proxies_and_the_header_timeout_from_its_options_and_env() -> None:
    trusting = ServerProcess(
        "--max-sockets-per-ip", "1", "--forwarded-allow-ips", "127.0.0.1", "--header-timeout", "1"
    )
    distrusting = ServerProcess(
        "--max-sockets-per-ip", "1", env={"FLOWENGINE_FORWARDED_ALLOW_IPS": "10.9.9.9"}
    )
    for server in (trusting, distrusting):
        server.start()
    try:
        a = await _xff_socket(trusting, "203.0.113.5")
        b = await _xff_socket(trusting, "203.0.113.6")
        assert not isinstance(a, int) and not isinstance(b, int)
        c = await _xff_socket(distrusting, "203.0.113.5")
        assert not isinstance(c, int)
        assert await _xff_socket(distrusting, "203.0.113.6") in REFUSED
        for ws in (a, b, c):
            await ws.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", trusting.port)
        assert await _closed_within(reader, 1 + MARGIN) == b""
        writer.close()
    finally:
        for server in (trusting, distrusting):
            server.stop()


async def test_the_demo_page_may_not_be_framed_and_the_widget_loads_anywhere(
    app: AppServer,
) -> None:
    async with httpx.AsyncClient() as http:
        page = await http.get(app.http + "/")
        widget = await http.get(app.http + "/widget.js", headers={"Origin": "https://shop.test"})
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert widget.status_code == 200
    assert "x-frame-options" not in widget.headers
    assert "content-security-policy" not in widget.headers
    assert "cross-origin-resource-policy" not in widget.headers


async def test_headers_over_16_kib_are_refused_however_they_arrive(app: AppServer) -> None:
    reader, writer = await _open(app)
    big = "X-Big: " + "a" * 20_000 + "\r\n"
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: x\r\n{big}\r\n".encode())  # one write
    status, _, _ = await _response(reader)
    assert status == 431
    assert await _closed_within(reader, MARGIN) == b""
    writer.close()
    # Headers just under the limit are fine.
    reader, writer = await _open(app)
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Ok: {'a' * 15_000}\r\n\r\n".encode())
    assert (await _response(reader))[0] == 200
    writer.close()


async def test_a_websocket_handshake_the_parser_refuses_is_dropped_at_once(
    app: AppServer,
) -> None:
    """One header line over 8 KiB: h11 passes it on, the WebSocket parser refuses it. It was
    answered by nothing and held the connection for ever."""
    held = []
    for _ in range(20):
        reader, writer = await _open(app)
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + b"X-Long: "
            + b"a" * 9000
            + b"\r\n\r\n"
        )
        held.append((reader, writer))
    for reader, _ in held:
        await _closed_within(reader, MARGIN)
    for _, writer in held:
        writer.close()


async def test_a_ping_flood_drops_the_socket_and_spares_everyone_else(app: AppServer) -> None:
    """Pings are answered by the protocol, never by the app: they have their own rate."""
    calm = await Client.connect(app.ws_url)
    flooder = await websockets.connect(app.ws_url)
    with pytest.raises(websockets.ConnectionClosed):
        for i in range(10_000):
            await flooder.ping(i.to_bytes(4, "big"))
            if i % 100 == 0:
                await asyncio.sleep(0)
        await flooder.recv()
    # Its address cools down as after a frame flood (the app never saw those pings).
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(app.ws_url)
    assert refused.value.response.status_code == 429
    assert app.runtime.metrics.refused.labels("shopper", "ping_flood")._value.get() == 1
    # A socket already open is not touched: a few pings, at a person's pace, are answered.
    await asyncio.wait_for(await calm.ws.ping(), MARGIN)
    await calm.send({"type": "ping"})
    assert (await calm.next("pong"))["type"] == "pong"
    await calm.close()
