"""The receive queue and the "writable" flag every socket's protocol holds (`lean_primitives`):
asyncio's semantics, nothing allocated until used; and the sockets that use them, on the real
app: what a client sends arrives in order, what the app sends waits while the client does not
read, and the socket paths the app serves itself behave as routes did."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
import websockets

from flowengine.server.app import App
from flowengine.server.config import ServerConfig
from flowengine.server.lean_primitives import LeanEvent, LeanQueue
from tests.app_server import AppServer
from tests.server_process import Client


async def test_queue_is_fifo_and_get_waits_for_a_put() -> None:
    q: LeanQueue[int] = LeanQueue()
    assert q.empty() and q.qsize() == 0
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.put_nowait(1)
    q.put_nowait(2)
    assert await getter == 1
    assert q.qsize() == 1 and await q.get() == 2 and q.empty()


async def test_two_getters_are_served_in_the_order_they_waited() -> None:
    q: LeanQueue[str] = LeanQueue()
    first, second = asyncio.create_task(q.get()), asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.put_nowait("a")
    q.put_nowait("b")
    assert await first == "a" and await second == "b"


async def test_a_getter_cancelled_after_its_wake_up_passes_the_item_on() -> None:
    """As asyncio.Queue: else the item would wait in the queue while another getter sleeps."""
    q: LeanQueue[str] = LeanQueue()
    first, second = asyncio.create_task(q.get()), asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.put_nowait("x")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "x"
    assert first.cancelled() and q.empty()


async def test_a_cancelled_getter_leaves_nothing_behind() -> None:
    q: LeanQueue[int] = LeanQueue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    getter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await getter
    q.put_nowait(7)
    assert await q.get() == 7


async def test_event_wakes_every_waiter_and_clear_makes_them_wait_again() -> None:
    e = LeanEvent()
    assert not e.is_set()
    waiters = [asyncio.create_task(e.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    e.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert await e.wait() is True  # set: returns at once
    e.clear()
    late = asyncio.create_task(e.wait())
    await asyncio.sleep(0.01)
    assert not late.done()
    late.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await late
    e.set()
    assert await e.wait() is True


async def test_a_socket_on_the_lean_protocol_works_both_ways() -> None:
    """Many frames sent at once all reach the app, and each is answered (the receive queue).
    (A client that stops reading, which makes the server's sends wait on the writable flag,
    is tested in tests/security/test_flood.py.)"""
    async with AppServer(ServerConfig(socket_rate=1000, socket_burst=1000)) as app:
        c = await Client.connect(app.ws_url)
        await c.until(lambda f: f.get("seq") == 1)
        for n in range(20):
            await c.ws.send(f'{{"type": "ping", "id": "p{n}"}}')
        pongs = [await c.until(lambda f: f.get("type") == "pong") for _ in range(20)]
        assert len(pongs) == 20
        ack = await c.act({"type": "choose", "option": "sizes"})
        assert ack["type"] == "ack"
        await c.close()


async def test_an_unknown_socket_path_is_refused() -> None:
    async with AppServer(ServerConfig()) as app:
        with pytest.raises(websockets.InvalidStatus) as exc:
            await websockets.connect(app.ws_url.replace("/ws", "/nowhere"))
        assert exc.value.response.status_code == 403


async def test_a_socket_handler_that_fails_is_logged_and_its_connection_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What Starlette's layers did for a socket (nothing but pass an exception on): uvicorn
    logs it and drops the connection (no close frame: the client sees 1006); the server goes
    on serving."""
    async with AppServer(ServerConfig()) as app:
        assert isinstance(app.app, App)

        async def broken(ws: object) -> None:
            await ws.accept()  # type: ignore[attr-defined]
            raise RuntimeError("boom")

        app.app.sockets["/broken"] = broken
        uvicorn_log = logging.getLogger("uvicorn.error")  # uvicorn's own: not propagated
        uvicorn_log.addHandler(caplog.handler)
        try:
            ws = await websockets.connect(app.ws_url.replace("/ws", "/broken"))
            with pytest.raises(websockets.ConnectionClosedError) as closed:
                await ws.recv()
        finally:
            uvicorn_log.removeHandler(caplog.handler)
        assert closed.value.rcvd is None  # dropped, no close frame
        assert "boom" in caplog.text
        c = await Client.connect(app.ws_url)
        await c.until(lambda f: f.get("seq") == 1)
        await c.close()
