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
from .connection import SERVER_RESTART, Follower, accept, hang_up
from .flows import FlowsUnavailable
from .guard import FrameGate, TokenBucket, Verdict, frame_id_of, too_large
from .protocol import ACTIONS, Hello, ProtocolError, decode, parse_action, parse_hello
from .runtime import Runtime
from .sessions import SessionGone, TooManySessions

log = logging.getLogger("flowengine.ws")


class ShopperSocket(Follower):
    shopper = True

    def __init__(self, ws: WebSocket, runtime: Runtime, ip: str) -> None:
        config = runtime.config
        super().__init__(ws, runtime.store, config.send_timeout)
        self.runtime = runtime
        self.ip = ip
        self.sid = ""
        self.gate = FrameGate(
            TokenBucket(config.socket_rate, config.socket_burst),
            lambda: runtime.limits.take(ip),
            config.flood_close_after,
        )

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
        """The next text frame within the socket's rate; None for a frame refused (over the
        rate, binary, oversized), after an error frame where one is due."""
        if timeout is None:  # in a conversation: no wait_for, a coroutine less per frame
            message = await self.ws.receive()
        else:
            message = await asyncio.wait_for(self.ws.receive(), timeout)
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text: str | None = message.get("text")
        limit = self.runtime.config.max_frame_bytes
        verdict = self.gate.admit()
        if verdict != "pass":
            await self.refuse(verdict, text)
            return None
        if text is None:
            await self.error("bad_frame", "frames are JSON text, not binary")
            return None
        if too_large(text, limit):
            await self.error("frame_too_large", f"frames are limited to {limit} bytes")
            return None
        return text

    async def refuse(self, verdict: Verdict, text: str | None) -> None:
        """A frame over the rate: nothing is parsed, one answer a second, a flood ends it."""
        refused = self.runtime.metrics.refused
        if verdict == "close":
            refused.labels("shopper", "flood_closed").inc()
            self.runtime.limits.flooded(self.ip)
            await self.error("flooding", "too many messages: this connection is closed")
            await hang_up(self.ws, 1008)
            raise _Closed()
        refused.labels("shopper", "frame_dropped").inc()
        if verdict == "answer":
            limit = self.runtime.config.max_frame_bytes
            frame_id = frame_id_of(text, limit) if text is not None else None
            await self.error("rate_limited", "too many messages; slow down", frame_id)

    # -- the handshake ---------------------------------------------------------------------
    async def handshake(self) -> Hello | None:
        """Wait for a valid hello (errors for anything else, within the rate); None if none
        comes within `hello_timeout` of the socket opening, whatever else arrives."""
        config = self.runtime.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.hello_timeout
        while True:
            try:
                text = await self.receive(max(0.0, deadline - loop.time()))
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
            opened = await self.runtime.sessions.open(
                hello, may_start=lambda: self.runtime.limits.new_session(self.ip)
            )
        except TooManySessions:
            self.runtime.metrics.refused.labels("shopper", "session_refused").inc()
            await self.error(
                "too_many_sessions", "too many new conversations from here; try again in a minute"
            )
            await self.ws.close(code=1013)
            return False
        except (StoreUnavailable, FlowsUnavailable):
            await self.store_error("the service is briefly unavailable; reconnect")
            await self.ws.close(code=1011)
            return False
        self.sid = opened.sid
        self.batch = hello.batch
        # A client that has shown more than is stored (a failover lost events it was sent) is
        # told to forget them, and gets the whole transcript: else it would skip the new events
        # that reuse those seqs.
        reset = opened.resumed and hello.last_seq > opened.seq
        if reset:
            log.warning("a client was ahead of the stored transcript; replaying it whole")
        self.sent[opened.sid] = hello.last_seq if opened.resumed and not reset else 0
        async with self.batched():  # the session, the replay and the place in line
            await self.send(
                frames.session(
                    opened.sid, resumed=opened.resumed, expired=opened.expired, reset=reset
                )
            )
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
        while True:
            text = await self.receive()
            if text is None:
                continue
            try:
                frame = decode(text)
                await HANDLERS.get(frame["type"], on_action)(self, frame)
            except ProtocolError as exc:
                await self.error(exc.code, exc.message, exc.frame_id)
            except _Closed:
                return


class _Closed(Exception):
    """The socket was closed: its session is gone, or it flooded."""


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
    async with conn.acting_on(conn.sid):  # it sends its own events, below
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
        async with conn.batched():  # the events and the ack: one message, if the client reads it
            try:
                await conn.news(conn.sid, applied.seq, applied.events)
            except StoreUnavailable:
                runtime.metrics.store_errors.inc()
            await conn.send(
                frames.ack(action.id, applied.seq, duplicate=applied.outcome == "duplicate")
            )
    runtime.sessions.run_effects(conn.sid, applied.effects, conn.ip)


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
        runtime.metrics.refused.labels("shopper", "socket_refused").inc()
        return
    runtime.metrics.open_sockets.inc()
    conn = ShopperSocket(ws, runtime, ip)
    left = True  # the shopper went (not this server, restarting: they come back)
    try:
        hello = await conn.handshake()
        if hello is not None and await conn.open(hello):
            await conn.converse()
    except WebSocketDisconnect as exc:
        left = exc.code != SERVER_RESTART
    except _Closed:
        pass
    finally:
        conn.closed = True
        runtime.metrics.open_sockets.dec()
        runtime.limits.close(ip)
        if conn.sid:
            await runtime.hub.detach(conn.sid, conn, left=left)
