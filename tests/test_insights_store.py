"""Insight counters kept by each store (memory, SQLite in a temporary dir, a real redis-server):
each log entry is folded exactly once, however consumers crash or race; SQLite's counters
survive a restart; days past the retention go.

The events are written in the shapes docs/events.md gives (the contract's fields), straight
into the analytics log, as the server's batcher writes them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from flowengine.insights import Insights
from flowengine.insights.consumer import FORGET_EVERY, Consumer
from flowengine.insights.fold import fold
from flowengine.store import Store, StoreUnavailable
from flowengine.store.memory import MemoryStore
from flowengine.store.redis import EVENTS_KEY, INSIGHTS_DAY, INSIGHTS_GROUP, RedisStore
from flowengine.store.sqlite import SqliteStore
from tests.app_server import Clock

DAY = date(2026, 11, 2)
AT = datetime(2026, 11, 2, 10, 0, tzinfo=UTC).timestamp()


def ev(kind: str, sid: str, at: float = AT, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "at": at,
        "session": sid,
        "version": "v1",
        "locale": "en",
        **fields,
    }


def conversation(sid: str, at: float = AT, *, resolved: bool = True) -> list[dict[str, Any]]:
    """A conversation in the main flow: started, two steps, ended (resolved or not)."""
    return [
        ev("session_started", sid, at, flow="main"),
        ev("conversation_started", sid, at, flow="main"),
        ev("flow_started", sid, at, flow="main"),
        ev("step_entered", sid, at, flow="main", step="hello", **{"from": None}),
        ev("step_entered", sid, at, flow="main", step="bye", **{"from": "hello"}),
        ev("conversation_ended", sid, at, flow="main", resolution="resolved" if resolved else
           "not_resolved", person=False),
    ]  # fmt: skip


@pytest.fixture
def clock() -> Clock:
    return Clock(AT + 3600)


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


async def no_project(version: str | None) -> None:
    return None


async def headline(store: Store, clock: Clock) -> dict[str, Any]:
    insights = Insights(store, no_project, clock=clock)
    report = await insights.report(DAY, DAY)
    return dict(report["headline"])


async def test_each_entry_is_folded_once(store: Store, clock: Clock) -> None:
    consumer = Consumer(store, clock=clock)
    await store.append_events(conversation("a") + conversation("b", resolved=False))
    assert await consumer.catch_up() > 0
    assert await consumer.catch_up() == 0  # nothing new: nothing counted again
    await store.append_events(conversation("c"))
    assert await consumer.catch_up() > 0
    counts = await store.insight_counts([DAY.isoformat()])
    expected = fold(conversation("a") + conversation("b", resolved=False) + conversation("c"))
    assert counts == {DAY.isoformat(): {f: n for (_, f), n in expected.items()}}
    h = await headline(store, clock)
    assert (h["conversations"], h["automated"], h["automation_rate"]) == (3, 2, 0.6667)


async def test_a_bad_entry_counts_nothing_and_stops_nothing(store: Store, clock: Clock) -> None:
    consumer = Consumer(store, clock=clock)
    bad: list[Any] = [
        {"type": "conversation_started"},  # no `at`
        {"type": "conversation_started", "at": "yesterday", "flow": "main"},
        {"type": "conversation_started", "at": float("nan"), "flow": "main"},
        {"type": "csat_given", "at": AT, "flow": "main", "scale": "five", "score": 9},
        {"type": "handoff_assigned", "at": AT, "flow": "main", "agent": "ann", "waited": -3},
        {"at": AT, "flow": "main"},
    ]
    await store.append_events([*bad, *conversation("a")])
    await consumer.catch_up()
    h = await headline(store, clock)
    assert (h["conversations"], h["csat_agent_n"], h["queue_wait_p50"]) == (1, 0, None)
    report = await Insights(store, no_project, clock=clock).report(DAY, DAY)
    assert report["agents"] == [
        {"agent": "ann", "chats": 1, "first_reply_p50": None, "handle_p50": None,
         "csat": None, "csat_n": 0}
    ]  # fmt: skip


async def test_days_past_the_retention_are_pruned(store: Store) -> None:
    # Redis expires keys by its own clock: this test lives in the present.
    clock = Clock()
    consumer = Consumer(store, clock=clock, retention_days=30)
    old = clock() - 40 * 86400  # 40 days ago: past the retention when it is folded
    recent = clock() - 20 * 86400
    await store.append_events(conversation("old", old) + conversation("recent", recent))
    await consumer.catch_up()
    old_day, recent_day = (datetime.fromtimestamp(t, UTC).date() for t in (old, recent))
    counts = await store.insight_counts([old_day.isoformat(), recent_day.isoformat()])
    assert list(counts) == [recent_day.isoformat()]
    if isinstance(store, RedisStore):  # a TTL: Redis drops the day 30 days after it ended
        r = aioredis.Redis.from_url(store.url)
        expires = await r.expiretime(INSIGHTS_DAY + recent_day.isoformat())
        await r.aclose()
        ended = datetime(recent_day.year, recent_day.month, recent_day.day, tzinfo=UTC)
        assert expires == int(ended.timestamp()) + 31 * 86400
    else:  # time passes: the recent day goes out of the retention too
        clock.advance(15 * 86400)
        assert await consumer.prune() == 7  # the recent day's counters
        assert await store.insight_counts([recent_day.isoformat()]) == {}


async def test_sqlite_counters_survive_a_restart(tmp_path: Path, clock: Clock) -> None:
    store = SqliteStore(tmp_path / "data", clock)
    await store.append_events(conversation("a"))
    await Consumer(store, clock=clock).catch_up()
    await store.append_events(conversation("b"))  # logged, not yet folded when it stops
    await store.close()
    store = SqliteStore(tmp_path / "data", clock)
    try:
        assert (await headline(store, clock))["conversations"] == 1
        await Consumer(store, clock=clock).catch_up()  # the cursor was kept: b only
        assert (await headline(store, clock))["conversations"] == 2
    finally:
        await store.close()


async def test_sqlite_a_failed_fold_writes_neither_counters_nor_cursor(
    tmp_path: Path, clock: Clock
) -> None:
    store = SqliteStore(tmp_path / "data", clock)
    try:
        await store.append_events(conversation("a"))

        def crashing(events: list[Any]) -> dict[tuple[str, str], int]:
            raise ZeroDivisionError("killed mid-fold")

        with pytest.raises(ZeroDivisionError):
            await store.consume_events(crashing, consumer="x")
        assert await store.insight_counts([DAY.isoformat()]) == {}
        await Consumer(store, clock=clock).catch_up()
        assert (await headline(store, clock))["conversations"] == 1
    finally:
        await store.close()


@pytest.fixture
async def redis_store(redis_server: Any) -> AsyncIterator[RedisStore]:
    redis_server.flush()
    s = RedisStore(redis_server.url, max_connections=8)
    yield s
    await s.close()


async def test_two_consumers_on_one_stream_count_each_entry_once(
    redis_server: Any, redis_store: RedisStore, clock: Clock
) -> None:
    other = RedisStore(redis_server.url, max_connections=8)
    try:
        one, two = Consumer(redis_store, clock=clock), Consumer(other, clock=clock)
        batches = [conversation(f"s{i}") for i in range(60)]
        for batch in batches:
            await redis_store.append_events(batch)
        # Both read at once, in small bites, until the stream is drained.
        while sum(
            await asyncio.gather(
                *(c.store.consume_events(c._fold, consumer=c.name, count=7) for c in (one, two))
            )
        ):
            pass
        h = await headline(redis_store, clock)
        assert (h["conversations"], h["automated"]) == (60, 60)
        r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        pending = await r.xpending(EVENTS_KEY, INSIGHTS_GROUP)
        consumers = await r.xinfo_consumers(EVENTS_KEY, INSIGHTS_GROUP)
        await r.aclose()
        assert pending["pending"] == 0
        assert all(c["pending"] == 0 for c in consumers) and len(consumers) == 2
        assert all(c["name"] in (one.name, two.name) for c in consumers)
    finally:
        await other.close()


async def test_a_consumer_that_dies_before_acking_loses_and_doubles_nothing(
    redis_server: Any, redis_store: RedisStore, clock: Clock
) -> None:
    await redis_store.append_events(conversation("a"))
    survivor = Consumer(redis_store, clock=clock, idle=0.2)
    await survivor.catch_up()  # creates the group, folds "a"
    await redis_store.append_events(conversation("b"))
    await redis_store.append_events(conversation("c"))
    # A consumer reads both entries and dies before acknowledging them.
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    read = await r.xreadgroup(INSIGHTS_GROUP, "dead", {EVENTS_KEY: ">"}, count=10)
    assert len(read[0][1]) == 2
    assert await survivor.catch_up() == 0  # not idle long enough: left to their reader
    assert (await headline(redis_store, clock))["conversations"] == 1
    await asyncio.sleep(0.3)
    assert await survivor.catch_up() == 2  # claimed and folded
    assert (await headline(redis_store, clock))["conversations"] == 3
    assert (await r.xpending(EVENTS_KEY, INSIGHTS_GROUP))["pending"] == 0
    # The dead consumer comes back and applies what it had read: its XACK acknowledges
    # nothing, so nothing is added.
    entry_id, fields = read[0][1][0]
    increments = fold(json.loads(fields["events"]))
    day_key = INSIGHTS_DAY + DAY.isoformat()
    fields = [f for _, f in increments]
    spec = " ".join(f"2 {i} {n}" for i, n in enumerate(increments.values(), 1))
    args = [INSIGHTS_GROUP, 1, 2_000_000_000, len(fields), *fields, entry_id, spec]
    assert await redis_store._consume(keys=[EVENTS_KEY, day_key], args=args) == 0
    assert (await headline(redis_store, clock))["conversations"] == 3
    await r.aclose()


async def test_redis_events_stream_and_counters_share_one_slot() -> None:
    from redis.crc import key_slot

    assert key_slot(EVENTS_KEY.encode()) == key_slot((INSIGHTS_DAY + "2026-11-02").encode())


async def test_a_redis_that_is_down_delays_and_loses_nothing(
    redis_server: Any, redis_store: RedisStore, clock: Clock
) -> None:
    await redis_store.append_events(conversation("a"))
    consumer = Consumer(redis_store, clock=clock)
    redis_server.stop()
    try:
        with pytest.raises(StoreUnavailable):
            await consumer.catch_up()
    finally:
        redis_server.start()
    await asyncio.sleep(0.1)
    for _ in range(50):  # the pool reconnects
        try:
            await consumer.catch_up()
            break
        except StoreUnavailable:
            await asyncio.sleep(0.1)
    assert (await headline(redis_store, clock))["conversations"] == 1


async def test_a_redis_entry_that_is_not_events_is_acknowledged_and_counts_nothing(
    redis_server: Any, redis_store: RedisStore, clock: Clock
) -> None:
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    await r.xadd(EVENTS_KEY, {"session": "x", "events": "{not json"})
    await r.xadd(EVENTS_KEY, {"session": "x", "events": '{"type": "conversation_started"}'})
    await r.xadd(EVENTS_KEY, {"session": "x"})  # no events at all
    await redis_store.append_events(conversation("a"))
    assert await Consumer(redis_store, clock=clock).catch_up() == 4
    assert (await headline(redis_store, clock))["conversations"] == 1
    assert (await r.xpending(EVENTS_KEY, INSIGHTS_GROUP))["pending"] == 0
    await r.aclose()


async def test_stopped_redis_consumers_are_forgotten_unless_they_hold_entries(
    redis_server: Any, redis_store: RedisStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flowengine.store.redis as redis_module

    monkeypatch.setattr(redis_module, "CONSUMER_GONE", 0.2)
    consumer = Consumer(redis_store, clock=clock, idle=0.3)
    await consumer.catch_up()  # creates the group
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    await r.xgroup_createconsumer(EVENTS_KEY, INSIGHTS_GROUP, "stopped")
    await redis_store.append_events(conversation("a"))
    await r.xreadgroup(INSIGHTS_GROUP, "died-holding", {EVENTS_KEY: ">"}, count=10)
    await asyncio.sleep(0.4)

    async def names() -> set[str]:
        return {c["name"] for c in await r.xinfo_consumers(EVENTS_KEY, INSIGHTS_GROUP)}

    await consumer.prune(force=True)
    # "stopped" and the idle live one held nothing: forgotten (the live one is back as soon as
    # it reads: nothing of it was lost); "died-holding" holds an entry: kept.
    assert await names() == {"died-holding"}
    assert await consumer.catch_up() == 1  # taken over
    assert await names() == {"died-holding", consumer.name}
    await asyncio.sleep(0.4)
    await consumer.prune(force=True)
    assert "died-holding" not in await names()
    assert (await headline(redis_store, clock))["conversations"] == 1
    await r.aclose()


async def test_insights_on_a_redis_cluster(tmp_path: Path, clock: Clock) -> None:
    """Every key of the consumer's scripts is in the {insights} slot: they run on Cluster."""
    from tests.redis_server import Cluster

    cluster = Cluster(tmp_path, primaries=3).start()
    store = RedisStore(cluster.url, max_connections=8)
    try:
        consumer = Consumer(store, clock=clock)
        await store.append_events(conversation("a") + conversation("b", resolved=False))
        assert await consumer.catch_up() == 1
        assert await consumer.catch_up() == 0
        await consumer.prune(force=True)
        h = await headline(store, clock)
        assert (h["conversations"], h["automated"]) == (2, 1)
    finally:
        await store.close()
        cluster.stop()


# -- the log names sessions: it forgets them once they could have ended ------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_the_embedded_log_forgets_folded_events_older_than_a_session_lives(
    kind: str, clock: Clock, tmp_path: Path
) -> None:
    store: Store = MemoryStore(clock) if kind == "memory" else SqliteStore(tmp_path / "d", clock)
    try:
        consumer = Consumer(store, clock=clock, keep_log=3600)  # forgets before AT
        await store.append_events(conversation("old", at=AT - 60) + conversation("new"))
        assert await consumer.catch_up() > 0
        left = {e["session"] for e in await store.read_events(1000)}
        assert left == {"new"}  # "old" was folded and is older than a session lives
        assert (await headline(store, clock))["conversations"] == 2  # counted all the same
        # Not folded yet: kept, however old (a consumer that was down folds it later).
        await store.append_events(conversation("late", at=AT - 7200))
        await store.forget_log(AT + 1)
        assert {e["session"] for e in await store.read_events(1000)} == {"late"}
        clock.advance(FORGET_EVERY)  # the log is trimmed once a minute at most
        await consumer.catch_up()
        assert (await headline(store, clock))["conversations"] == 3
        assert await store.read_events(1000) == []
    finally:
        await store.close()


async def test_the_redis_log_forgets_old_entries_but_none_unread_or_held(
    redis_server: Any, redis_store: RedisStore, clock: Clock
) -> None:
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        # An entry's id is its time: these three are from 1970, so older than any session.
        for n, sid in enumerate(["folded", "held", "unread"], 1):
            await r.xadd(EVENTS_KEY, {"events": json.dumps(conversation(sid))}, id=f"{n}-0")
        consumer = Consumer(redis_store, clock=clock, keep_log=3600)
        await redis_store.consume_events(consumer._fold, consumer=consumer.name, count=1)
        await r.xreadgroup(INSIGHTS_GROUP, "dead", {EVENTS_KEY: ">"}, count=1)  # "held"
        await redis_store.forget_log(clock())
        ids = [i for i, _ in await r.xrange(EVENTS_KEY)]
        assert ids == ["2-0", "3-0"]  # the held entry and the unread one stay
        await redis_store.append_events(conversation("now"))
        await asyncio.sleep(0.01)
        await redis_store.forget_log(clock())
        assert (await r.xrange(EVENTS_KEY))[0][0] == "2-0"  # a new entry trims nothing held
    finally:
        await r.aclose()


async def test_a_hand_off_that_found_nobody_is_counted_once_by_its_reason(
    store: Store, clock: Clock
) -> None:
    """Offline is what became of a hand-off, not why it happened: the reasons add up to the
    hand-offs, and the left message is counted with the tickets."""
    asked = ev("handoff_requested", "a", flow="main", step="menu", queue="g", priority="normal",
               reason="asked", topic=None)  # fmt: skip
    offline = ev("handoff_offline", "a", flow="main", queue="g", waited=0)
    await store.append_events([*conversation("a")[:3], asked, offline])
    await Consumer(store, clock=clock).catch_up()
    report = await Insights(store, no_project, clock=clock).report(DAY, DAY)
    assert report["headline"]["handed_over"] == 1
    assert sum(report["handoff_reasons"].values()) == 1 and report["handoff_reasons"]["asked"] == 1
    assert report["tickets"]["offline_handoffs"] == 1
