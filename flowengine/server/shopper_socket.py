"""The shopper's WebSocket at /ws (docs/protocol.md).

    client: hello          -> server: session, then every stored event after last_seq
    client: choose|text|handoff|restart (with an id)
                           -> server: the new events, then ack {id, seq}; or error {code, id}
    client: ping | typing  -> pong | (the agent sees the shopper typing)

After the handshake every frame goes through one table, `HANDLERS`, keyed by its type. Events
reach every socket of a session, on any instance, in seq order (`connection.Follower`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import frames
from ..store import StoreUnavailable
from .connection import Follower, accept
from .flows import FlowsUnavailable
from .guard import TokenBucket
from .protocol import ACTIONS, Hello, ProtocolError, decode, parse_action, parse_hello
from .runtime import Runtime
from .sessions import SessionGone

log = logging.getLogger("flowengine.ws")


class ShopperSocket(Follower):
    shopper = True

    def __init__(self, ws: WebSocket, runtime: Runtime, ip: str) -> None:
        super().__init__(ws, runtime.store)
        self.runtime = runtime
        self.ip = ip
        self.sid = ""

    async def signal(self, sid: str, payload: dict[str, Any]) -> None:
        if payload.get("typing") == "agent":
            await self.send(frames.agent_typing())
        elif "position" in payload:
            await self.send(frames.position(payload["queue"], payload["position"]))

    async def error(self, code: str, message: str, frame_id: str | None = None) -> None:
        self.runtime.metrics.errors.labels(code).inc()
        await self.send(frames.error(code, message, frame_id))

    async def store_error(self, message: str, frame_id: str | None = None) -> None:
        self.runtime.metrics.store_errors.inc()
        await self.error("store_unavailable", message, frame_id)

    async def receive(self, timeout: float | None = None) -> str | None:
        """The next text frame; None (after an error frame) for a binary or oversized one."""
        message = await asyncio.wait_for(self.ws.receive(), timeout)
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text: str | None = message.get("text")
        limit = self.runtime.config.max_frame_bytes
        if text is None:
            await self.error("bad_frame", "frames are JSON text, not binary")
            return None
        if len(text.encode("utf-8", "surrogatepass")) > limit:
            await self.error("frame_too_large", f"frames are limited to {limit} bytes")
            return None
        return text

    # -- the handshake ---------------------------------------------------------------------
    async def handshake(self) -> Hello | None:
        """Wait for a valid hello (errors for anything else); None if it never comes."""
        config = self.runtime.config
        while True:
            try:
                text = await self.receive(config.hello_timeout)
            except TimeoutError:
                await self.error("hello_timeout", "send hello first")
                await self.ws.close(code=1008)
                return None
            if text is None:
                continue
            try:
                return parse_hello(decode(text), config.identity_secret)
            except ProtocolError as exc:
                await self.error(exc.code, exc.message, exc.frame_id)

    async def open(self, hello: Hello) -> bool:
        try:
            opened = await self.runtime.sessions.open(hello)
        except (StoreUnavailable, FlowsUnavailable):
            await self.store_error("the service is briefly unavailable; reconnect")
            await self.ws.close(code=1011)
            return False
        self.sid = opened.sid
        self.sent[opened.sid] = hello.last_seq if opened.resumed else 0
        await self.send(frames.session(opened.sid, resumed=opened.resumed, expired=opened.expired))
        await self.runtime.hub.attach(opened.sid, self)
        try:
            await self.catch_up(opened.sid)
            if opened.resumed:  # a reload while waiting: the place in line as it is now
                place = await self.runtime.handoffs.place_in_line(opened.sid)
                if place is not None:
                    await self.send(frames.position(*place))
        except StoreUnavailable:
            await self.store_error("the service is briefly unavailable")
        return True

    # -- after the handshake: one frame at a time --------------------------------------------
    async def converse(self) -> None:
        config = self.runtime.config
        bucket = TokenBucket(config.socket_rate, config.socket_burst)
        while True:
            text = await self.receive()
            if text is None:
                continue
            if not bucket.take() or not self.runtime.limits.take(self.ip):
                await self.error("rate_limited", "too many messages; slow down")
                continue
            try:
                frame = decode(text)
                await HANDLERS.get(frame["type"], on_action)(self, frame)
            except ProtocolError as exc:
                await self.error(exc.code, exc.message, exc.frame_id)
            except _Closed:
                return


class _Closed(Exception):
    """The session is gone; the socket was closed."""


Handler = Callable[[ShopperSocket, dict[str, Any]], Awaitable[None]]


async def on_ping(conn: ShopperSocket, frame: dict[str, Any]) -> None:
    await conn.send(frames.pong())


async def on_typing(conn: ShopperSocket, frame: dict[str, Any]) -> None:
    """Not stored: shown to the agent, if one has the chat."""
    with contextlib.suppress(StoreUnavailable):
        await conn.runtime.handoffs.shopper_typing(conn.sid)


async def on_hello_again(conn: ShopperSocket, frame: dict[str, Any]) -> None:
    raise ProtocolError("already_hello", "this socket already has a session")


async def on_action(conn: ShopperSocket, frame: dict[str, Any]) -> None:
    """choose, text, handoff, restart: stored, then its events, then the ack, then effects."""
    action = parse_action(frame)  # an unknown type is refused here
    runtime = conn.runtime
    began = time.perf_counter()
    try:
        applied = await runtime.sessions.apply(conn.sid, action.event, action.id)
    except SessionGone:
        await conn.error("session_expired", "this session has expired; reconnect", action.id)
        await conn.ws.close(code=1000)
        raise _Closed() from None
    except (StoreUnavailable, FlowsUnavailable):
        await conn.store_error(
            "not saved: the service is briefly unavailable; send it again", action.id
        )
        return
    runtime.metrics.step_latency.observe(time.perf_counter() - began)
    if applied.error is not None:
        await conn.error(applied.error.code, applied.error.message, action.id)
        return
    runtime.metrics.clicks.labels(action.kind).inc()
    try:
        await conn.news(conn.sid, applied.seq, applied.events)
    except StoreUnavailable:
        runtime.metrics.store_errors.inc()
    await conn.send(frames.ack(action.id, applied.seq, duplicate=applied.outcome == "duplicate"))
    runtime.sessions.run_effects(conn.sid, applied.effects)


HANDLERS: dict[str, Handler] = {
    "ping": on_ping,
    "typing": on_typing,
    "hello": on_hello_again,
    **dict.fromkeys(ACTIONS, on_action),
}


async def shopper_socket(ws: WebSocket) -> None:
    runtime: Runtime = ws.app.state.runtime
    ip = ws.client.host if ws.client else "-"
    if not await accept(ws, runtime.config, lambda: runtime.limits.open(ip)):
        return
    runtime.metrics.open_sockets.inc()
    conn = ShopperSocket(ws, runtime, ip)
    try:
        hello = await conn.handshake()
        if hello is not None and await conn.open(hello):
            await conn.converse()
    except WebSocketDisconnect:
        pass
    finally:
        conn.closed = True
        runtime.metrics.open_sockets.dec()
        runtime.limits.close(ip)
        if conn.sid:
            await runtime.hub.detach(conn.sid, conn)
