"""The agent console's WebSocket at /agent/ws, and its login (docs/protocol.md#agents).

client: auth {token}                   -> server: welcome {agent, teams, canned, mode}
every second                           -> server: queue {waiting, mine}
client: claim|open|reply|note|typing|close|handback|transfer|status (with an id)
                                       -> server: chat {session, packet, notes}, event {session,
                                          event}, typing, note, ack {id} | error {code, id}
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..handoff.accounts import Account
from ..handoff.passwords import verify_password
from ..store import StoreUnavailable
from .guard import TokenBucket, origin_allowed
from .handoffs import NotYours
from .protocol import MAX_TEXT, ProtocolError, decode, error_frame
from .sessions import SessionGone
from .wire import send_frame

if TYPE_CHECKING:
    from .app import Server

log = logging.getLogger("flowengine.agents")

TOKEN_TTL = 12 * 3600.0
SNAPSHOT_EVERY = 1.0


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _account_for(server: Server, token: Any) -> Account | None:
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return None
    username = await server.store.get_token(_hash(token))  # type: ignore[attr-defined]
    if username is None:
        return None
    return await asyncio.to_thread(server.accounts.get, username)


# -- REST: login, logout ------------------------------------------------------------------


async def login(request: Request) -> Response:
    server: Server = request.app.state.server
    ip = request.client.host if request.client else "-"
    if len(server.login_buckets) > 10_000:  # bounded memory under a spray of addresses
        server.login_buckets.clear()
    bucket = server.login_buckets.setdefault(ip, TokenBucket(0.2, 5))
    if not bucket.take():
        return JSONResponse({"error": "too many attempts; wait a minute"}, status_code=429)
    try:
        body = await request.json()
        username, password = str(body["username"]).strip().lower(), str(body["password"])
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"error": "send {username, password}"}, status_code=400)
    account = await asyncio.to_thread(server.accounts.get, username)
    ok = account is not None and await asyncio.to_thread(
        verify_password, password, account.password_hash
    )
    if not ok or account is None:
        log.warning("failed console login")
        return JSONResponse({"error": "wrong username or password"}, status_code=401)
    token = secrets.token_urlsafe(32)
    await server.store.put_token(_hash(token), account.username, TOKEN_TTL)  # type: ignore[attr-defined]
    return JSONResponse({"token": token, "agent": account.public(), "expires_in": TOKEN_TTL})


async def logout(request: Request) -> Response:
    server: Server = request.app.state.server
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if token:
        await server.store.del_token(_hash(token))  # type: ignore[attr-defined]
    return JSONResponse({"ok": True})


# -- the socket -----------------------------------------------------------------------------


class AgentConnection:
    def __init__(self, ws: WebSocket, server: Server, account: Account) -> None:
        self.ws = ws
        self.server = server
        self.account = account
        self.sent: dict[str, int] = {}  # session -> last transcript seq sent
        self.lock = asyncio.Lock()
        self.status = "online"
        self.closed = False

    async def send(self, frame: dict[str, Any]) -> None:
        if not self.closed and not await send_frame(self.ws, frame):
            self.closed = True

    async def news(self, sid: str, seq: int) -> None:
        async with self.lock:
            while sid in self.sent and not self.closed:
                events = await self.server.store.replay(sid, self.sent[sid], 200)
                if not events:
                    return
                for e in events:
                    await self.send({"type": "event", "session": sid, "event": e})
                    self.sent[sid] = e["seq"]

    async def signal(self, sid: str, payload: dict[str, Any]) -> None:
        if payload.get("typing") == "shopper":
            await self.send({"type": "typing", "session": sid, "from": "shopper"})
        elif "note" in payload:
            await self.send({"type": "note", "session": sid, "note": payload["note"]})

    async def open(self, sid: str) -> None:
        server = self.server
        packet = await server.handoffs.packet(sid)
        notes = await server.store.notes(sid)  # type: ignore[attr-defined]
        async with self.lock:
            transcript = packet.get("transcript", [])
            self.sent[sid] = transcript[-1]["seq"] if transcript else 0
            await self.send(
                {
                    "type": "chat",
                    "session": sid,
                    "packet": packet,
                    "notes": notes,
                    "handoff": await server.store.get_handoff(sid),
                }
            )  # type: ignore[attr-defined]
        await server.attach(sid, self)

    def info(self) -> dict[str, Any]:
        a = self.account
        return {
            "name": a.name,
            "teams": list(a.teams),
            "role": a.role,
            "status": self.status,
            "capacity": self.server.handoff_config.capacity,
        }

    async def snapshot(self) -> None:
        server = self.server
        now = server.sessions.clock()
        await server.store.heartbeat(self.account.username, self.info(), now)  # type: ignore[attr-defined]
        teams = server.handoff_config.teams if self.account.role == "admin" else self.account.teams
        waiting = []
        for team in teams:
            for i, r in enumerate(await server.store.queue(team)):  # type: ignore[attr-defined]
                waiting.append({**r, "position": i + 1, "waiting": now - r["created_at"]})
        mine = await server.store.agent_chats(self.account.username)  # type: ignore[attr-defined]
        await self.send({"type": "queue", "waiting": waiting, "mine": mine, "at": now})


async def agent_socket(ws: WebSocket) -> None:
    server: Server = ws.app.state.server
    if not origin_allowed(
        ws.headers.get("origin"), ws.headers.get("host"), server.config.allowed_origins
    ):
        await ws.close(code=1008)
        return
    await ws.accept()
    try:
        first = await asyncio.wait_for(ws.receive_text(), server.config.hello_timeout)
        frame = decode(first)
        account = (
            await _account_for(server, frame.get("token")) if frame["type"] == "auth" else None
        )
    except (TimeoutError, ProtocolError, WebSocketDisconnect, StoreUnavailable):
        account = None
    if account is None:
        with contextlib.suppress(Exception):
            await ws.send_text(json.dumps(error_frame("unauthorized", "log in again")))
            await ws.close(code=1008)
        return
    conn = AgentConnection(ws, server, account)
    await conn.send(
        {
            "type": "welcome",
            "agent": account.public(),
            "teams": list(server.handoff_config.teams),
            "canned": list(server.handoff_config.canned),
            "mode": server.handoff_config.mode,
        }
    )
    ticker = asyncio.create_task(_tick(conn))
    try:
        await _converse(conn)
    except WebSocketDisconnect:
        pass
    finally:
        conn.closed = True
        ticker.cancel()
        for sid in list(conn.sent):
            await server.detach(sid, conn)


async def _tick(conn: AgentConnection) -> None:
    while not conn.closed:
        with contextlib.suppress(StoreUnavailable):
            await conn.snapshot()
        await asyncio.sleep(SNAPSHOT_EVERY)


async def _converse(conn: AgentConnection) -> None:
    server = conn.server
    bucket = TokenBucket(10, 40)
    while True:
        text = await conn.ws.receive_text()
        frame_id = None
        try:
            if len(text) > server.config.max_frame_bytes:
                raise ProtocolError("frame_too_large", "frame too large")
            if not bucket.take():
                raise ProtocolError("rate_limited", "too many messages; slow down")
            frame = decode(text)
            frame_id = frame.get("id") if isinstance(frame.get("id"), str) else None
            await _handle(conn, frame)
            if frame_id is not None:
                await conn.send({"type": "ack", "id": frame_id})
        except ProtocolError as exc:
            await conn.send(error_frame(exc.code, exc.message, frame_id))
        except NotYours:
            await conn.send(error_frame("not_yours", "this chat is not assigned to you", frame_id))
        except SessionGone:
            await conn.send(
                error_frame("session_gone", "the shopper's session has expired", frame_id)
            )
        except StoreUnavailable:
            await conn.send(error_frame("store_unavailable", "not saved; try again", frame_id))
        except ValueError as exc:
            await conn.send(error_frame("bad_frame", str(exc), frame_id))


def _text(frame: dict[str, Any]) -> str:
    text = frame.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ProtocolError("bad_text", "send some text")
    if len(text) > MAX_TEXT:
        raise ProtocolError("text_too_long", f"messages are limited to {MAX_TEXT} characters")
    return text


async def _handle(conn: AgentConnection, frame: dict[str, Any]) -> None:
    server, agent = conn.server, conn.account
    kind = frame["type"]
    if kind == "ping":
        await conn.send({"type": "pong"})
        return
    if kind == "status":
        if frame.get("status") not in ("online", "away"):
            raise ProtocolError("bad_status", "status is online or away")
        conn.status = frame["status"]
        await conn.snapshot()
        return
    sid = frame.get("session")
    if not isinstance(sid, str) or not 8 <= len(sid) <= 64:
        raise ProtocolError("bad_session", f"'{kind}' needs a session")
    if kind == "claim":
        if await server.handoffs.claim(agent, sid) is None:
            raise ProtocolError(
                "not_available", "someone else took this chat, or it left the queue"
            )
        await conn.open(sid)
        await conn.snapshot()
    elif kind == "open":
        record = await server.store.get_handoff(sid)  # type: ignore[attr-defined]
        allowed = record is not None and (record["team"] in agent.teams or agent.role == "admin")
        if not allowed:
            raise ProtocolError("not_allowed", "this chat is not in your teams")
        await conn.open(sid)
    elif kind == "reply":
        await server.handoffs.reply(agent, sid, _text(frame))
    elif kind == "note":
        await server.handoffs.note(agent, sid, _text(frame))
    elif kind == "typing":
        await server.store.signal(sid, {"typing": "agent", "name": agent.name})  # type: ignore[attr-defined]
    elif kind in ("close", "handback"):
        await server.handoffs.close(agent, sid, hand_back=kind == "handback")
    elif kind == "transfer":
        await server.handoffs.transfer(agent, sid, str(frame.get("team", "")))
    else:
        raise ProtocolError("unknown_type", f"unknown frame type '{kind[:32]}'")
