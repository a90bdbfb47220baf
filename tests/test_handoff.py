"""Live-agent handoff end to end: a shopper on one instance, an agent console on another, one
Redis; queue, claim, messages both ways, typing, notes, close, hand back, transfer, timeouts,
auto-assign, webhooks. Two real app instances (each its own store, pool and pub/sub connection)
served over real sockets in this process, a real redis-server; queue timeouts and webhook
retries move the instances' clock instead of waiting."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import websockets

from flowengine.handoff.accounts import Account
from flowengine.handoff.config import HandoffConfig, parse
from flowengine.handoff.passwords import hash_password
from flowengine.handoff.routing import is_open, route, score
from flowengine.handoff.webhooks import signature
from flowengine.server.config import ServerConfig
from tests.app_server import AppServer, Clock, running
from tests.server_process import Agent, Client, ServerProcess, add_agent, eventually

CONFIG = """
teams: [general, orders, returns, sales]
routing:
  - {flow: track_order, team: orders}
  - {flow: identify_order, team: orders}
mode: %(mode)s
capacity: 2
queue_timeout: %(timeout)s
canned:
  - {title: Hi, text: "Hi there!"}
webhooks:
  - url: %(hook)s
    secret_env: HOOK_SECRET
"""


class _Hooks(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []  # noqa: RUF012
    fail_first = True

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Hooks.fail_first:  # the first delivery fails: it must be retried
            _Hooks.fail_first = False
            self.send_response(503)
            self.end_headers()
            return
        _Hooks.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def hook_url() -> Iterator[str]:
    _Hooks.received = []
    _Hooks.fail_first = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def _hooked() -> dict[str, dict[str, Any]]:
    """The webhooks received so far, by event."""
    return {json.loads(body)["event"]: json.loads(body) for _, body in _Hooks.received}


def _config(tmp_path: Path, hook: str, mode: str = "pull", timeout: float = 300) -> Path:
    path = tmp_path / "handoff.yaml"
    path.write_text(CONFIG % {"mode": mode, "timeout": timeout, "hook": hook})
    return path


PASSWORD = "correct-horse-battery"


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)  # scrypt is slow on purpose: once for every test account


def _account(server: AppServer, username: str, teams: str) -> None:
    """An agent account, as `flowengine agents add` makes it (test_agent_auth runs the CLI)."""
    server.runtime.handoffs.accounts.put(
        Account(username, username.capitalize(), "agent", tuple(teams.split(",")), _password_hash())
    )


def _box(redis_url: str, cfg: Path, clock: Callable[[], float]) -> AppServer:
    return AppServer(ServerConfig(redis_url=redis_url, handoff_config=str(cfg)), clock)


@pytest.fixture
def clock() -> Clock:
    """The time every box of a test reads: it stands still until the test moves it."""
    return Clock()


@pytest.fixture
async def boxes(
    tmp_path: Path,
    redis_server: Any,
    hook_url: str,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[AppServer, AppServer]]:
    redis_server.flush()
    monkeypatch.setenv("HOOK_SECRET", "hook-secret")
    cfg = _config(tmp_path, hook_url)
    a, b = _box(redis_server.url, cfg, clock), _box(redis_server.url, cfg, clock)
    async with running(a, b):
        _account(a, "alice", "orders,general")
        _account(a, "bob", "returns")
        yield a, b


async def _to_a_person(c: Client) -> dict[str, Any]:
    await c.until(lambda f: f.get("seq") == 1)
    await c.act({"type": "choose", "option": "track"})
    await c.act({"type": "text", "text": "1003"})
    await c.act({"type": "text", "text": "chloe.pop@example.com"})
    await c.until(lambda f: f.get("type") == "message" and f.get("options"))
    await c.act({"type": "choose", "option": "person"})
    return await c.until(lambda f: f.get("type") == "handoff")


async def test_shopper_and_agent_on_two_boxes(boxes: Any) -> None:
    a, b = boxes
    agent = await Agent.login(b, "alice", PASSWORD)
    await agent.until(lambda f: f["type"] == "queue")  # online now
    shopper = await Client.connect(a.ws_url, context={"shopper": {"name": "Chloe"}})
    queued = await _to_a_person(shopper)
    assert queued["status"] == "queued" and queued["queue"] == "orders" and queued["position"] == 1
    waiting = await agent.until(lambda f: f["type"] == "queue" and f["waiting"])
    item = waiting["waiting"][0]
    assert item["session"] == shopper.session and item["reason"] == "tracking"
    ack = await agent.act({"type": "claim", "session": shopper.session})
    assert ack["type"] == "ack"
    chat = await agent.until(lambda f: f["type"] == "chat")  # before its ack
    packet = chat["packet"]
    assert packet["order"]["number"] == "1003" and packet["order"]["status"] == "shipped"
    assert packet["collected"]["email"] == "chloe.pop@example.com"
    assert packet["shopper"]["name"] == "Chloe" and packet["team"] == "orders"
    assert any(e.get("text") == "Talk to a person" for e in packet["transcript"])
    assigned = await shopper.until(
        lambda f: f.get("type") == "handoff" and f["status"] == "assigned"
    )
    assert assigned["agent"] == "Alice"

    # Messages both ways, typing both ways, a note the shopper never sees.
    await agent.act({"type": "reply", "session": shopper.session, "text": "Hi Chloe, I see it."})
    got = await shopper.until(lambda f: f.get("from") == "agent")
    assert got["text"] == "Hi Chloe, I see it." and got["agent"] == "Alice"
    await shopper.send({"type": "typing"})
    await agent.until(lambda f: f["type"] == "typing" and f["from"] == "shopper")
    await shopper.act({"type": "text", "text": "Thanks! <img src=x onerror=alert(1)>"})
    event = await agent.until(
        lambda f: f["type"] == "event" and f["event"].get("from") == "shopper"
    )
    assert event["event"]["text"] == "Thanks! <img src=x onerror=alert(1)>"
    await agent.act({"type": "typing", "session": shopper.session})
    await shopper.until(lambda f: f.get("type") == "typing" and f["from"] == "agent")
    await agent.act({"type": "note", "session": shopper.session, "text": "VIP, be nice"})
    note = await agent.until(lambda f: f["type"] == "note")
    assert note["session"] == shopper.session and note["note"]["text"] == "VIP, be nice"

    # Hand back to the bot: the shopper is back at the step they left.
    await agent.act({"type": "handback", "session": shopper.session})
    await shopper.until(lambda f: f.get("type") == "handoff" and f["status"] == "handed_back")
    # The note went out on the session's channel before the hand-back did: had the shopper's
    # socket passed it on, it would have arrived by now.
    assert "VIP" not in json.dumps(shopper.frames)
    back = await shopper.until(lambda f: f.get("type") == "message" and f.get("options"))
    assert [o["id"] for o in back["options"]][-1] == "done"
    mine = await agent.act({"type": "reply", "session": shopper.session, "text": "still here?"})
    assert mine["code"] == "not_yours"

    # A second handoff, closed by the agent: the conversation ends, resolved by a person.
    await shopper.act({"type": "handoff"})
    await agent.until(lambda f: f["type"] == "queue" and f["waiting"])
    assert (await agent.act({"type": "claim", "session": shopper.session}))["type"] == "ack"
    await agent.act({"type": "close", "session": shopper.session})
    ended = await shopper.until(lambda f: f.get("type") == "ended")
    assert ended["resolution"] == "agent"
    await shopper.close()
    await agent.close()


async def test_twenty_agents_claim_at_once_one_wins(boxes: Any, redis_server: Any) -> None:
    a, b = boxes
    for i in range(4):
        _account(a, f"agent{i}", "orders")
    first = [await Agent.login(a, f"agent{i}", PASSWORD) for i in range(4)]
    agents = first + [await Agent.connect(a if i % 2 else b, first[i % 4].token) for i in range(16)]
    shopper = await Client.connect(a.ws_url)
    await _to_a_person(shopper)
    await agents[0].until(lambda f: f["type"] == "queue" and f["waiting"])
    results = await asyncio.gather(
        *[g.act({"type": "claim", "session": shopper.session}) for g in agents]
    )
    assert sorted(r["type"] for r in results) == ["ack"] + ["error"] * 19
    assert {r["code"] for r in results if r["type"] == "error"} == {"not_available"}
    winner = agents[[r["type"] for r in results].index("ack")]
    await winner.act({"type": "reply", "session": shopper.session, "text": "It's me."})
    # Events reach the shopper in order, without gaps: by the winner's reply, every
    # "assigned" notice stored before it has arrived too.
    await shopper.until(lambda f: f.get("from") == "agent")
    assert [e["seq"] for e in shopper.events] == list(range(1, len(shopper.events) + 1))
    assert len([f for f in shopper.events if f.get("status") == "assigned"]) == 1
    for g in agents:
        await g.close()
    await shopper.close()


async def test_transfer_to_another_team(boxes: Any) -> None:
    a, b = boxes
    alice = await Agent.login(a, "alice", PASSWORD)
    bob = await Agent.login(b, "bob", PASSWORD)
    await bob.until(lambda f: f["type"] == "queue")
    shopper = await Client.connect(a.ws_url)
    await _to_a_person(shopper)
    await alice.until(lambda f: f["type"] == "queue" and f["waiting"])
    await alice.act({"type": "claim", "session": shopper.session})
    assert (await alice.act({"type": "transfer", "session": shopper.session, "team": "returns"}))[
        "type"
    ] == "ack"
    requeued = await shopper.until(
        lambda f: f.get("type") == "handoff" and f["status"] == "queued" and f["queue"] == "returns"
    )
    assert requeued["position"] == 1
    await bob.until(lambda f: f["type"] == "queue" and f["waiting"])
    assert (await bob.act({"type": "claim", "session": shopper.session}))["type"] == "ack"
    await shopper.until(lambda f: f.get("status") == "assigned" and f.get("agent") == "Bob")
    for x in (alice, bob, shopper):
        await x.close()


async def test_webhooks_are_signed_and_retried(boxes: Any, clock: Clock) -> None:
    a, b = boxes
    agent = await Agent.login(b, "alice", PASSWORD)
    await agent.until(lambda f: f["type"] == "queue")
    shopper = await Client.connect(a.ws_url)
    await _to_a_person(shopper)
    await agent.until(lambda f: f["type"] == "queue" and f["waiting"])
    await agent.act({"type": "claim", "session": shopper.session})
    await agent.act({"type": "close", "session": shopper.session})
    everything = {"handoff.created", "handoff.assigned", "conversation.closed"}

    async def refused() -> dict[str, Any] | None:
        return next((e for e in await a.runtime.store.webhook_log() if not e["ok"]), None)

    # The receiver refuses the first delivery (503); the others go through meanwhile.
    first = await eventually(refused)
    assert first["status"] == 503 and first["attempt"] == 1
    await eventually(lambda: everything - {first["event"]} <= _hooked().keys())

    async def a_second_later() -> bool:
        """The boxes' clock stands still: move it on, and deliver what is due (as the workers
        would, a little later)."""
        clock.advance(1)
        await a.runtime.webhooks.deliver_one()
        return everything <= _hooked().keys()

    await eventually(a_second_later)
    attempts = [e for e in await a.runtime.store.webhook_log() if e["id"] == first["id"]]
    assert [(e["attempt"], e["ok"]) for e in attempts] == [(1, False), (2, True)]
    assert attempts[1]["at"] - attempts[0]["at"] >= 1  # not before its backoff, on that clock
    for headers, body in _Hooks.received:
        assert headers["x-flowengine-signature"] == signature("hook-secret", body)
        assert headers["x-flowengine-delivery"]
    assert [h["x-flowengine-delivery"] for h, _ in _Hooks.received].count(first["id"]) == 1
    closed = _hooked()["conversation.closed"]
    assert closed["data"]["order"]["number"] == "1003" and closed["data"]["transcript"]
    await agent.close()
    await shopper.close()


async def test_nobody_claims_in_time_and_auto_assign(
    tmp_path: Path, redis_server: Any, hook_url: str, clock: Clock
) -> None:
    redis_server.flush()
    cfg = _config(tmp_path, hook_url, timeout=120)
    async with _box(redis_server.url, cfg, clock) as box:
        _account(box, "alice", "orders,general")
        agent = await Agent.login(box, "alice", PASSWORD)
        await agent.until(lambda f: f["type"] == "queue")
        shopper = await Client.connect(box.ws_url)
        queued = await _to_a_person(shopper)
        assert queued["status"] == "queued"
        clock.advance(119)
        await box.runtime.handoffs.sweep()
        assert (await box.runtime.store.get_handoff(shopper.session or ""))["status"] == "queued"
        clock.advance(2)  # past queue_timeout: the next sweep gives the chat to the offline exit
        await box.runtime.handoffs.sweep()
        timed_out = await shopper.until(
            lambda f: f.get("type") == "handoff" and f["status"] == "offline"
        )
        assert timed_out["reason"] == "timeout"
        await shopper.until(lambda f: f.get("input") and f["input"]["kind"] == "email")  # a message
        await agent.close()
        await shopper.close()
    auto_dir = tmp_path / "auto"
    auto_dir.mkdir()
    async with _box(redis_server.url, _config(auto_dir, hook_url, mode="auto"), clock) as box:
        agent = await Agent.login(box, "alice", PASSWORD)
        await agent.until(lambda f: f["type"] == "queue")
        shopper = await Client.connect(box.ws_url)
        await _to_a_person(shopper)
        assigned = await shopper.until(lambda f: f.get("status") == "assigned")
        assert assigned["agent"] == "Alice"
        mine = await agent.until(lambda f: f["type"] == "queue" and f["mine"])
        assert mine["mine"][0]["session"] == shopper.session
        await agent.close()
        await shopper.close()


async def test_agent_auth(tmp_path: Path) -> None:
    agents = tmp_path / "agents.json"
    add_agent("carol", agents_file=agents)
    proc = ServerProcess("--agents-file", str(agents)).start()
    try:
        import urllib.error
        import urllib.request

        bad = urllib.request.Request(
            proc.http + "/agent/api/login",
            method="POST",
            data=b'{"username": "carol", "password": "nope"}',
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(bad, timeout=5)
        assert exc.value.code == 401
        ws = await websockets.connect(f"ws://127.0.0.1:{proc.port}/agent/ws")
        await ws.send(json.dumps({"type": "auth", "token": "x" * 40}))
        assert json.loads(await ws.recv())["code"] == "unauthorized"
        agent = await Agent.login(proc, "carol", PASSWORD)
        welcome = agent.frames[0]
        assert welcome["agent"]["username"] == "carol" and "password_hash" not in json.dumps(
            welcome
        )
        err = await agent.act({"type": "reply", "session": "nonexistent-session", "text": "hi"})
        assert err["code"] == "session_gone"  # no such session (any more)
        await agent.close()
        status, page = proc.get("/agent")
        assert status == 200 and "console.js" in page
    finally:
        proc.stop()


def test_routing_schedule_and_config_errors() -> None:
    cfg = parse(
        {
            "teams": ["general", "orders"],
            "routing": [{"flow": "track_order", "team": "orders", "priority": "high"}],
            "schedule": {"timezone": "Europe/Prague", "hours": {"mon": "08:00-18:00"}},
        }
    )
    assert route(cfg, "track_order", None, "general", "normal") == ("orders", "high")
    assert route(cfg, "main", None, "sales", "low") == ("general", "low")
    assert score("urgent", 1000.0) < score("normal", 0.0)  # urgent first, whatever the wait
    monday_9_prague = 1795680000.0 - 86400 * 0  # computed below instead of trusting a constant
    from datetime import datetime
    from zoneinfo import ZoneInfo

    monday_9_prague = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("Europe/Prague")).timestamp()
    assert is_open(cfg, monday_9_prague)
    assert not is_open(cfg, monday_9_prague + 10 * 3600)  # 19:00
    assert not is_open(cfg, monday_9_prague + 86400)  # Tuesday: no hours
    assert is_open(HandoffConfig(), monday_9_prague + 86400)  # no schedule: always open
    for bad in (
        {"teams": ["a"], "routing": [{"team": "b"}]},
        {"schedule": {"timezone": "Mars/Base"}},
        {"schedule": {"hours": {"mon": "8-18"}}},
        {"mode": "psychic"},
        {"colour": 1},
    ):
        with pytest.raises(ValueError):
            parse(bad)


async def test_the_queue_survives_a_restart_and_logout_ends_a_login(
    boxes: Any, redis_server: Any, tmp_path: Path, clock: Clock
) -> None:
    a, b = boxes
    agent = await Agent.login(a, "alice", PASSWORD)
    await agent.until(lambda f: f["type"] == "queue")
    shopper = await Client.connect(b.ws_url)
    await _to_a_person(shopper)
    await agent.close()
    await a.stop()
    await b.stop()
    # Every server stopped; a new one on the same Redis has the queue and the login.
    async with _box(redis_server.url, tmp_path / "handoff.yaml", clock) as fresh:
        again = await Agent.connect(fresh, agent.token)
        waiting = await again.until(lambda f: f["type"] == "queue" and f["waiting"])
        assert waiting["waiting"][0]["session"] == shopper.session
        await again.logout(fresh)
        ws = await websockets.connect(f"ws://127.0.0.1:{fresh.port}/agent/ws")
        await ws.send(json.dumps({"type": "auth", "token": agent.token}))
        assert json.loads(await ws.recv())["code"] == "unauthorized"
        await ws.close()
        await again.close()


async def test_out_of_hours_goes_straight_to_leaving_a_message(
    tmp_path: Path, redis_server: Any
) -> None:
    redis_server.flush()
    cfg = tmp_path / "handoff.yaml"
    # Open one minute a week, and the boxes' clock says Monday noon: closed now.
    cfg.write_text(
        "teams: [general, orders]\nschedule:\n  timezone: UTC\n  hours:\n    mon: '03:00-03:01'\n"
    )
    monday_noon = datetime(2026, 11, 23, 12, 0, tzinfo=UTC).timestamp()
    async with _box(redis_server.url, cfg, Clock(monday_noon)) as proc:
        _account(proc, "alice", "orders,general")
        agent = await Agent.login(proc, "alice", PASSWORD)  # online, but closed
        await agent.until(lambda f: f["type"] == "queue")
        shopper = await Client.connect(proc.ws_url)
        await shopper.until(lambda f: f.get("seq") == 1)
        await shopper.act({"type": "handoff"})
        offline = await shopper.until(lambda f: f.get("type") == "handoff")
        assert offline["status"] == "offline" and offline["reason"] == "closed"
        await shopper.until(lambda f: (f.get("input") or {}).get("kind") == "email")
        await agent.close()
        await shopper.close()


async def test_an_agent_who_reconnects_picks_up_their_chats(boxes: Any) -> None:
    a, b = boxes
    agent = await Agent.login(a, "alice", PASSWORD)
    await agent.until(lambda f: f["type"] == "queue")
    shopper = await Client.connect(b.ws_url)
    await _to_a_person(shopper)
    await agent.until(lambda f: f["type"] == "queue" and f["waiting"])
    await agent.act({"type": "claim", "session": shopper.session})
    await agent.close()  # the agent's network drops
    await shopper.act({"type": "text", "text": "are you still there?"})
    back = await Agent.connect(b, agent.token)  # another box, same login
    mine = await back.until(lambda f: f["type"] == "queue" and f["mine"])
    assert [r["session"] for r in mine["mine"]] == [shopper.session]
    await back.act({"type": "open", "session": shopper.session})
    chat = await back.until(lambda f: f["type"] == "chat")
    assert chat["packet"]["transcript"][-1]["text"] == "are you still there?"
    await shopper.act({"type": "text", "text": "hello?"})
    live = await back.until(lambda f: f["type"] == "event" and f["event"].get("text") == "hello?")
    assert live["session"] == shopper.session
    await back.act({"type": "reply", "session": shopper.session, "text": "Yes, sorry!"})
    await shopper.until(lambda f: f.get("from") == "agent" and f["text"] == "Yes, sorry!")
    await back.close()
    await shopper.close()


async def test_the_login_throttle_counts_failures_on_every_box(boxes: Any) -> None:
    a, b = boxes
    # A team behind one office address logging in at shift start: successes never count.
    for _ in range(8):
        agent = await Agent.login(a if _ % 2 else b, "alice", PASSWORD)
        await agent.close()
    # Failures do, per username, on every instance alike.
    statuses = []
    for i in range(6):
        status, _body = await (a if i % 2 else b).post(
            "/agent/api/login", {"username": "bob", "password": "wrong"}
        )
        statuses.append(status)
    assert statuses == [401] * 5 + [429]
    status, body = await a.post("/agent/api/login", {"username": "bob", "password": PASSWORD})
    assert status == 429 and "wait" in body["error"]  # the right password too, until it ends
    agent = await Agent.login(b, "alice", PASSWORD)  # another name from the same address
    await agent.close()
