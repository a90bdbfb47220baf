"""What both sockets (the shopper's and the agent console's) share: the origin check, sending a
frame on a socket that may be gone, and following sessions' transcripts in seq order.

A socket only ever sends the events it has not sent yet, in order: events this process just
stored come with the news and are sent as they are; news from another process (or a gap) is
repaired by reading the log after the last seq sent. So every socket of a session, on any
instance, shows the same transcript, and a lost notification delays nothing a read would not
repair.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import PlainTextResponse
from starlette.types import Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .. import frames, jsontext
from ..store import Store
from .config import ServerConfig
from .guard import origin_allowed

log = logging.getLogger("flowengine.ws")

REPLAY_PAGE = 200
SERVER_RESTART = 1012  # the close code a socket gets when this server shuts down (RFC 6455)


async def accept(
    ws: WebSocket, config: ServerConfig, admit: Callable[[], bool] = lambda: True
) -> bool:
    """Accept the socket if its Origin may talk to us and `admit` agrees (a per-address socket
    limit, a cool-down after a flood); else refuse it before the handshake: HTTP 403 for the
    origin, HTTP 429 with Retry-After for the address."""
    origin = ws.headers.get("origin")
    if not origin_allowed(origin, ws.headers.get("host"), config.allowed_origins):
        log.warning("refused a socket from origin %s", origin)
        await ws.close(code=1008)
        return False
    if not admit():
        retry = str(max(1, round(config.flood_cooldown)))
        await ws.send_denial_response(
            PlainTextResponse("too many connections", 429, headers={"Retry-After": retry})
        )
        return False
    await ws.accept()
    return True


async def send_frame(ws: WebSocket, frame: frames.Frame, timeout: float | None = None) -> bool:
    """Send one frame; False (and no exception) if the socket is closed or closing, or if the
    client has not taken it within `timeout` seconds (then the connection is dropped)."""
    if ws.application_state != WebSocketState.CONNECTED:
        return False
    text = jsontext.dumps(frame)
    try:
        transport = ws.scope.get(TRANSPORT)
        if timeout is None or (transport is not None and not transport.get_write_buffer_size()):
            # Nothing is waiting to be written, so the send cannot wait (uvicorn's send waits
            # only while the transport is paused, past its high-water mark): no timer, which
            # was a twentieth of a click's CPU under load.
            await ws.send_text(text)
        else:  # asyncio.timeout, not wait_for: no task per send (wait_for was a tenth)
            async with asyncio.timeout(timeout):
                await ws.send_text(text)
    except TimeoutError:
        log.warning("dropped a client that read nothing for %.0f s", timeout)
        abort(ws)
        return False
    except (RuntimeError, OSError, WebSocketDisconnect):
        return False
    return True


TRANSPORT = "flowengine.transport"  # where `make_abortable` puts the connection's transport


def abort(ws: WebSocket) -> None:
    """Drop the connection now, with whatever is still buffered for it.

    A client that stops reading fills the transport's buffer; from then on every send waits,
    and a close (which sends a frame, then flushes) would wait for ever too. ASGI has no
    message for "abort": `make_abortable` finds the transport where the server offers it.
    """
    transport = ws.scope.get(TRANSPORT)
    if transport is not None:
        transport.abort()


async def hang_up(ws: WebSocket, code: int, grace: float = 0.5) -> None:
    """Close on a client that is flooding: the close frame goes out, nothing more is read
    (a polite close would read and parse its flood for 10 s more, waiting for the reply), and
    the connection is dropped after `grace` seconds."""
    with contextlib.suppress(Exception):
        await ws.close(code=code)
    transport = ws.scope.get(TRANSPORT)
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.pause_reading()
        asyncio.get_running_loop().call_later(grace, transport.abort)


def make_abortable(scope: Scope, send: Send, flooded: Callable[[Scope], None] | None) -> None:
    """On a socket's way in: put the connection's transport into its scope, so the socket can
    be dropped (uvicorn's `send` belongs to its protocol, which holds the transport), and tell
    a protocol that polices its own frames (pings, which the app never sees) whom to report a
    flood to: `flooded(scope)`. On a server without these nothing is added, and `abort` and
    `hang_up` only close."""
    protocol = getattr(send, "__self__", None)
    transport = getattr(protocol, "transport", None)
    if transport is not None and hasattr(transport, "abort"):
        scope[TRANSPORT] = transport
    if flooded is not None and protocol is not None and hasattr(protocol, "on_flood"):
        protocol.on_flood = flooded  # called with the protocol's scope: this one


class Follower:
    """A socket on this process that follows the transcripts of some sessions.

    Subclasses say how a stored event goes on their wire (`wrap`) and whether they are a
    shopper (whose leaving may mean the conversation was abandoned).
    """

    shopper = False

    def __init__(self, ws: WebSocket, store: Store, send_timeout: float | None = None) -> None:
        self.ws = ws
        self.store = store
        self.send_timeout = send_timeout
        self.sent: dict[str, int] = {}  # session -> the last seq sent
        self.lock = asyncio.Lock()
        self.closed = False
        self.batch = False  # the client reads `batch` frames (it said so in its hello)
        self._outbox: list[frames.Frame] | None = None  # frames held for one `batch` frame
        # The session this socket is applying an action to, and the task doing it: the Hub
        # does not wake it for that task's own commit (`acting_on`), whose seq is `missed`.
        self.acting: tuple[str, asyncio.Task[Any] | None] | None = None
        self.missed: int | None = None

    def wrap(self, sid: str, event: frames.Frame) -> frames.Frame:
        return event

    async def send(self, frame: frames.Frame) -> None:
        if self._outbox is not None:
            self._outbox.append(frame)
            if len(self._outbox) >= frames.BATCH_MAX:
                await self._flush()
        elif not self.closed and not await send_frame(self.ws, frame, self.send_timeout):
            self.closed = True

    @contextlib.asynccontextmanager
    async def batched(self) -> AsyncIterator[None]:
        """Everything sent inside goes out as one `batch` frame (several past BATCH_MAX; one
        frame alone as itself), if the client reads them; else frame by frame, as sent. One
        message instead of three or four per click: each costs a send on both ends."""
        if not self.batch or self._outbox is not None:
            yield
            return
        self._outbox = []
        try:
            yield
        finally:
            await self._flush()
            self._outbox = None

    async def _flush(self) -> None:
        held, self._outbox = self._outbox or [], []
        if not held or self.closed:
            return
        frame = held[0] if len(held) == 1 else frames.batch(held)
        if not await send_frame(self.ws, frame, self.send_timeout):
            self.closed = True

    @contextlib.asynccontextmanager
    async def acting_on(self, sid: str) -> AsyncIterator[None]:
        """While this socket applies its own action to `sid`, the Hub does not wake it for that
        action's commit: it sends those events itself, in its answer (a task per click that
        only found them sent). If it did not (it failed between the commit and its answer),
        it catches up on the way out. Any other news (another tab's commit, a hint from
        another box, a reconnect) wakes it as always, at once."""
        self.acting, self.missed = (sid, asyncio.current_task()), None
        try:
            yield
        finally:
            self.acting = None
            missed, self.missed = self.missed, None
            if missed is not None and missed > self.sent.get(sid, missed):
                with contextlib.suppress(Exception):  # as the Hub's own news: caught up later
                    await self.news(sid, missed)

    def own_commit(self, sid: str, seq: int) -> bool:
        """Is this commit of `sid` the one this socket's action is making (told in its task)?
        If so it is noted, not sent: the action sends it (`acting_on`)."""
        if seq < 0 or self.acting is None or self.acting != (sid, asyncio.current_task()):
            return False
        self.missed = max(seq, self.missed or 0)
        return True

    async def signal(self, sid: str, payload: dict[str, Any]) -> None:
        """Something not stored happened in `sid` (typing, a note)."""

    async def news(
        self, sid: str, seq: int, events: tuple[frames.Frame, ...] | None = None
    ) -> None:
        """Seq `seq` of `sid` is stored: send what this socket has not sent yet, in order (as
        one `batch` frame, for a client that reads them)."""
        async with self.lock, self.batched():
            sent = self.sent.get(sid)
            if sent is None or self.closed or (0 <= seq <= sent):
                return  # not following, or already sent (by the socket that applied it)
            if events and events[0]["seq"] == sent + 1:
                for e in events:
                    await self.send(self.wrap(sid, e))
                self.sent[sid] = events[-1]["seq"]
                return
            await self._read(sid)

    async def catch_up(self, sid: str) -> None:
        """Send every stored event after the last one sent (on opening, after a gap)."""
        async with self.lock:
            await self._read(sid)

    async def _read(self, sid: str) -> None:
        while not self.closed and sid in self.sent:
            events = await self.store.replay(sid, self.sent[sid], REPLAY_PAGE)
            if not events:
                return
            for e in events:
                await self.send(self.wrap(sid, e))
            self.sent[sid] = events[-1]["seq"]
