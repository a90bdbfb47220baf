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
from typing import Any, Literal

from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import frames
from ..server.connection import Follower, accept, hang_up
from ..server.guard import FrameGate, TokenBucket, Verdict, frame_id_of, too_large
from ..server.protocol import MAX_TEXT, ProtocolError, decode, frame_id
from ..server.runtime import Runtime
from ..server.sessions import SessionGone
from ..store import StoreUnavailable
from .accounts import Account
from .service import (
    NobodyOnline,
    NotAllowed,
    NotAvailable,
    NoTicket,
    NotYours,
    logins,
    token_hash,
)

log = logging.getLogger("flowengine.agents")

SNAPSHOT_EVERY = 1.0
AGENT_RATE, AGENT_BURST = 10.0, 40
ACTION_ID_TTL = 24 * 3600.0  # how long a resent action id is recognised as already applied


class AgentSocket(Follower):
    def __init__(self, ws: WebSocket, runtime: Runtime, account: Account, token: str) -> None:
        super().__init__(ws, runtime.store, runtime.config.send_timeout)
        self.runtime = runtime
        self.account = account
        self.token = token
        self.status = "online"

    def wrap(self, sid: str, event: frames.Frame) -> frames.Frame:
        return frames.event(sid, event)

    async def signal(self, sid: str, payload: dict[str, Any]) -> None:
        if "logout" in payload:
            if payload["logout"] in ("*", token_hash(self.token)):
                await self.end()
            return
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

    async def still_valid(self) -> bool:
        """Whether the login still stands (not logged out, not expired, the account not
        removed); the account as it is now (teams, role) is used from here on."""
        account = await self.runtime.handoffs.agent_for(self.token)
        if account is None or account.username != self.account.username:
            return False
        self.account = account
        return True

    async def end(self) -> None:
        """The login is over: say so and close (the console shows the login form)."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            await self.ws.send_json(frames.error("unauthorized", "you have been logged out"))
            await self.ws.close(code=1008)


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


async def on_takeover(conn: AgentSocket, frame: dict[str, Any]) -> None:
    sid = _session(frame)
    await conn.show(sid, lambda: conn.runtime.handoffs.take_over(conn.account, sid, conn.account))


async def _agent(conn: AgentSocket, username: object) -> Account:
    """The account a frame names, or bad_agent."""
    to = await conn.runtime.handoffs.account(username) if isinstance(username, str) else None
    if to is None:
        raise ProtocolError("bad_agent", f"no agent '{str(username)[:32]}'")
    return to


async def on_reassign(conn: AgentSocket, frame: dict[str, Any]) -> None:
    sid = _session(frame)
    to = await _agent(conn, frame.get("agent"))
    await conn.runtime.handoffs.take_over(conn.account, sid, to)


async def on_tickets(conn: AgentSocket, frame: dict[str, Any]) -> None:
    status = frame.get("status", "open")
    query = frame.get("query", "")
    if status not in ("open", "done", "all") or not isinstance(query, str) or len(query) > 200:
        raise ProtocolError("bad_frame", "status is open, done or all; query is short text")
    items = await conn.runtime.handoffs.tickets(conn.account, status, query)
    await conn.send(frames.tickets(items, frame_id(frame)))


def _ticket_key(frame: dict[str, Any]) -> str:
    key = frame.get("ticket")
    if not isinstance(key, str) or not 1 <= len(key) <= 128:
        raise ProtocolError("bad_ticket", f"'{frame['type']}' needs a ticket key")
    return key


async def on_ticket(conn: AgentSocket, frame: dict[str, Any]) -> None:
    ticket = await conn.runtime.handoffs.ticket(conn.account, _ticket_key(frame))
    await conn.send(frames.ticket(ticket, frame_id(frame)))


async def on_ticket_update(conn: AgentSocket, frame: dict[str, Any]) -> None:
    key = _ticket_key(frame)
    status = frame.get("status")
    if status not in (None, "open", "done"):
        raise ProtocolError("bad_frame", "status is open or done")
    assignee: Account | Literal[False] | None = False
    if frame.get("assignee") is not None:
        assignee = await _agent(conn, frame["assignee"])
    elif "assignee" in frame:
        assignee = None
    ticket = await conn.runtime.handoffs.update_ticket(conn.account, key, status, assignee)
    await conn.send(frames.ticket(ticket, frame_id(frame)))


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
    with contextlib.suppress(NotYours, SessionGone):
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


# Frames that change something carry an `id` (the ack names it); the rest may. A resent id is
# acknowledged again (`duplicate`) and not applied twice (ONCE), except a read (open, tickets).
ONCE = frozenset(
    {
        "claim",
        "reply",
        "note",
        "close",
        "handback",
        "transfer",
        "takeover",
        "reassign",
        "ticket_update",
    }
)
NEEDS_ID = ONCE | {"open", "ticket"}

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
    "takeover": on_takeover,
    "reassign": on_reassign,
    "tickets": on_tickets,
    "ticket": on_ticket,
    "ticket_update": on_ticket_update,
}


STORE_AWAY = "the service is briefly unavailable; reconnecting"


async def _authenticate(ws: WebSocket, runtime: Runtime) -> tuple[Account, str] | None:
    """The login the socket's first frame proves; None for none (a bad or old token, no
    auth frame in time); `StoreUnavailable` when the store cannot tell."""
    try:
        first = await asyncio.wait_for(ws.receive_text(), runtime.config.hello_timeout)
        frame = decode(first)
        token = frame.get("token")
        if frame["type"] != "auth" or not isinstance(token, str):
            return None
        account = await runtime.handoffs.agent_for(token)
        return (account, token) if account is not None else None
    except (TimeoutError, ProtocolError, WebSocketDisconnect, KeyError):
        return None


async def agent_socket(ws: WebSocket) -> None:
    runtime: Runtime = ws.app.state.runtime
    ip = ws.client.host if ws.client else "-"
    if not await accept(ws, runtime.config, lambda: runtime.agent_limits.open(ip)):
        runtime.metrics.refused.labels("agent", "socket_refused").inc()
        return
    try:
        await _agent_socket(ws, runtime, ip)
    finally:
        runtime.agent_limits.close(ip)


async def _agent_socket(ws: WebSocket, runtime: Runtime, ip: str) -> None:
    try:
        login = await _authenticate(ws, runtime)
    except StoreUnavailable:
        # Not a bad login: no strike against the address, and the console keeps its token
        # and reconnects (as after any close) until the store is back.
        with contextlib.suppress(Exception):
            await ws.send_json(frames.error("store_unavailable", STORE_AWAY))
            await ws.close(code=1011)
        return
    conn = AgentSocket(ws, runtime, *login) if login is not None else None
    if conn is None:
        runtime.agent_limits.strike(ip)  # a stream of these cools the address down
        with contextlib.suppress(Exception):
            await ws.send_json(frames.error("unauthorized", "log in again"))
        await hang_up(ws, 1008)  # nothing more is read from a socket that did not log in
        return
    config = runtime.handoff_config
    await conn.send(frames.welcome(conn.account.public(), config.teams, config.canned, config.mode))
    username = conn.account.username
    await runtime.hub.attach(logins(username), conn)
    ticker = asyncio.create_task(_tick(conn))
    try:
        await _converse(conn, ip)
    except (WebSocketDisconnect, RuntimeError, _Flooded):
        pass  # gone (RuntimeError: starlette's "not connected" when it went mid-receive)
    finally:
        conn.closed = True
        ticker.cancel()
        # Offline at once, not 30 s later: new chats must not queue for an agent who left
        # (another console of theirs marks them online again within a second). First: the
        # time they left starts their chats' grace.
        with contextlib.suppress(StoreUnavailable):
            await conn.runtime.handoffs.went_away(conn.account, conn.info())
        await runtime.hub.detach(logins(username), conn)
        for sid in list(conn.sent):
            await runtime.hub.detach(sid, conn)


async def _tick(conn: AgentSocket) -> None:
    """Every second: is the login still good (a logout on another instance, a removed account,
    an expired token end the socket), then the queue, which also marks the agent present."""
    while not conn.closed:
        with contextlib.suppress(StoreUnavailable):
            if not await conn.still_valid():
                await conn.end()
                return
            await conn.snapshot()
        await asyncio.sleep(SNAPSHOT_EVERY)


async def _act(
    conn: AgentSocket, handler: Handler, frame: dict[str, Any], action_id: str | None
) -> None:
    """Run one action once per id, on any instance: a resent id (the console resends what was
    not acknowledged after a reconnect) is acknowledged as a duplicate and not applied again;
    an action that failed may be resent and applied."""
    once = None
    if action_id is not None and frame["type"] in ONCE:
        once = f"agent:{conn.account.username}:{action_id}"
        if not await conn.store.once(once, ACTION_ID_TTL):
            if frame["type"] == "claim":  # the chat frame may be what was lost: send it again
                await on_open(conn, frame)
            await conn.send(frames.agent_ack(action_id, duplicate=True))
            return
    try:
        await handler(conn, frame)
    except BaseException:
        if once is not None:
            with contextlib.suppress(StoreUnavailable):
                await conn.store.forget(once)
        raise
    if action_id is not None:
        await conn.send(frames.agent_ack(action_id))


class _Flooded(Exception):
    """The socket was closed for sending far over its rate."""


async def _refuse(conn: AgentSocket, verdict: Verdict, text: str | None, ip: str) -> None:
    """A frame over the rate: nothing is parsed, one answer a second, a flood ends it."""
    runtime = conn.runtime
    if verdict == "close":
        runtime.metrics.refused.labels("agent", "flood_closed").inc()
        runtime.agent_limits.flooded(ip)
        await conn.send(frames.error("flooding", "too many messages: closed"))
        conn.closed = True
        await hang_up(conn.ws, 1008)
        raise _Flooded()
    runtime.metrics.refused.labels("agent", "frame_dropped").inc()
    if verdict == "answer":
        frame_id = frame_id_of(text, runtime.config.max_frame_bytes) if text else None
        await conn.send(frames.error("rate_limited", "too many messages; slow down", frame_id))


async def _converse(conn: AgentSocket, ip: str) -> None:
    config = conn.runtime.config
    limit = config.max_frame_bytes
    gate = FrameGate(
        TokenBucket(AGENT_RATE, AGENT_BURST),
        lambda: conn.runtime.agent_limits.take(ip),
        config.flood_close_after,
    )
    while True:
        message = await conn.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        verdict = gate.admit()
        if verdict != "pass":
            await _refuse(conn, verdict, text, ip)
            continue
        action_id = None
        try:
            if text is None:
                raise ProtocolError("bad_frame", "frames are JSON text, not binary")
            if too_large(text, limit):
                raise ProtocolError("frame_too_large", f"frames are limited to {limit} bytes")
            frame = decode(text)
            action_id = frame_id(frame)
            handler = HANDLERS.get(frame["type"])
            if handler is None:
                raise ProtocolError("unknown_type", f"unknown frame type '{frame['type'][:32]}'")
            if action_id is None and frame["type"] in NEEDS_ID:
                raise ProtocolError(
                    "bad_id", f"'{frame['type']}' needs an 'id' of 1 to 64 characters"
                )
            if conn.closed:
                return  # logged out meanwhile: nothing more is done for this socket
            await _act(conn, handler, frame, action_id)
        except ProtocolError as exc:
            await conn.send(frames.error(exc.code, exc.message, action_id))
        except NotYours:
            await conn.send(
                frames.error("not_yours", "this chat is not assigned to you", action_id)
            )
        except NobodyOnline as exc:
            await conn.send(frames.error("nobody_online", str(exc), action_id))
        except NotAllowed:
            await conn.send(
                frames.error("not_allowed", "not in your teams, or for admins only", action_id)
            )
        except NoTicket:
            await conn.send(frames.error("no_ticket", "there is no such ticket", action_id))
        except SessionGone:
            await conn.send(
                frames.error("session_gone", "the shopper's session has expired", action_id)
            )
        except StoreUnavailable:
            await conn.send(frames.error("store_unavailable", "not saved; try again", action_id))
