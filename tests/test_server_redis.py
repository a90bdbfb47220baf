"""Many boxes on one Redis: resume on another instance, live fan-out, pinned flow versions,
and a Redis that goes away and comes back. The real app served in this process (each instance
its own store, pool and pub/sub connection), a real `flowengine serve` process where a signal is
the point, a real redis-server that is killed and started again."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets

from flowengine.server.config import ServerConfig
from tests.app_server import AppServer, running
from tests.server_process import ROOT, Client, ServerProcess, eventually


@pytest.fixture
def redis_url(redis_server: Any) -> str:
    redis_server.flush()
    return str(redis_server.url)


@pytest.fixture
async def two_servers(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[AppServer, AppServer]]:
    """Two instances on one Redis, in this process: each its own store, pool and pub/sub
    connection. One is given the URL, the other finds it in the environment."""
    monkeypatch.setenv("FLOWENGINE_REDIS_URL", redis_url)
    a, b = AppServer(ServerConfig(redis_url=redis_url)), AppServer(ServerConfig())
    async with running(a, b):
        yield a, b


async def test_a_session_started_on_one_box_continues_on_another(two_servers: Any) -> None:
    a, b = two_servers
    assert json.loads((await a.get("/readyz"))[1])["store"] == "redis"
    assert json.loads((await b.get("/readyz"))[1])["store"] == "redis"
    c = await Client.connect(a.ws_url)
    await c.until(lambda f: f.get("seq") == 1)
    await c.act({"type": "choose", "option": "track"})
    await c.act({"type": "text", "text": "1003"})
    seen = c.events[-1]["seq"]
    await c.close()
    d = await Client.connect(b.ws_url, session=c.session, last_seq=seen)
    assert d.frames[0]["resumed"] is True
    await d.act({"type": "text", "text": "chloe.pop@example.com"})
    await d.until(lambda f: "on its way" in f.get("text", ""))
    assert d.events[0]["seq"] == seen + 1
    await d.close()


async def test_every_tab_on_every_box_sees_each_event_once(two_servers: Any) -> None:
    a, b = two_servers
    on_a = await Client.connect(a.ws_url)
    on_b = await Client.connect(b.ws_url, session=on_a.session)
    await on_a.until(lambda f: f.get("seq") == 1)
    await on_b.until(lambda f: f.get("seq") == 1)
    ack = await on_a.act({"type": "choose", "option": "sizes"})
    await on_b.until(lambda f: f.get("seq") == ack["seq"])
    ack = await on_b.act({"type": "choose", "option": "shoes"})
    await on_a.until(lambda f: f.get("seq") == ack["seq"])
    for c in (on_a, on_b):
        assert [e["seq"] for e in c.events] == list(range(1, ack["seq"] + 1))
        await c.close()


async def _published(raw: Any, sid: str, act: Any) -> list[str]:
    """What the session's channel carried while `act` ran (a plain subscriber: not a watcher)."""
    pubsub = raw.pubsub()
    await pubsub.subscribe(f"fe:n:{sid}")
    await pubsub.get_message(timeout=1)  # the subscription's confirmation
    await act()
    heard = []
    while message := await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.3):
        heard.append(message["data"].decode())
    await pubsub.aclose()
    return heard


async def test_a_commit_is_published_only_while_another_box_follows_the_session(
    two_servers: Any, redis_server: Any
) -> None:
    """The box that commits hears of it directly: pub/sub is for the others, and a click
    followed nowhere else publishes nothing (it was a tenth of the Redis store's CPU)."""
    a, b = two_servers
    raw = aioredis.Redis.from_url(redis_server.url)
    on_a = await Client.connect(a.ws_url)
    await on_a.until(lambda f: f.get("seq") == 1)
    sid = on_a.session
    assert await raw.smembers(f"fe:{{{sid}}}:w") == {a.runtime.store.instance.encode()}
    alone = await _published(raw, sid, lambda: on_a.act({"type": "choose", "option": "sizes"}))
    assert alone == []
    on_b = await Client.connect(b.ws_url, session=sid, last_seq=on_a.events[-1]["seq"])
    await eventually(lambda: _members(raw, sid, 2), timeout=5)  # b follows it once open
    watchers = {s.runtime.store.instance.encode() for s in (a, b)}
    assert await raw.smembers(f"fe:{{{sid}}}:w") == watchers
    acks: list[dict[str, Any]] = []

    async def click() -> None:
        acks.append(await on_a.act({"type": "choose", "option": "tops"}))

    shared = await _published(raw, sid, click)
    assert shared == [f"{acks[0]['seq']}:{a.runtime.store.instance}"]
    await on_b.until(lambda f: f.get("seq") == acks[0]["seq"])
    # The tab on b leaves: b is out of the set, and a's clicks publish nothing again.
    await on_b.close()
    await eventually(lambda: _members(raw, sid, 1), timeout=5)
    assert (
        await _published(raw, sid, lambda: on_a.act({"type": "choose", "option": "another"})) == []
    )
    await on_a.close()
    await raw.aclose()


async def _members(raw: Any, sid: str, n: int) -> bool:
    return len(await raw.smembers(f"fe:{{{sid}}}:w")) == n


async def test_a_box_whose_registration_was_lost_registers_again_when_redis_comes_back(
    two_servers: Any, redis_server: Any
) -> None:
    """A watchers set lost with a Redis (a restart without the last writes, a failover to a
    replica that never had them): each box puts itself back when its pub/sub reconnects, so
    the tab on the other box still hears of every click."""
    a, b = two_servers
    on_a = await Client.connect(a.ws_url)
    await on_a.until(lambda f: f.get("seq") == 1)
    on_b = await Client.connect(b.ws_url, session=on_a.session)
    await on_b.until(lambda f: f.get("seq") == 1)
    raw = aioredis.Redis.from_url(redis_server.url)
    await raw.delete(f"fe:{{{on_a.session}}}:w")
    await raw.aclose()
    redis_server.stop()
    redis_server.start()
    raw = aioredis.Redis.from_url(redis_server.url)
    await eventually(lambda: _members(raw, on_a.session, 2), timeout=15)
    await raw.aclose()
    ack = await on_a.act({"type": "choose", "option": "sizes"}, timeout=15)
    await on_b.until(lambda f: f.get("seq") == ack["seq"], timeout=5)
    assert [e["seq"] for e in on_b.events] == list(range(1, ack["seq"] + 1))
    await on_a.close()
    await on_b.close()


async def test_pinned_flow_versions_follow_the_session_across_boxes(
    tmp_path: Path, redis_url: str
) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", flows)
    async with AppServer(ServerConfig(redis_url=redis_url, flows_dir=str(flows))) as a:
        c = await Client.connect(a.ws_url)
        await c.until(lambda f: f.get("seq") == 1)
        await c.act({"type": "choose", "option": "sizes"})
        old_version = json.loads((await a.get("/readyz"))[1])["flows_version"]
        await c.close()
    guide = flows / "size_guide.yaml"
    guide.write_text(guide.read_text().replace("**Tops** (chest, cm)", "**Tops, new table**"))
    async with AppServer(ServerConfig(redis_url=redis_url, flows_dir=str(flows))) as b:
        assert json.loads((await b.get("/readyz"))[1])["flows_version"] != old_version
        old = await Client.connect(b.ws_url, session=c.session, last_seq=c.events[-1]["seq"])
        await old.act({"type": "choose", "option": "tops"})
        assert any("**Tops** (chest, cm)" in e.get("text", "") for e in old.events)
        new = await Client.connect(b.ws_url)
        await new.until(lambda f: f.get("seq") == 1)
        await new.act({"type": "choose", "option": "sizes"})
        await new.act({"type": "choose", "option": "tops"})
        assert any("**Tops, new table**" in e.get("text", "") for e in new.events)
        await old.close()
        await new.close()


async def test_redis_goes_away_and_comes_back(redis_server: Any, redis_url: str) -> None:
    a = await AppServer(ServerConfig(redis_url=redis_url)).start()
    try:
        c = await Client.connect(a.ws_url)
        await c.until(lambda f: f.get("seq") == 1)
        await c.act({"type": "choose", "option": "shipping"})
        stored = c.events[-1]["seq"]
        redis_server.stop()  # the redis-server process is killed
        status, body = await a.get("/readyz")
        assert status == 503 and json.loads(body)["store_reachable"] is False
        assert (await a.get("/healthz"))[0] == 200  # alive, just not ready
        frame = {"type": "choose", "id": "during-outage", "option": "eu"}
        await c.send(frame)
        error = await c.next("error", timeout=10)
        assert error["code"] == "store_unavailable" and error["id"] == "during-outage"
        redis_server.start()

        async def ready() -> bool:
            return (await a.get("/readyz"))[0] == 200

        await eventually(ready, timeout=15)
        # The client retries the same action; it is applied once and the session carries on.
        await c.send(frame)
        ack = await c.next("ack", timeout=10)
        assert ack["id"] == "during-outage" and not ack["duplicate"]
        await c.close()
        again = await Client.connect(a.ws_url, session=c.session)
        await again.until(lambda f: f.get("seq") == ack["seq"])
        assert [e["seq"] for e in again.events] == list(range(1, ack["seq"] + 1))
        assert ack["seq"] > stored
        await again.close()
        status, metrics = await a.get("/metrics")
        counted = [
            line
            for line in metrics.splitlines()
            if line.startswith("flowengine_store_errors_total ")
        ]
        assert counted and float(counted[0].split()[1]) >= 1
    finally:
        await a.stop()
        if redis_server.proc is None:
            redis_server.start()


async def test_reload_on_sighup_refuses_a_broken_edit(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", flows)
    proc = ServerProcess(flows=flows).start()
    try:
        before = json.loads(proc.get("/readyz")[1])["flows_version"]
        main = flows / "main.yaml"
        good = main.read_text()
        main.write_text(good.replace("flow: track_order", "flow: track_ordr"))
        proc.signal(signal.SIGHUP)
        await proc.logged("flow reload refused")
        assert json.loads(proc.get("/readyz")[1])["flows_version"] == before
        c = await Client.connect(proc.ws_url)  # still serving the old flows
        await c.until(lambda f: f.get("seq") == 1)
        await c.close()
        main.write_text(good.replace("How can I help you today?", "What can I do for you?"))
        proc.signal(signal.SIGHUP)
        await eventually(lambda: json.loads(proc.get("/readyz")[1])["flows_version"] != before)
        d = await Client.connect(proc.ws_url)
        first = await d.until(lambda f: f.get("seq") == 1)
        assert "What can I do for you?" in first["text"]
        await d.close()
    finally:
        proc.stop()
    assert "E103" in proc.log  # the refusal says why


async def test_an_agent_console_is_not_logged_out_by_a_redis_outage(tmp_path: Path) -> None:
    """While Redis is away a console's token cannot be checked: that is "try again"
    (`store_unavailable`, close 1011; the console keeps its token and reconnects), not
    "log in again" (`unauthorized`, a strike against the address, the token dropped). A
    login meanwhile is a 503, not a 500. Once Redis is back, every console's token works at
    once, a burst of them too (the pooled connections the old server closed are replaced)."""
    from tests.redis_server import RedisServer
    from tests.server_process import Agent, add_agent

    server = RedisServer(tmp_path)
    server.start()
    try:
        password = add_agent("dana", redis_url=server.url)
        async with AppServer(ServerConfig(redis_url=server.url)) as app:
            agent = await Agent.login(app, "dana", password)
            for _ in range(3):  # connections in the pool, idle
                more = [await Agent.connect(app, agent.token) for _ in range(4)]
                for a in more:
                    await a.close()
            await agent.close()
            server.stop()
            ws = await websockets.connect(f"ws://127.0.0.1:{app.port}/agent/ws")
            await ws.send(json.dumps({"type": "auth", "token": agent.token}))
            refused = json.loads(await ws.recv())
            assert refused["code"] == "store_unavailable"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
            status, body = await app.post(
                "/agent/api/login", {"username": "dana", "password": password}
            )
            assert status == 503 and "unavailable" in body["error"]
            server.start()
            # Each waits for its welcome: a refusal would fail it.
            back = await asyncio.gather(*(Agent.connect(app, agent.token) for _ in range(8)))
            for a in back:
                await a.close()
            login = {"username": "dana", "password": password}
            assert (await app.post("/agent/api/login", login))[0] == 200
    finally:
        server.stop()
