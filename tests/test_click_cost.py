"""What a click and a claim cost the store, counted on the real app over real sockets.

docs/architecture.md promises: a click is exactly one Redis round trip (the commit script) and
the clicking socket re-reads nothing (it sends the events it just stored); a claim is at most
four round trips. Round trips are counted where redis-py writes to a socket, for the work the
frame's own handler started (a context variable marks it), so background loops (the handoff
sweep, the console's queue ticker, analytics) are not counted.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection

from flowengine.handoff import agent_socket
from flowengine.handoff.accounts import Account
from flowengine.handoff.passwords import hash_password
from flowengine.server import shopper_socket
from flowengine.server.config import ServerConfig
from tests.app_server import AppServer, running
from tests.server_process import Agent, Client

_counting: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "_counting", default=None
)


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Record what each Redis round trip sent, while `_counting` is set."""
    send = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        log = _counting.get()
        if log is not None:
            raw = command if isinstance(command, bytes | str) else b"".join(command)
            log.append(raw.decode() if isinstance(raw, bytes) else raw)
        await send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    yield


def _counted(
    monkeypatch: pytest.MonkeyPatch,
    table: dict[str, Any],
    kind: str,
    log: list[str],
) -> None:
    """Count what the handler of `kind` frames (and the tasks it starts) sends to Redis."""
    handler: Callable[..., Awaitable[None]] = table[kind]

    async def marked(*args: Any) -> None:
        token = _counting.set(log)
        try:
            await handler(*args)
        finally:
            _counting.reset(token)

    monkeypatch.setitem(table, kind, marked)


def _count_store_calls(server: AppServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count calls of the store's methods made on a marked handler's path (not the calls a
    store method makes of its own methods)."""
    calls: dict[str, int] = {}
    store = server.runtime.store
    inside: contextvars.ContextVar[bool] = contextvars.ContextVar("inside", default=False)
    for name in ("load", "commit", "replay", "chat_view", "get_handoff", "transition"):
        method = getattr(store, name)

        async def wrapper(*args: Any, _m: Any = method, _n: str = name, **kw: Any) -> Any:
            if _counting.get() is not None and not inside.get():
                calls[_n] = calls.get(_n, 0) + 1
            token = inside.set(True)
            try:
                return await _m(*args, **kw)
            finally:
                inside.reset(token)

        monkeypatch.setattr(store, name, wrapper)
    return calls


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_click_is_one_round_trip_and_no_replay(
    kind: str, redis_server: Any, round_trips: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = redis_server.url if kind == "redis" else None
    async with AppServer(ServerConfig(redis_url=url, handoff_config=None)) as server:
        shopper = await Client.connect(server.ws_url)
        await shopper.until(lambda f: f.get("seq") == 1)
        await shopper.act({"type": "choose", "option": "sizes"})  # warm: the session is cached
        sent: list[str] = []
        _counted(monkeypatch, shopper_socket.HANDLERS, "choose", sent)
        calls = _count_store_calls(server, monkeypatch)
        ack = await shopper.act({"type": "choose", "option": "tops"})
        assert ack["type"] == "ack" and not ack["duplicate"]
        events = [f for f in shopper.frames if f.get("seq", 0) > 2 and f["type"] == "message"]
        assert events and events[-1]["seq"] == ack["seq"]  # the events came before the ack
        assert calls == {"commit": 1}, calls  # no load, no replay on the clicking socket
        if kind == "redis":
            assert len(sent) == 1 and "EVALSHA" in sent[0], sent
        await shopper.close()


async def _agent(server: AppServer, username: str, teams: tuple[str, ...]) -> Agent:
    server.runtime.handoffs.accounts.put(
        Account(username, username.capitalize(), "agent", teams, hash_password("pw-123456"))
    )
    status, body = await server.post(
        "/agent/api/login", {"username": username, "password": "pw-123456"}
    )
    assert status == 200, body
    agent = await Agent.connect(server, body["token"])  # type: ignore[arg-type]
    await agent.until(lambda f: f["type"] == "queue")  # present: chats can be queued for them
    return agent


async def _waiting_shopper(server: AppServer) -> Client:
    shopper = await Client.connect(server.ws_url)
    await shopper.until(lambda f: f.get("seq") == 1)
    await shopper.act({"type": "handoff"})
    queued = await shopper.until(lambda f: f.get("type") == "handoff")
    assert queued["status"] == "queued"
    return shopper


async def _one_claimed(
    monkeypatch: pytest.MonkeyPatch, desk: AppServer, shop: AppServer
) -> tuple[Agent, Client, Client, list[str]]:
    """alice, on `desk`, has claimed one chat (Redis has cached the scripts), and a second
    shopper waits on `shop`; what alice's next claim sends to Redis goes into the list."""
    alice = await _agent(desk, "alice", ("general",))
    first = await _waiting_shopper(shop)
    await alice.act({"type": "claim", "session": first.session})
    shopper = await _waiting_shopper(shop)
    sent: list[str] = []
    _counted(monkeypatch, agent_socket.HANDLERS, "claim", sent)
    return alice, first, shopper, sent


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_claim_is_at_most_four_round_trips(
    kind: str, redis_server: Any, round_trips: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    url = redis_server.url if kind == "redis" else None
    if url:
        redis_server.flush()
    config = ServerConfig(
        redis_url=url, handoff_config=None, agents_file=str(tmp_path / "agents.json")
    )
    async with AppServer(config) as server:
        alice, first, shopper, sent = await _one_claimed(monkeypatch, server, server)
        calls = _count_store_calls(server, monkeypatch)
        ack = await alice.act({"type": "claim", "session": shopper.session})
        assert ack["type"] == "ack", ack
        chat = next(
            f for f in alice.frames if f["type"] == "chat" and f["session"] == shopper.session
        )
        seqs = [e["seq"] for e in chat["packet"]["transcript"]]
        assert seqs == list(range(1, len(seqs) + 1))  # whole, in order, no gap
        assigned = await shopper.until(lambda f: f.get("status") == "assigned")
        assert assigned["seq"] in seqs  # the agent's transcript already has it
        assert calls == {"transition": 1, "chat_view": 1, "commit": 1}, calls
        if kind == "redis":
            # transition script, one pipelined read, the commit script, the queue read that
            # updates the consoles (this box already follows the session: no subscription)
            assert len(sent) <= 4, [c.split("\r\n")[2] for c in sent]
        await alice.close()
        await shopper.close()
        await first.close()


async def test_a_claim_on_a_box_that_did_not_follow_the_session_yet(
    redis_server: Any, round_trips: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The shopper on one box, the agent on another: the claim also subscribes the agent's box
    to the session and puts it in the session's watchers set, so that the shopper's messages on
    the other box are published to it (and are: the agent sees the next one)."""
    redis_server.flush()
    config = ServerConfig(
        redis_url=redis_server.url, handoff_config=None, agents_file=str(tmp_path / "a.json")
    )
    shop, desk = AppServer(config), AppServer(config)
    async with running(shop, desk):
        alice, first, shopper, sent = await _one_claimed(monkeypatch, desk, shop)
        ack = await alice.act({"type": "claim", "session": shopper.session})
        assert ack["type"] == "ack", ack
        commands = [c.split("\r\n")[2] for c in sent]
        # The four of a claim on the session's own box (transition, read, commit, the queue
        # read that updates the consoles), and: the subscription, this box's entry in the
        # session's watchers set, and a read of the handoff record this box has not cached.
        assert len(sent) <= 7, commands
        assert commands[0] == "SUBSCRIBE" and ":w\r\n" in sent[1], commands
        await shopper.until(lambda f: f.get("status") == "assigned")
        await shopper.send({"type": "text", "id": "t1", "text": "is anyone there?"})
        await alice.until(
            lambda f: f["type"] == "event" and "anyone there" in json.dumps(f), timeout=5
        )
        for c in (alice, shopper, first):
            await c.close()
