"""The agent console's WebSocket at /agent/ws (docs/protocol.md#agents).

client: auth {token}                   -> server: welcome {agent, teams, canned, mode}
every second                           -> server: queue {waiting, mine}
client: claim|open|reply|note|typing|close|handback|transfer|status|ping (with an id)
                                       -> server: chat {session, packet, notes}, event {session,
                                          event}, typing, note, ack {id} | error {code, id}

Every action goes through `HandoffService`, which checks who may do what; this module only
reads frames, dispatches them through `HANDLERS` and follows the open chats' transcripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import frames
from ..server.connection import Follower, accept
from ..server.guard import TokenBucket
from ..server.protocol import MAX_TEXT, ProtocolError, decode, frame_id
from ..server.runtime import Runtime
from ..server.sessions import SessionGone
from ..store import StoreUnavailable
from .accounts import Account
from .service import NotAllowed, NotAvailable, NotYours

log = logging.getLogger("flowengine.agents")

SNAPSHOT_EVERY = 1.0
AGENT_RATE, AGENT_BURST = 10.0, 40


class AgentSocket(Follower):
    def __init__(self, ws: WebSocket, runtime: Runtime, account: Account) -> None:
        super().__init__(ws, runtime.store)
        self.runtime = runtime
        self.account = account
        self.status = "online"

    def wrap(self, sid: str, event: frames.Frame) -> frames.Frame:
        return frames.event(sid, event)

    async def signal(self, sid: str, payload: dict[str, Any]) -> None:
        if payload.get("typing") == "shopper":
            await self.send(frames.shopper_typing(sid))
        elif "note" in payload:
            await self.send(frames.note(sid, payload["note"]))

    async def show(self, sid: str, read: Callable[[], Awaitable[frames.Frame]]) -> None:
        """Follow `sid`, then send the chat `read` gives (its packet holds the transcript).

        Following starts before the read and news waits for the lock, so an event stored
        meanwhile is either in the transcript read or sent right after it: none is lost.
        """
        async with self.lock:
            following = sid in self.sent
            await self.runtime.hub.attach(sid, self)
            try:
                chat = await read()
            except BaseException:
                if not following:
                    await self.runtime.hub.detach(sid, self)
                raise
            transcript = chat["packet"].get("transcript", [])
            self.sent[sid] = transcript[-1]["seq"] if transcript else 0
            await self.send(chat)

    def info(self) -> dict[str, Any]:
        a = self.account
        return {
            "name": a.name,
            "teams": list(a.teams),
            "role": a.role,
            "status": self.status,
            "capacity": self.runtime.handoff_config.capacity,
        }

    async def snapshot(self) -> None:
        await self.send(await self.runtime.handoffs.snapshot(self.account, self.info()))


Handler = Callable[[AgentSocket, dict[str, Any]], Awaitable[None]]


def _session(frame: dict[str, Any]) -> str:
    sid = frame.get("session")
    if not isinstance(sid, str) or not 8 <= len(sid) <= 64:
        raise ProtocolError("bad_session", f"'{frame['type']}' needs a session")
    return sid


def _text(frame: dict[str, Any]) -> str:
    text = frame.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ProtocolError("bad_text", "send some text")
    if len(text) > MAX_TEXT:
        raise ProtocolError("text_too_long", f"messages are limited to {MAX_TEXT} characters")
    return text


async def on_ping(conn: AgentSocket, frame: dict[str, Any]) -> None:
    await conn.send(frames.pong())


async def on_status(conn: AgentSocket, frame: dict[str, Any]) -> None:
    if frame.get("status") not in ("online", "away"):
        raise ProtocolError("bad_status", "status is online or away")
    conn.status = frame["status"]
    await conn.snapshot()


async def on_claim(conn: AgentSocket, frame: dict[str, Any]) -> None:
    sid = _session(frame)
    try:
        await conn.show(sid, lambda: conn.runtime.handoffs.claim(conn.account, sid))
    except NotAvailable:
        raise ProtocolError(
            "not_available", "someone else took this chat, or it left the queue"
        ) from None
    except NotAllowed:
        raise ProtocolError("not_allowed", "this chat is not in your teams") from None


async def on_open(conn: AgentSocket, frame: dict[str, Any]) -> None:
    sid = _session(frame)
    try:
        await conn.show(sid, lambda: conn.runtime.handoffs.open(conn.account, sid))
    except NotAllowed:
        raise ProtocolError("not_allowed", "this chat is not in your teams") from None


async def on_reply(conn: AgentSocket, frame: dict[str, Any]) -> None:
    await conn.runtime.handoffs.reply(conn.account, _session(frame), _text(frame))


async def on_note(conn: AgentSocket, frame: dict[str, Any]) -> None:
    await conn.runtime.handoffs.note(conn.account, _session(frame), _text(frame))


async def on_typing(conn: AgentSocket, frame: dict[str, Any]) -> None:
    # Ephemeral: typing in a chat that is not (or no longer) yours is dropped without an error.
    with contextlib.suppress(NotYours):
        await conn.runtime.handoffs.agent_typing(conn.account, _session(frame))


async def on_close(conn: AgentSocket, frame: dict[str, Any]) -> None:
    await conn.runtime.handoffs.close(conn.account, _session(frame), hand_back=False)


async def on_handback(conn: AgentSocket, frame: dict[str, Any]) -> None:
    await conn.runtime.handoffs.close(conn.account, _session(frame), hand_back=True)


async def on_transfer(conn: AgentSocket, frame: dict[str, Any]) -> None:
    team = frame.get("team")
    if not isinstance(team, str) or team not in conn.runtime.handoff_config.teams:
        raise ProtocolError("bad_frame", f"unknown team '{str(team)[:32]}'")
    await conn.runtime.handoffs.transfer(conn.account, _session(frame), team)


# Frames that change something carry an `id` (the ack names it); the rest may.
NEEDS_ID = frozenset({"claim", "open", "reply", "note", "close", "handback", "transfer"})

HANDLERS: dict[str, Handler] = {
    "ping": on_ping,
    "status": on_status,
    "claim": on_claim,
    "open": on_open,
    "reply": on_reply,
    "note": on_note,
    "typing": on_typing,
    "close": on_close,
    "handback": on_handback,
    "transfer": on_transfer,
}


async def _authenticate(ws: WebSocket, runtime: Runtime) -> Account | None:
    try:
        first = await asyncio.wait_for(ws.receive_text(), runtime.config.hello_timeout)
        frame = decode(first)
        if frame["type"] != "auth":
            return None
        return await runtime.handoffs.agent_for(frame.get("token"))
    except (TimeoutError, ProtocolError, WebSocketDisconnect, StoreUnavailable, KeyError):
        return None


async def agent_socket(ws: WebSocket) -> None:
    runtime: Runtime = ws.app.state.runtime
    if not await accept(ws, runtime.config):
        return
    account = await _authenticate(ws, runtime)
    conn = AgentSocket(ws, runtime, account) if account is not None else None
    if conn is None:
        with contextlib.suppress(Exception):
            await ws.send_json(frames.error("unauthorized", "log in again"))
            await ws.close(code=1008)
        return
    config = runtime.handoff_config
    await conn.send(frames.welcome(conn.account.public(), config.teams, config.canned, config.mode))
    ticker = asyncio.create_task(_tick(conn))
    try:
        await _converse(conn)
    except WebSocketDisconnect:
        pass
    finally:
        conn.closed = True
        ticker.cancel()
        for sid in list(conn.sent):
            await runtime.hub.detach(sid, conn)


async def _tick(conn: AgentSocket) -> None:
    while not conn.closed:
        with contextlib.suppress(StoreUnavailable):
            await conn.snapshot()
        await asyncio.sleep(SNAPSHOT_EVERY)


async def _converse(conn: AgentSocket) -> None:
    limit = conn.runtime.config.max_frame_bytes
    bucket = TokenBucket(AGENT_RATE, AGENT_BURST)
    while True:
        text = await conn.ws.receive_text()
        action_id = None
        try:
            if len(text.encode("utf-8", "surrogatepass")) > limit:
                raise ProtocolError("frame_too_large", f"frames are limited to {limit} bytes")
            if not bucket.take():
                raise ProtocolError("rate_limited", "too many messages; slow down")
            frame = decode(text)
            action_id = frame_id(frame)
            handler = HANDLERS.get(frame["type"])
            if handler is None:
                raise ProtocolError("unknown_type", f"unknown frame type '{frame['type'][:32]}'")
            if action_id is None and frame["type"] in NEEDS_ID:
                raise ProtocolError(
                    "bad_id", f"'{frame['type']}' needs an 'id' of 1 to 64 characters"
                )
            await handler(conn, frame)
            if action_id is not None:
                await conn.send(frames.agent_ack(action_id))
        except ProtocolError as exc:
            await conn.send(frames.error(exc.code, exc.message, action_id))
        except NotYours:
            await conn.send(
                frames.error("not_yours", "this chat is not assigned to you", action_id)
            )
        except SessionGone:
            await conn.send(
                frames.error("session_gone", "the shopper's session has expired", action_id)
            )
        except StoreUnavailable:
            await conn.send(frames.error("store_unavailable", "not saved; try again", action_id))
