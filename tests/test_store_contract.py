"""One contract, three stores: the embedded MemoryStore and SqliteStore (a file in a fresh
temporary dir), and RedisStore on a real redis-server.

Expiry: the embedded stores read the clock they are given, which the tests move; Redis expires
keys by its own clock, so there the tests use short TTLs and wait until the key is gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flowengine.store import Store, StoreUnavailable
from flowengine.store.memory import MemoryStore
from flowengine.store.redis import RedisStore
from flowengine.store.sqlite import SqliteStore
from tests.app_server import Clock
from tests.redis_server import RedisServer
from tests.server_process import eventually


@pytest.fixture
def clock() -> Clock:
    return Clock(1_000.0)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(
    request: pytest.FixtureRequest, clock: Clock, tmp_path: Path
) -> AsyncIterator[Store]:
    if request.param == "memory":
        s: Store = MemoryStore(clock)
    elif request.param == "sqlite":
        s = SqliteStore(tmp_path / "data", clock)
    else:
        server = request.getfixturevalue("redis_server")
        server.flush()
        s = RedisStore(server.url, max_connections=8)
    yield s
    await s.close()


def ev(seq: int, text: str = "hi") -> dict[str, Any]:
    return {"type": "message", "seq": seq, "from": "bot", "text": text}


async def test_create_load_commit_replay(store: Store) -> None:
    assert await store.load("s1") is None
    c = await store.commit("s1", 0, {"a": 1}, [ev(1), ev(2)], action_id=None, ttl=60, now=1.0)
    assert c.outcome == "ok" and c.rev == 1 and c.seq == 2
    rec = await store.load("s1")
    assert rec is not None and rec.state == {"a": 1} and rec.rev == 1 and rec.seq == 2
    c = await store.commit(
        "s1", 1, {"a": 2}, [ev(3, "ünïcode ภาษาไทย")], action_id="c1", ttl=60, now=2.0
    )
    assert (c.outcome, c.rev, c.seq) == ("ok", 2, 3)
    assert [e["seq"] for e in await store.replay("s1", 0)] == [1, 2, 3]
    assert [e["text"] for e in await store.replay("s1", 2)] == ["ünïcode ภาษาไทย"]
    assert await store.replay("s1", 3) == []
    assert await store.replay("nope", 0) == []


async def test_create_twice_conflicts_and_missing_sessions_are_missing(store: Store) -> None:
    await store.commit("s", 0, {}, [ev(1)], action_id=None, ttl=60, now=0)
    assert (await store.commit("s", 0, {}, [], action_id=None, ttl=60, now=0)).outcome == "conflict"
    assert (await store.commit("x", 5, {}, [], action_id=None, ttl=60, now=0)).outcome == "missing"


async def test_stale_revision_conflicts_and_writes_nothing(store: Store) -> None:
    await store.commit("s", 0, {"v": 0}, [ev(1)], action_id=None, ttl=60, now=0)
    await store.commit("s", 1, {"v": 1}, [ev(2)], action_id=None, ttl=60, now=0)
    c = await store.commit("s", 1, {"v": "stale"}, [ev(3)], action_id="late", ttl=60, now=0)
    assert (c.outcome, c.rev, c.seq) == ("conflict", 2, 2)
    rec = await store.load("s")
    assert rec is not None and rec.state == {"v": 1} and rec.seq == 2
    # The conflicting action id was not recorded: a retry on the right revision applies.
    c = await store.commit("s", 2, {"v": 2}, [ev(3)], action_id="late", ttl=60, now=0)
    assert c.outcome == "ok"


async def test_events_that_do_not_follow_the_stored_seq_are_refused(store: Store) -> None:
    """A view numbered from an old seq (a stale cache after a failover) on the right revision:
    refused as a conflict, so the transcript never gets a gap or a repeat."""
    await store.commit("s", 0, {}, [ev(1), ev(2)], action_id=None, ttl=60, now=0)
    for wrong in (ev(2), ev(4)):
        c = await store.commit("s", 1, {"v": "stale"}, [wrong], action_id="a", ttl=60, now=0)
        assert (c.outcome, c.seq) == ("conflict", 2)
    assert [e["seq"] for e in await store.replay("s", 0)] == [1, 2]
    assert (await store.commit("s", 1, {}, [ev(3)], action_id="a", ttl=60, now=0)).outcome == "ok"


async def test_an_action_id_is_applied_once(store: Store) -> None:
    await store.commit("s", 0, {}, [ev(1)], action_id="a1", ttl=60, now=0)
    rec = await store.load("s", "a1")
    assert rec is not None and rec.applied
    rec = await store.load("s", "a2")
    assert rec is not None and not rec.applied
    c = await store.commit("s", 1, {"again": True}, [ev(2)], action_id="a1", ttl=60, now=0)
    assert (c.outcome, c.seq) == ("duplicate", 1)
    rec = await store.load("s")
    assert rec is not None and rec.state == {} and rec.seq == 1


async def test_concurrent_commits_one_winner_no_lost_events(store: Store) -> None:
    await store.commit("s", 0, {}, [ev(1)], action_id=None, ttl=60, now=0)

    async def writer(name: str) -> None:
        for i in range(20):
            while True:
                rec = await store.load("s")
                assert rec is not None
                c = await store.commit(
                    "s",
                    rec.rev,
                    {"last": name},
                    [ev(rec.seq + 1, f"{name}{i}")],
                    action_id=f"{name}{i}",
                    ttl=60,
                    now=0,
                )
                if c.outcome in ("ok", "duplicate"):
                    break

    await asyncio.gather(writer("a"), writer("b"), writer("c"))
    log = await store.replay("s", 0)
    assert [e["seq"] for e in log] == list(range(1, 62))
    assert sorted(e["text"] for e in log[1:]) == sorted(f"{n}{i}" for n in "abc" for i in range(20))


async def test_sessions_expire(store: Store, clock: Clock) -> None:
    await store.commit("s", 0, {}, [ev(1)], action_id=None, ttl=0.05, now=0)
    clock.advance(0.05)
    assert await eventually(lambda: _gone(store, "s"))
    assert await store.replay("s", 0) == []


async def _gone(store: Store, sid: str) -> bool:
    return await store.load(sid) is None


async def test_versions_and_events(store: Store) -> None:
    await store.put_version("v1", {"flows": {"a.yaml": "flow: a"}}, ttl=60)
    assert await store.get_version("v1") == {"flows": {"a.yaml": "flow: a"}}
    assert await store.get_version("v2") is None
    await store.touch_version("v1", ttl=60)
    await store.append_events([{"type": "x", "n": i} for i in range(5)])
    assert [e["n"] for e in await store.read_events(3)] == [2, 3, 4]


async def test_watchers_hear_of_commits(store: Store) -> None:
    heard: list[tuple[str, int]] = []
    got = asyncio.Event()

    class Listener:
        def committed(self, sid: str, seq: int, events: object) -> None:
            heard.append((sid, seq))
            got.set()

        def signalled(self, sid: str, payload: object) -> None:
            pass

    store.set_listener(Listener())
    await store.watch("w")
    await store.commit("w", 0, {}, [ev(1), ev(2)], action_id=None, ttl=60, now=0)
    await asyncio.wait_for(got.wait(), 5)
    assert ("w", 2) in heard
    await store.unwatch("w")
    heard.clear()
    got.clear()
    await store.commit("w", 1, {}, [ev(3)], action_id=None, ttl=60, now=0)
    # News comes in commit order: by the time a later commit to a watched session is heard,
    # news of "w" would have been too.
    await store.watch("z")
    await store.commit("z", 0, {}, [ev(1)], action_id=None, ttl=60, now=0)
    await asyncio.wait_for(got.wait(), 5)
    assert heard == [("z", 1)]
    assert await store.ping()


async def test_a_reload_on_one_instance_keeps_it_following_the_session(redis_server: Any) -> None:
    """A reload: the new socket's watch runs while the old socket's unwatch is still under way
    (the Hub's last follower left, a new one came). The instance must end subscribed and in
    the session's watchers set, so another instance's commits reach it; with watch and unwatch
    interleaved, the unwatch's unsubscribe and SREM landed after the watch's subscribe and
    SADD, and it heard nothing more of the session."""
    redis_server.flush()
    here, there = RedisStore(redis_server.url), RedisStore(redis_server.url)
    heard: list[int] = []

    class Listener:
        def committed(self, sid: str, seq: int, events: object) -> None:
            heard.append(seq)

        def signalled(self, sid: str, payload: object) -> None:
            pass

    here.set_listener(Listener())
    try:
        await there.commit("r", 0, {}, [ev(1)], action_id=None, ttl=60, now=0)
        await here.watch("r")
        for n in range(2, 7):  # a few reloads, each a last unwatch racing a first watch
            await asyncio.gather(here.unwatch("r"), here.watch("r"))
            assert await there._redis.smembers("fe:{r}:w") == {here.instance}
            await there.commit("r", n - 1, {}, [ev(n)], action_id=None, ttl=60, now=0)
            await eventually(lambda n=n: n in heard, timeout=3)
    finally:
        await here.close()
        await there.close()


async def test_redis_that_goes_away_and_comes_back(redis_server: Any) -> None:
    redis_server.flush()
    store = RedisStore(redis_server.url, timeout=0.5)
    try:
        await store.commit("s", 0, {"n": 1}, [ev(1)], action_id=None, ttl=600, now=0)
        redis_server.stop()
        assert not await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.load("s")
        with pytest.raises(StoreUnavailable):
            await store.commit("s", 1, {"n": 2}, [ev(2)], action_id=None, ttl=600, now=0)
        redis_server.start()
        assert await store.ping()
        rec = await store.load("s")  # what was committed before the outage is still there
        assert rec is not None and rec.state == {"n": 1} and rec.seq == 1
        c = await store.commit("s", 1, {"n": 2}, [ev(2)], action_id=None, ttl=600, now=0)
        assert (c.outcome, c.seq) == ("ok", 2)
    finally:
        await store.close()


async def test_right_after_a_redis_restart_no_command_fails_on_a_connection_it_dropped(
    tmp_path: Path,
) -> None:
    """The pool still holds the connections the old server dropped. redis-py's check of a
    pooled connection before use is off while its "maintenance notifications" are on (their
    default, "auto", counts as on), so every one failed its first command with Redis back
    up: a shopper's hello or click refused, an agent console sent back to its login. Every
    command at once, as a burst of clients after an outage sends them. Its own server: it is
    restarted while the pool is full."""
    server = RedisServer(tmp_path)
    server.start()
    store = RedisStore(server.url, max_connections=8)
    try:
        for n in range(8):
            await store.commit(f"s{n}", 0, {"n": 1}, [ev(1)], action_id=None, ttl=600, now=0)
        for _ in range(3):  # eight pooled connections, all idle
            await asyncio.gather(*(store.load(f"s{n}") for n in range(8)))
        server.stop()
        server.start()
        commits = await asyncio.gather(
            *(
                store.commit(f"s{n}", 1, {"n": 2}, [ev(2)], action_id="a", ttl=600, now=0)
                for n in range(8)
            )
        )
        assert {c.outcome for c in commits} == {"ok"}  # appendonly: rev 1 was kept
        tokens = await asyncio.gather(*(store.get_token(f"t{n}") for n in range(8)))
        assert tokens == [None] * 8
        loads = await asyncio.gather(*(store.load(f"s{n}") for n in range(8)))
        assert all(r is not None and r.seq == 2 for r in loads)
        replays = await asyncio.gather(*(store.replay(f"s{n}", 0) for n in range(8)))
        assert all([e["seq"] for e in r] == [1, 2] for r in replays)
    finally:
        await store.close()
        server.stop()


# -- the handoff queue ---------------------------------------------------------------------


def rec(sid: str, team: str = "orders", **extra: Any) -> dict[str, Any]:
    return {
        "session": sid,
        "team": team,
        "priority": "normal",
        "reason": "r",
        "flow": "f",
        "created_at": 1.0,
        **extra,
    }


async def test_queue_order_and_one_open_handoff_per_session(store: Any) -> None:
    assert await store.put_handoff("a", rec("a"), score=300, ttl=60)
    assert await store.put_handoff("b", rec("b"), score=100, ttl=60)
    assert await store.put_handoff("c", rec("c", team="returns"), score=50, ttl=60)
    assert not await store.put_handoff("a", rec("a"), score=1, ttl=60)  # still open
    assert [r["session"] for r in await store.queue("orders")] == ["b", "a"]
    assert [r["session"] for r in await store.queue("returns")] == ["c"]
    got = await store.get_handoff("a")
    assert got["status"] == "queued" and got["agent"] is None and got["reason"] == "r"


async def test_twenty_agents_claim_one_chat_exactly_one_wins(store: Any) -> None:
    await store.put_handoff("s", rec("s"), score=1, ttl=60)

    async def claim(agent: str) -> dict[str, Any] | None:
        return await store.transition(
            "s", ("queued",), {"status": "assigned", "agent": agent}, None, 60
        )

    results = await asyncio.gather(*[claim(f"agent{i}") for i in range(20)])
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert await store.queue("orders") == []
    winner = winners[0]["agent"]
    assert [r["session"] for r in await store.agent_chats(winner)] == ["s"]
    assert await store.agent_chats("nobody") == []


async def test_transfer_close_and_reopen(store: Any) -> None:
    await store.put_handoff("s", rec("s"), score=5, ttl=60)
    await store.transition("s", ("queued",), {"status": "assigned", "agent": "ann"}, None, 60)
    moved = await store.transition(
        "s", ("assigned",), {"status": "queued", "team": "returns", "agent": None}, 7, 60
    )
    assert moved is not None and moved["team"] == "returns"
    assert await store.agent_chats("ann") == []
    assert [r["session"] for r in await store.queue("returns")] == ["s"]
    closed = await store.transition("s", ("queued", "assigned"), {"status": "closed"}, None, 60)
    assert closed is not None and await store.queue("returns") == []
    assert (
        await store.transition("s", ("queued",), {"status": "assigned", "agent": "x"}, None, 60)
        is None
    )
    assert await store.put_handoff("s", rec("s"), score=9, ttl=60)  # a closed one can reopen


async def test_presence_tokens_notes_signals_and_outbox(store: Any) -> None:
    await store.heartbeat("ann", {"teams": ["orders"], "status": "online"}, now=100.0)
    await store.heartbeat("bob", {"teams": ["returns"], "status": "online"}, now=50.0)
    assert set(await store.online(now=110.0)) == {"ann"}
    await store.put_token("h1", "ann", ttl=60)
    assert await store.get_token("h1") == "ann"
    await store.del_token("h1")
    assert await store.get_token("h1") is None
    await store.add_note("s", {"text": "called the carrier"}, ttl=60)
    assert [n["text"] for n in await store.notes("s")] == ["called the carrier"]
    heard: list[Any] = []
    got = asyncio.Event()

    class Listener:
        def committed(self, sid: str, seq: int, events: object) -> None:
            pass

        def signalled(self, sid: str, payload: Any) -> None:
            heard.append((sid, 0, payload))
            got.set()

    store.set_listener(Listener())
    await store.watch("s")
    await store.signal("s", {"typing": "shopper"})
    await asyncio.wait_for(got.wait(), 5)
    assert heard[0] == ("s", 0, {"typing": "shopper"})
    await store.push_webhook({"id": "w1", "event": "handoff.created"})
    item = await store.take_webhook()
    assert item is not None and item["id"] == "w1"
    assert await store.take_webhook() is None
    assert await store.recover_webhooks() == 1  # a crash before done: delivered again
    item = await store.take_webhook()
    await store.done_webhook(item)
    assert await store.recover_webhooks() == 0
    await store.log_webhook({"id": "w1", "status": 200})
    assert (await store.webhook_log())[-1]["status"] == 200


async def test_failures_are_counted_per_key_within_a_window(store: Any, clock: Clock) -> None:
    assert await store.failures(["user:ann", "addr:1.2.3.4"]) == [0, 0]
    for _ in range(3):
        await store.add_failure(["user:ann", "addr:1.2.3.4"], window=0.3)
    await store.add_failure(["addr:1.2.3.4"], window=0.3)
    assert await store.failures(["user:ann", "addr:1.2.3.4", "user:bob"]) == [3, 4, 0]
    clock.advance(0.3)  # the window runs from the first failure (a TTL on Redis)
    await eventually(lambda: _counts(store, ["user:ann", "addr:1.2.3.4"], [0, 0]), timeout=2)
    await store.add_failure(["user:ann"], window=60)
    assert await store.failures(["user:ann"]) == [1]


async def test_a_failure_is_counted_and_answered_at_once_and_can_be_taken_back(
    store: Any,
) -> None:
    counts = await asyncio.gather(*(store.add_failure(["k"], window=60) for _ in range(20)))
    assert sorted(c[0] for c in counts) == list(range(1, 21))  # each attempt its own count
    assert await store.add_failure(["k", "other"], window=60) == [21, 1]
    await store.forgive(["k", "other", "missing"])
    assert await store.failures(["k", "other", "missing"]) == [20, 0, 0]
    await store.forgive(["other"])  # never below zero
    assert await store.failures(["other"]) == [0]


async def _counts(store: Any, keys: list[str], expected: list[int]) -> bool:
    return bool(await store.failures(keys) == expected)


async def test_the_inbox_lists_without_packets_and_opens_with_one(store: Any) -> None:
    packet = {"session": "s1", "transcript": [], "order": None}
    for i, key in enumerate(("T-1.a", "T-1.b")):
        await store.put_ticket(key, {"key": key, "created_at": float(i), "packet": packet})
    listed = await store.tickets()
    assert [t["key"] for t in listed] == ["T-1.b", "T-1.a"]  # newest first
    assert all("packet" not in t for t in listed)
    assert await store.update_ticket("T-1.a", {"status": "done"}) is not None
    opened = await store.get_ticket("T-1.a")
    assert opened is not None and opened["status"] == "done" and opened["packet"] == packet
    assert await store.update_ticket("nope", {"status": "done"}) is None
    assert await store.get_ticket("nope") is None


async def test_once_forget_and_leave(store: Any) -> None:
    assert await store.once("agent:a:1", 60) is True
    assert await store.once("agent:a:1", 60) is False
    await store.forget("agent:a:1")
    assert await store.once("agent:a:1", 60) is True
    await store.heartbeat("alice", {"teams": ["general"]}, 100.0)
    assert (await store.presence())["alice"] == 100.0
    await store.leave("alice")
    assert "alice" not in await store.presence()
