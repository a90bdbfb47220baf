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
import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .. import frames
from ..store import Store
from .config import ServerConfig
from .guard import origin_allowed

log = logging.getLogger("flowengine.ws")

REPLAY_PAGE = 200


async def accept(
    ws: WebSocket, config: ServerConfig, admit: Callable[[], bool] = lambda: True
) -> bool:
    """Accept the socket if its Origin may talk to us and `admit` agrees (a per-address socket
    limit); else refuse it before the handshake (HTTP 403), or close it as "try again later"."""
    origin = ws.headers.get("origin")
    if not origin_allowed(origin, ws.headers.get("host"), config.allowed_origins):
        log.warning("refused a socket from origin %s", origin)
        await ws.close(code=1008)
        return False
    if not admit():
        await ws.close(code=1013)
        return False
    await ws.accept()
    return True


async def send_frame(ws: WebSocket, frame: frames.Frame) -> bool:
    """Send one frame; False (and no exception) if the socket is closed or closing."""
    if ws.application_state != WebSocketState.CONNECTED:
        return False
    try:
        await ws.send_text(json.dumps(frame, ensure_ascii=False, separators=(",", ":")))
    except (RuntimeError, OSError, WebSocketDisconnect):
        return False
    return True


class Follower:
    """A socket on this process that follows the transcripts of some sessions.

    Subclasses say how a stored event goes on their wire (`wrap`) and whether they are a
    shopper (whose leaving may mean the conversation was abandoned).
    """

    shopper = False

    def __init__(self, ws: WebSocket, store: Store) -> None:
        self.ws = ws
        self.store = store
        self.sent: dict[str, int] = {}  # session -> the last seq sent
        self.lock = asyncio.Lock()
        self.closed = False

    def wrap(self, sid: str, event: frames.Frame) -> frames.Frame:
        return event

    async def send(self, frame: frames.Frame) -> None:
        if not self.closed and not await send_frame(self.ws, frame):
            self.closed = True

    async def signal(self, sid: str, payload: dict[str, Any]) -> None:
        """Something not stored happened in `sid` (typing, a note)."""

    async def news(
        self, sid: str, seq: int, events: tuple[frames.Frame, ...] | None = None
    ) -> None:
        """Seq `seq` of `sid` is stored: send what this socket has not sent yet, in order."""
        async with self.lock:
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
