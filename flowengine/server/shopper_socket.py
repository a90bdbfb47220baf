"""The shopper's WebSocket at /ws (docs/protocol.md).

    client: hello          -> server: session, then every stored event after last_seq
    client: choose|text|handoff|restart (with an id)
                           -> server: the new events, then ack {id, seq}; or error {code, id}

Events reach every socket of a session, on any instance, in seq order: a socket only ever sends
what it reads from the session's log after the last seq it sent, and is told to look when a
commit lands (locally or through the store's fan-out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..store import StoreUnavailable
from .flows import FlowsUnavailable
from .guard import TokenBucket, origin_allowed
from .protocol import ProtocolError, decode, error_frame, parse_action, parse_hello
from .sessions import SessionGone
from .wire import send_frame

if TYPE_CHECKING:
    from .app import Server

log = logging.getLogger("flowengine.ws")


class Watcher(Protocol):
    """Something on this process that wants news of a session: a shopper socket or a console."""

    async def news(self, sid: str, seq: int) -> None: ...

    async def signal(self, sid: str, payload: dict[str, Any]) -> None: ...


class Connection:
    def __init__(self, ws: WebSocket, server: Server) -> None:
        self.ws = ws
        self.server = server
        self.sid: str | None = None
        self.sent = 0
        self.lock = asyncio.Lock()
        self.closed = False

    async def send(self, frame: dict[str, Any]) -> None:
        if not self.closed and not await send_frame(self.ws, frame):
            self.closed = True

    async def news(self, sid: str, seq: int) -> None:
        if seq < 0 or seq > self.sent:
            await self.catch_up()

    async def signal(self, sid: str, payload: dict[str, Any]) -> None:
        if payload.get("typing") == "agent":
            await self.send({"type": "typing", "from": "agent"})

    async def error(self, code: str, message: str, frame_id: str | None = None) -> None:
        self.server.metrics.errors.labels(code).inc()
        await self.send(error_frame(code, message, frame_id))

    async def deliver(self, events: tuple[dict[str, Any], ...]) -> None:
        """Send events just stored, if they follow what this socket sent; else read the log."""
        async with self.lock:
            if events and events[0]["seq"] == self.sent + 1:
                for e in events:
                    await self.send(e)
                    self.sent = e["seq"]
                return
        await self.catch_up()

    async def catch_up(self) -> None:
        """Send every stored event after the last one this socket sent, in order."""
        if self.sid is None:
            return
        async with self.lock:
            while not self.closed:
                events = await self.server.store.replay(self.sid, self.sent, 200)
                if not events:
                    return
                for e in events:
                    await self.send(e)
                    self.sent = e["seq"]


async def shopper_socket(ws: WebSocket) -> None:
    server: Server = ws.app.state.server
    config = server.config
    origin = ws.headers.get("origin")
    if not origin_allowed(origin, ws.headers.get("host"), config.allowed_origins):
        log.warning("refused a socket from origin %s", origin)
        await ws.close(code=1008)
        return
    ip = ws.client.host if ws.client else "-"
    if not server.limits.open(ip):
        await ws.close(code=1013)
        return
    await ws.accept()
    server.metrics.open_sockets.inc()
    conn = Connection(ws, server)
    try:
        await _converse(conn, ip)
    except WebSocketDisconnect:
        pass
    finally:
        conn.closed = True
        server.metrics.open_sockets.dec()
        server.limits.close(ip)
        if conn.sid is not None:
            await server.detach(conn.sid, conn)


async def _receive(conn: Connection, timeout: float | None = None) -> str | None:
    message = await asyncio.wait_for(conn.ws.receive(), timeout)
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        await conn.error("bad_frame", "frames are JSON text, not binary")
        return None
    if len(text.encode("utf-8", "surrogatepass")) > conn.server.config.max_frame_bytes:
        await conn.error(
            "frame_too_large", f"frames are limited to {conn.server.config.max_frame_bytes} bytes"
        )
        return None
    return text


async def _converse(conn: Connection, ip: str) -> None:
    server = conn.server
    config = server.config
    hello = None
    while hello is None:
        try:
            text = await _receive(conn, config.hello_timeout)
        except TimeoutError:
            await conn.error("hello_timeout", "send hello first")
            await conn.ws.close(code=1008)
            return
        if text is None:
            continue
        try:
            hello = parse_hello(decode(text), config.identity_secret)
        except ProtocolError as exc:
            await conn.error(exc.code, exc.message, exc.frame_id)
    try:
        opened = await server.sessions.open(hello)
    except (StoreUnavailable, FlowsUnavailable):
        server.metrics.store_errors.inc()
        await conn.error("store_unavailable", "the service is briefly unavailable; reconnect")
        await conn.ws.close(code=1011)
        return
    conn.sid = opened.sid
    conn.sent = hello.last_seq if opened.resumed else 0
    await conn.send(
        {
            "type": "session",
            "session": opened.sid,
            "resumed": opened.resumed,
            "expired": opened.expired,
        }
    )
    await server.attach(opened.sid, conn)
    await _safe_catch_up(conn)

    bucket = TokenBucket(config.socket_rate, config.socket_burst)
    while True:
        text = await _receive(conn)
        if text is None:
            continue
        if not bucket.take() or not server.limits.take(ip):
            await conn.error("rate_limited", "too many messages; slow down")
            continue
        try:
            frame = decode(text)
            if frame["type"] == "ping":
                await conn.send({"type": "pong"})
                continue
            if frame["type"] == "typing":  # not stored: shown to the agent, if one is there
                with contextlib.suppress(Exception):
                    await server.store.signal(conn.sid, {"typing": "shopper"})  # type: ignore[attr-defined]
                continue
            if frame["type"] == "hello":
                raise ProtocolError("already_hello", "this socket already has a session")
            action = parse_action(frame)
        except ProtocolError as exc:
            await conn.error(exc.code, exc.message, exc.frame_id)
            continue
        began = time.perf_counter()
        try:
            assert conn.sid is not None
            applied = await server.sessions.apply(conn.sid, action.event, action.id)
        except SessionGone:
            await conn.error("session_expired", "this session has expired; reconnect", action.id)
            await conn.ws.close(code=1000)
            return
        except (StoreUnavailable, FlowsUnavailable):
            server.metrics.store_errors.inc()
            await conn.error(
                "store_unavailable",
                "not saved: the service is briefly unavailable; send it again",
                action.id,
            )
            continue
        server.metrics.step_latency.observe(time.perf_counter() - began)
        if applied.outcome == "error" and applied.error is not None:
            await conn.error(applied.error.code, applied.error.message, action.id)
            continue
        server.metrics.clicks.labels(action.kind).inc()
        try:
            await conn.deliver(applied.events)
        except StoreUnavailable:
            server.metrics.store_errors.inc()
        await conn.send(
            {
                "type": "ack",
                "id": action.id,
                "seq": applied.seq,
                "duplicate": applied.outcome == "duplicate",
            }
        )
        if applied.effects:
            server.sessions.spawn(server.sessions.run_effects(conn.sid, applied.effects))


async def _safe_catch_up(conn: Connection) -> None:
    try:
        await conn.catch_up()
    except StoreUnavailable:
        conn.server.metrics.store_errors.inc()
        await conn.error("store_unavailable", "the service is briefly unavailable")
