"""Limits at the HTTP edge, on every route: how long a client may take to send a request's
headers and its body, and how big a body may be. WebSocket upgrades pass through untouched
(their own limits are the sockets').

HeaderTimeoutProtocol  uvicorn's h11 protocol, which closes a connection whose request headers
                       are not complete within `header_timeout` seconds of connecting, or of
                       the first byte of the next request on a kept-alive connection (uvicorn's
                       `timeout_keep_alive` closes one idle between requests)
BodyLimits             ASGI middleware: 413 for a body over `max_bytes` (declared or counted
                       as it arrives), 408 (and a closed connection) for one not all there
                       within `timeout` seconds

`flowengine serve` gives uvicorn `HeaderTimeoutProtocol` itself (each worker reads the timeout
from the server config in the environment, as the app does); a server in the tests' own loop
uses `header_timeout_protocol(seconds)`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from .guard import TokenBucket
from .lean_primitives import LeanEvent, LeanQueue

log = logging.getLogger("flowengine.http")

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_KEEP_ALIVE_TIMEOUT = 5
DEFAULT_BODY_TIMEOUT = 10.0
DEFAULT_MAX_BODY_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024  # a request line and its headers


@functools.cache
def _header_timeout_from_env() -> float:
    """`header_timeout` of the server config `flowengine serve` put in the environment."""
    try:
        options = json.loads(os.environ.get("FLOWENGINE_SERVER_CONFIG") or "{}")
        return float(options.get("header_timeout", DEFAULT_HEADER_TIMEOUT))
    except (ValueError, TypeError, AttributeError):
        return DEFAULT_HEADER_TIMEOUT


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers.

    The timer runs from the connection's start, and, once a response is complete, from the
    first byte that comes after it; it stops when a request's headers are in (or the connection
    becomes a WebSocket). A connection that sends nothing, or half a header a byte at a time,
    is closed when it runs out; so is one that trickles a body nobody reads after its response.
    """

    header_timeout: float | None = None  # None: the server config in the environment

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: float = (
            self.header_timeout if self.header_timeout is not None else _header_timeout_from_env()
        )
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes, self._header_tail, self._header_end_seen = 0, b"", False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        if self._header_timer is None and (cycle is None or cycle.response_complete):
            self._arm_header_timer()  # the first byte of the next request
        waiting = self._header_timer is not None and self.conn.their_state is h11.IDLE
        if waiting and self._headers_too_large(data):  # (not a refused body still coming)
            return
        super().data_received(data)
        if self.cycle is not cycle:
            self._disarm_header_timer()  # its headers are in: a new request is running

    def _headers_too_large(self, data: bytes) -> bool:
        """Count what arrives until a request's headers end; past `MAX_HEADER_BYTES`, answer
        431 and close (h11 bounds only what it holds incomplete: headers that arrive in a few
        large reads were not bounded at all)."""
        if self._header_end_seen:
            return False
        end = (self._header_tail + data).find(b"\r\n\r\n")
        if end >= 0:
            self._header_end_seen = True
            counted = self._header_bytes + end - len(self._header_tail) + 4
        else:
            counted = self._header_bytes + len(data)
            self._header_tail = (self._header_tail + data)[-3:]
        self._header_bytes = counted
        if counted <= MAX_HEADER_BYTES:
            return False
        self._disarm_header_timer()
        if not self.transport.is_closing():
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()
        return True

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()
        # Bytes of a next request already buffered (pipelined, or half a header) start the
        # clock now; none: uvicorn's keep-alive timer closes the connection if none come.
        if (
            self.cycle is cycle
            and self._header_timer is None
            and self.conn.trailing_data[0]
            and not self.transport.is_closing()
        ):
            self._arm_header_timer()

    def handle_websocket_upgrade(self, event: Any) -> None:
        self._disarm_header_timer()
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_bytes, self._header_tail, self._header_end_seen = 0, b"", False
        self._header_timer = self.loop.call_later(self._header_deadline, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport is not None and not self.transport.is_closing():
            log.debug("closed a connection that sent no complete request headers in time")
            self.transport.close()


PING_RATE, PING_BURST = 2.0, 10  # WebSocket control frames (ping, pong) a second, per socket
PING_FLOOD = 50  # control frames over the rate that drop the connection


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol with the limits the app cannot apply itself.

    * The handshake must be done within the header timeout. (A request the WebSocket parser
      refuses, such as one header line over 8 KiB, was answered by nothing and held the
      connection for ever: it is dropped at once.)
    * Pings and pongs are answered by the protocol, never seen by the app, so the app's frame
      rate cannot cover them: they have their own (`PING_RATE`, bursts of `PING_BURST`; a
      browser sends none, uvicorn's own keep-alive needs one pong in 20 s). One over the rate
      is not answered; `PING_FLOOD` of them drop the connection.

    And it keeps less for a socket's life (memory per idle socket is a goal of its own): the
    receive queue and the "writable" flag allocate nothing until used (`lean_primitives`),
    and the handshake's request, response and headers are let go once the socket is accepted.
    """

    header_timeout: float | None = None  # None: the server config in the environment

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Nothing has been queued or awaited yet: uvicorn created these, then set `writable`.
        self.queue = LeanQueue()  # type: ignore[assignment]
        self.writable = LeanEvent()  # type: ignore[assignment]
        self.writable.set()
        self.on_flood: Callable[[Scope], None] | None = None  # told the socket's scope
        self._control = TokenBucket(PING_RATE, PING_BURST)
        self._control_dropped = 0
        self._handshake_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        timeout = (
            self.header_timeout if self.header_timeout is not None else _header_timeout_from_env()
        )
        self._handshake_timer = self.loop.call_later(timeout, self._handshake_timed_out)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.parser_exc is not None and not self.handshake_complete:
            log.debug("dropped a WebSocket handshake the parser refused")
            self._drop()

    def handle_connect(self, event: Any) -> None:
        self._stop_handshake_timer()
        super().handle_connect(event)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.request is not None:
            # uvicorn keeps the handshake's request and response (their headers) for the
            # connection's life and never reads them again, nor does websockets, whose parser
            # still holds the request: ~5 KiB per idle socket. (The app reads the headers from
            # the ASGI scope, a copy.)
            self.request.headers.clear()
            self.request = self.response = None  # type: ignore[assignment]
        elif message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # A refusal (429) is a finished handshake: uvicorn would log an ERROR
            # ("returned without completing handshake") for each one.
            self.handshake_complete = True

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            try:
                data.decode()
            except UnicodeDecodeError:
                # Closed as uvicorn would (1007), but anyone can send this: one debug line,
                # not an ERROR with a traceback per socket.
                log.debug("closed a WebSocket that sent a text frame of invalid UTF-8 (1007)")
                self.frames = []
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()

    def handle_ping(self) -> None:
        if self._admit_control():
            super().handle_ping()

    def handle_pong(self, event: Any) -> None:
        if self._admit_control():
            super().handle_pong(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_handshake_timer()
        super().connection_lost(exc)

    def _admit_control(self) -> bool:
        if self._control.take():
            return True
        self._control_dropped += 1
        if self._control_dropped == PING_FLOOD:  # once: what is left of the read is dropped
            log.warning("dropped a WebSocket client flooding pings")
            if self.on_flood is not None:  # its address cools down (`make_abortable`)
                self.on_flood(self.scope)  # type: ignore[arg-type]  # an ASGI scope
            self._drop()
        return False

    def _handshake_timed_out(self) -> None:
        self._handshake_timer = None
        if not self.handshake_initiated:
            log.debug("dropped a WebSocket connection whose handshake did not come in time")
            self._drop()

    def _stop_handshake_timer(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None

    def _drop(self) -> None:
        self._stop_handshake_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """`HeaderTimeoutProtocol` with a fixed timeout (for a uvicorn in this process)."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})


class _Refused(Exception):
    """The body broke a limit: answered with `status` if no response has started."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class BodyLimits:
    """Request bodies on every HTTP route: at most `max_bytes`, all there within `timeout`
    seconds of the headers. A declared Content-Length over the limit is refused (413) before
    anything is read; a body without one is counted as it arrives (413 once past the limit);
    a body still arriving when the time is up gets 408, and the connection is closed. After a
    413 the connection stays open, so that a client still sending can read its answer (closing
    on unread data resets the connection, answer and all): what it sends is discarded, and it
    has `header_timeout` for that and its next request's headers (HeaderTimeoutProtocol), else
    it is closed. Routes that never read a body are not slowed: the limits bite when the body
    is read."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
        timeout: float = DEFAULT_BODY_TIMEOUT,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = _Refused(413, f"the request body may be at most {self.max_bytes} bytes")
        for name, value in scope["headers"]:
            declared = value.strip() if name == b"content-length" else b""
            if declared.isdigit() and (len(declared) > 15 or int(declared) > self.max_bytes):
                await _refuse(send, too_large)
                return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        received = 0
        body_done = False
        started = False
        refused: _Refused | None = None

        async def limited_receive() -> Message:
            nonlocal received, body_done, refused
            if refused is not None:  # the app caught it and asked again
                raise refused
            if body_done:
                return await receive()  # only a disconnect is left to come
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                late = f"the request body did not arrive within {self.timeout:g} s"
                refused = _Refused(408, late)
                raise refused from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = too_large
                    raise refused
                body_done = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _Refused as exc:
            if started:
                raise
            await _refuse(send, exc)


async def _refuse(send: Send, refused: _Refused) -> None:
    body = json.dumps({"error": refused.error}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if refused.status == 408:  # the rest of the body is not worth waiting for
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def guarded_websocket_protocol(seconds: float) -> type[GuardedWebSocketProtocol]:
    """`GuardedWebSocketProtocol` with a fixed handshake timeout (for a uvicorn in this
    process)."""
    return type(
        "GuardedWebSocketProtocol", (GuardedWebSocketProtocol,), {"header_timeout": seconds}
    )
