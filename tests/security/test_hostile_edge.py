"""Hostile input at the edge (part of the hold-under-attack issue): text that cannot be encoded
never reaches the store, and the console login refuses what it should not read. A real app on a
real redis-server, real sockets."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from flowengine.handoff import service
from flowengine.handoff.accounts import Account
from flowengine.handoff.passwords import hash_password
from flowengine.server.config import ServerConfig
from tests.app_server import AppServer
from tests.server_process import Agent, Client

PASSWORD = "correct-horse-battery"
LONE = "\\udc80"  # half a surrogate pair, as a JSON escape: no UTF-8 can carry it


@functools.cache
def _hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
async def box(tmp_path: Path, redis_server: Any) -> AsyncIterator[AppServer]:
    redis_server.flush()
    config = ServerConfig(redis_url=redis_server.url, agents_file=str(tmp_path / "agents.json"))
    async with AppServer(config) as app:
        app.runtime.handoffs.accounts.put(
            Account("alice", "Alice", "agent", ("general", "orders"), _hash())
        )
        yield app


async def test_half_a_surrogate_pair_is_replaced_and_the_session_still_replays(
    box: AppServer,
) -> None:
    alice = await Agent.login(box, "alice", PASSWORD)  # online: the handoff will queue
    await alice.until(lambda f: f["type"] == "queue")
    ws = await websockets.connect(box.ws_url)
    hello = '{"type":"hello","session":null,"last_seq":0,"locale":"en","context":'
    await ws.send(hello + '{"shopper":{"name":"Eve' + LONE + '"}}}')
    shopper = Client(ws)
    shopper.session = (await shopper.next("session"))["session"]
    greeting = await shopper.until(lambda f: f.get("seq") == 1)
    assert greeting["text"].startswith("Hi Eve\ufffd!")
    await shopper.act({"type": "choose", "option": "track"})
    await ws.send('{"type":"text","id":"t1","text":"10' + LONE + '03 \\ud83d\\ude00"}')
    await shopper.until(lambda f: f.get("id") == "t1")
    echoed = next(f for f in shopper.frames if f.get("from") == "shopper" and "10" in f["text"])
    assert echoed["text"] == "10\ufffd03 \U0001f600"  # a whole pair (an emoji) is kept
    await shopper.act({"type": "handoff"})
    assert (await shopper.until(lambda f: f.get("type") == "handoff"))["status"] == "queued"
    await shopper.close()

    # The whole transcript replays, on a reload and to an agent; the reload's hello says nothing
    # of the shopper, which keeps the name the session has (it used to wipe it).
    again = await Client.connect(box.ws_url, session=shopper.session, last_seq=0)
    await again.until(lambda f: f.get("type") == "handoff")
    assert (await alice.act({"type": "claim", "session": shopper.session}))["type"] == "ack"
    chat = next(f for f in alice.frames if f["type"] == "chat")
    assert chat["packet"]["shopper"]["name"] == "Eve\ufffd", chat["packet"]["shopper"]
    for c in (again, alice):
        await c.close()


async def test_the_login_reads_only_a_small_json_body(box: AppServer) -> None:
    url = box.http + "/agent/api/login"
    async with httpx.AsyncClient() as http:
        huge = await http.post(
            url,
            content=b'{"username":"' + b"a" * 5_000_000 + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert huge.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for _ in range(100):
                yield b" " * 10_000

        streamed = await http.post(
            url, content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        # What a cross-site form or a text/plain fetch sends is not read at all.
        body = json.dumps({"username": "alice", "password": PASSWORD})
        plain = await http.post(url, content=body, headers={"Content-Type": "text/plain"})
        assert plain.status_code == 415
        ok = await http.post(url, content=body, headers={"Content-Type": "application/json"})
        assert ok.status_code == 200


async def test_an_unknown_username_costs_the_same_kdf_run(
    box: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    real = service.verify_password

    def counting(password: str, stored: str) -> bool:
        checked.append(stored)
        return real(password, stored)

    monkeypatch.setattr(service, "verify_password", counting)
    for username in ("alice", "nobody-here"):
        status, _ = await box.post("/agent/api/login", {"username": username, "password": "x" * 12})
        assert status == 401
    assert len(checked) == 2 and all(s.startswith("scrypt$") for s in checked)


async def test_a_binary_or_late_first_frame_on_the_console_socket_is_unauthorized(
    box: AppServer,
) -> None:
    url = box.ws_url.replace("/ws", "/agent/ws")
    async with websockets.connect(url) as ws:
        await ws.send(b"\x00\x01binary")
        assert json.loads(await ws.recv())["code"] == "unauthorized"
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1008


async def test_invalid_utf8_closes_the_socket_with_1007_and_writes_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A text frame that is not UTF-8 ends the socket (RFC 6455: 1007), on both paths, without
    the ERROR and traceback uvicorn logs for it: anyone could fill the log with those."""
    import logging

    uvicorn_log = logging.getLogger("uvicorn.error")  # uvicorn's own: not propagated
    async with AppServer(ServerConfig()) as app:
        uvicorn_log.addHandler(caplog.handler)  # after uvicorn has set its logging up
        try:
            for path in ("/ws", "/agent/ws"):
                ws = await websockets.connect(f"ws://127.0.0.1:{app.port}{path}")
                await ws.send(b"\xff\xfe{}", text=True)
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
            c = await Client.connect(app.ws_url)  # the server goes on
            await c.until(lambda f: f.get("seq") == 1)
            await c.close()
        finally:
            uvicorn_log.removeHandler(caplog.handler)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
