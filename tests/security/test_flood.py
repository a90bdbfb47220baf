"""One address trying to tire the server out: floods of frames before and after hello, a client
that floods and never reads, a stream of new sessions, a pile of console sockets. A real app
(uvicorn, the embedded store), real sockets; raw TCP where a polite client library would not
misbehave enough."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from flowengine.server.config import ServerConfig
from tests.app_server import AppServer
from tests.server_process import Agent, Client, eventually


def _config(**overrides: Any) -> ServerConfig:
    return ServerConfig(flows_dir="flows", handoff_config=None, **overrides)


@pytest.fixture
async def app() -> AsyncIterator[AppServer]:
    config = _config(flood_close_after=60, flood_cooldown=1.0, hello_timeout=1.5)
    async with AppServer(config) as server:
        yield server


def _refused(app: AppServer, socket_kind: str, what: str) -> float:
    return app.runtime.metrics.refused.labels(socket_kind, what)._value.get()


async def _closed_with(ws: Any, timeout: float = 10.0) -> tuple[int | None, list[dict[str, Any]]]:
    """Read until the server closes: its close code, and the frames it sent first."""
    got: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            async for raw in ws:
                got.append(json.loads(raw))
    except websockets.ConnectionClosed:
        pass
    return ws.close_code, got


async def test_a_flood_is_dropped_unread_then_closed_and_its_address_made_to_wait(
    app: AppServer,
) -> None:
    c = await Client.connect(app.ws_url)
    for i in range(200):
        await c.ws.send(json.dumps({"type": "ping", "id": f"p{i}"}))
    code, got = await _closed_with(c.ws)
    assert code == 1008
    errors = [f["code"] for f in got if f["type"] == "error"]
    # Within the burst: pongs; then one rate_limited for the first drop (its id named), nothing
    # for the rest, and `flooding` when 60 were dropped.
    assert errors == ["rate_limited", "flooding"]
    assert next(f for f in got if f.get("code") == "rate_limited")["id"].startswith("p")
    assert len([f for f in got if f["type"] == "pong"]) <= 20
    assert _refused(app, "shopper", "frame_dropped") == 59

    # The address waits out the cool-down (1 s here, 30 s by default): refused at the door.
    with pytest.raises(websockets.InvalidStatus) as refused:
        await Client.connect(app.ws_url)
    assert refused.value.response.status_code == 429
    assert refused.value.response.headers["Retry-After"] == "1"
    await asyncio.sleep(1.1)
    again = await Client.connect(app.ws_url)  # then it may come back
    await again.close()


async def test_frames_before_hello_are_rate_limited_and_the_hello_timeout_holds(
    app: AppServer,
) -> None:
    # A burst of junk before hello: each answered only within the rate, then closed as a flood.
    async with websockets.connect(app.ws_url) as ws:
        for _ in range(100):
            await ws.send("junk")
        code, got = await _closed_with(ws)
    assert code == 1008
    codes = [f["code"] for f in got]
    assert codes.count("bad_json") <= 20 and codes[-2:] == ["rate_limited", "flooding"]
    await asyncio.sleep(1.1)  # the cool-down

    # One junk frame every 0.3 s never resets the clock: closed 1.5 s after opening.
    async with websockets.connect(app.ws_url) as ws:
        loop = asyncio.get_running_loop()
        opened = loop.time()

        async def drip() -> None:
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await ws.send("{}")
                    await asyncio.sleep(0.3)

        dripping = asyncio.create_task(drip())
        code, got = await _closed_with(ws)
        await dripping
    assert code == 1008 and got[-1]["code"] == "hello_timeout"
    assert 1.4 < loop.time() - opened < 3.0


def _masked(payload: bytes) -> bytes:
    """One client-to-server text frame (clients must mask)."""
    mask = os.urandom(4)
    head = bytes([0x81])
    n = len(payload)
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_a_client_that_never_reads_is_dropped() -> None:
    """A client that sends and never reads: once the server has waited `send_timeout` to hand
    it a frame, the connection is dropped, with what was buffered for it. A client sending
    the same but reading stays."""
    fast = 1e6  # rates out of the way: the send bound is what is tested
    config = _config(
        send_timeout=1.0, socket_rate=fast, socket_burst=10**6, ip_rate=fast, ip_burst=10**6
    )
    async with AppServer(config) as app:
        sockets = app.runtime.metrics.open_sockets

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # it reads nothing anyway
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", app.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
        hello = {"type": "hello", "session": None, "last_seq": 0, "locale": "en", "context": {}}
        writer.write(_masked(json.dumps(hello).encode()))
        await eventually(lambda: sockets._value.get() == 1)
        ping = _masked(b'{"type":"ping"}')
        for _ in range(100):  # 2,000,000 pongs' worth of asking, never read
            writer.write(ping * 20_000)
            await asyncio.sleep(0)
            if sockets._value.get() == 0:
                break
        await eventually(lambda: sockets._value.get() == 0, timeout=15)
        writer.transport.abort()

        # The same pace, read: the socket stays.
        c = await Client.connect(app.ws_url)
        for _ in range(2000):
            await c.ws.send('{"type":"ping"}')
        pongs = 0
        while pongs < 2000:
            pongs += (await c.recv())["type"] == "pong"
        assert sockets._value.get() == 1
        await c.close()


async def test_new_sessions_per_address_are_limited_and_resuming_is_not() -> None:
    async with AppServer(_config(new_sessions_per_minute=3)) as app:
        first = [await Client.connect(app.ws_url) for _ in range(3)]
        with pytest.raises(websockets.ConnectionClosed) as refused:
            await Client.connect(app.ws_url)
        assert refused.value.rcvd is not None and refused.value.rcvd.code == 1013
        assert _refused(app, "shopper", "session_refused") == 1
        # Resuming is not a new session: still allowed.
        again = await Client.connect(app.ws_url, session=first[0].session)
        assert again.session == first[0].session
        for c in [*first, again]:
            await c.close()


async def test_the_console_socket_has_a_per_address_cap_and_drops_floods(
    tmp_path: Any,
) -> None:
    config = _config(
        max_sockets_per_ip=5,
        flood_close_after=60,
        flood_cooldown=0.5,
        agents_file=str(tmp_path / "agents.json"),
    )
    async with AppServer(config) as app:
        # Five unauthenticated sockets are held; the sixth is refused at once.
        held = [await websockets.connect(app.ws_url.replace("/ws", "/agent/ws")) for _ in range(5)]
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(app.ws_url.replace("/ws", "/agent/ws"))
        assert refused.value.response.status_code == 429
        assert _refused(app, "agent", "socket_refused") >= 1
        for ws in held:
            await ws.close()

        from flowengine.handoff.accounts import Account
        from flowengine.handoff.passwords import hash_password

        app.runtime.handoffs.accounts.put(
            Account("alice", "Alice", "agent", ("general",), hash_password("pw-alice-123"))
        )
        agent = await Agent.login(app, "alice", "pw-alice-123")
        for i in range(200):
            await agent.ws.send(json.dumps({"type": "ping", "id": f"a{i}"}))
        code, got = await _closed_with(agent.ws)
        assert code == 1008
        errors = [f for f in got if f["type"] == "error"]
        assert [f["code"] for f in errors] == ["rate_limited", "flooding"]
        assert errors[0]["id"].startswith("a")


async def test_a_refused_socket_logs_no_error() -> None:
    """Each 429 used to log an ERROR ("returned without completing handshake"): an attacker
    reconnecting in a loop wrote thousands a second."""
    import logging

    seen: list[str] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.levelname)

    async with AppServer(_config(max_sockets_per_ip=1)) as app:
        handler = Seen()  # after the start: uvicorn's logging setup drops earlier handlers
        logging.getLogger("uvicorn.error").addHandler(handler)
        try:
            held = await Client.connect(app.ws_url)
            for _ in range(5):
                with pytest.raises(websockets.InvalidStatus):
                    await websockets.connect(app.ws_url)
            await held.close()
        finally:
            logging.getLogger("uvicorn.error").removeHandler(handler)
    assert "ERROR" not in seen


async def test_console_sockets_without_a_login_cool_their_address_down() -> None:
    from flowengine.server.guard import STRIKES_PER_MINUTE

    async with AppServer(_config(flood_cooldown=30.0)) as app:
        url = app.ws_url.replace("/ws", "/agent/ws")
        tries = 0
        with pytest.raises(websockets.InvalidStatus) as refused:
            for tries in range(STRIKES_PER_MINUTE * 2):  # noqa: B007 - counted
                ws = await websockets.connect(url)
                await ws.send(json.dumps({"type": "auth", "token": "guess"}))
                assert json.loads(await ws.recv())["code"] == "unauthorized"
                ws.transport.abort()  # not waiting for the close: it is the server's to end
        assert refused.value.response.status_code == 429
        assert tries >= STRIKES_PER_MINUTE  # a few refill while this runs
        # The shoppers' door is another: still open to that address.
        shopper = await Client.connect(app.ws_url)
        await shopper.close()
