"""Group commit (flowengine/store/group_commit.py): the commits of one event-loop turn are written
together, on a real redis-server and a real SQLite file, each keeping its own compare-and-set; a
failed write fails exactly its batch, and nothing is acknowledged twice or lost. Also over real
shopper sockets: every click of a batch that Redis refused gets `store_unavailable`, and its
resend is applied once."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from flowengine.server.config import ServerConfig
from flowengine.store import Store, StoreUnavailable
from flowengine.store.group_commit import GroupCommit
from flowengine.store.redis import RedisStore
from flowengine.store.sqlite import SqliteStore
from tests.app_server import AppServer
from tests.redis_server import RedisServer
from tests.server_process import Client, eventually


def ev(seq: int, text: str = "hi") -> dict[str, Any]:
    return {"type": "message", "seq": seq, "from": "bot", "text": text}


# -- the batcher on its own ----------------------------------------------------------------------


class Recorder:
    """A write that records its batches; `fail`: the next batch raises; `bad`: requests whose
    own result is an error."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.fail: Exception | None = None
        self.bad: set[int] = set()

    async def write(self, batch: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(batch))
        await asyncio.sleep(0)  # a round trip
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc
        return [ValueError(f"bad {r}") if r in self.bad else r * 10 for r in batch]


async def test_requests_of_one_loop_turn_are_one_write_and_a_lone_one_is_not_delayed() -> None:
    rec = Recorder()
    group: GroupCommit[int, int] = GroupCommit(rec.write)
    assert await asyncio.gather(*(group.submit(i) for i in range(10))) == [
        i * 10 for i in range(10)
    ]
    assert rec.batches == [list(range(10))]
    # A lone request: written on the next loop turn, with no timer (the write itself and the
    # wake-ups take a few turns more).
    task = asyncio.ensure_future(group.submit(7))
    for _ in range(8):
        await asyncio.sleep(0)
    assert task.done() and task.result() == 70
    assert (group.batches, group.requests) == (2, 11)


async def test_a_batch_is_bounded() -> None:
    rec = Recorder()
    group: GroupCommit[int, int] = GroupCommit(rec.write, max_batch=4)
    await asyncio.gather(*(group.submit(i) for i in range(10)))
    assert rec.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


async def test_a_failed_write_fails_exactly_its_batch_and_a_bad_request_only_itself() -> None:
    rec = Recorder()
    group: GroupCommit[int, int] = GroupCommit(rec.write, max_batch=3)
    rec.fail = ConnectionError("gone")
    rec.bad = {4}
    results = await asyncio.gather(*(group.submit(i) for i in range(6)), return_exceptions=True)
    assert [type(r).__name__ if isinstance(r, BaseException) else r for r in results] == [
        "ConnectionError", "ConnectionError", "ConnectionError", 30, "ValueError", 50,
    ]  # fmt: skip


async def test_a_caller_that_goes_away_does_not_cancel_the_shared_write() -> None:
    rec = Recorder()
    group: GroupCommit[int, int] = GroupCommit(rec.write)
    leaving = asyncio.ensure_future(group.submit(1))
    staying = asyncio.ensure_future(group.submit(2))
    await asyncio.sleep(0)
    leaving.cancel()
    assert await staying == 20
    assert rec.batches == [[1, 2]]
    await group.drain()


# -- real stores -----------------------------------------------------------------------------------


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)  # our own: the tests stop it
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        s: Store = SqliteStore(tmp_path / "data")
    else:
        s = RedisStore(request.getfixturevalue("redis").url, max_connections=4)
    yield s
    await s.close()


async def test_a_conflict_in_one_session_of_a_batch_does_not_fail_the_others(
    store: Store,
) -> None:
    for i in range(8):
        await store.commit(f"s{i}", 0, {"n": 0}, [ev(1)], action_id=None, ttl=60, now=1)
    before = store._commits.batches  # type: ignore[union-attr]
    outcomes = await asyncio.gather(
        *(
            store.commit(
                f"s{i}",
                7 if i == 3 else 1,  # s3's revision is stale
                {"n": i},
                [ev(2, f"click {i}")],
                action_id=f"a{i}",
                ttl=60,
                now=2,
            )
            for i in range(8)
        ),
        store.commit("s5", 2, {"n": 55}, [ev(3)], action_id="a5", ttl=60, now=2),  # a resend
    )
    assert store._commits.batches == before + 1  # type: ignore[union-attr]  # one write
    assert [c.outcome for c in outcomes] == [
        "ok", "ok", "ok", "conflict", "ok", "ok", "ok", "ok", "duplicate",
    ]  # fmt: skip
    for i in range(8):
        rec = await store.load(f"s{i}")
        assert rec is not None
        assert (rec.rev, rec.seq, rec.state) == ((1, 1, {"n": 0}) if i == 3 else (2, 2, {"n": i}))
        texts = [e["text"] for e in await store.replay(f"s{i}", 0)]
        assert texts == (["hi"] if i == 3 else ["hi", f"click {i}"])  # once, not twice


async def test_redis_that_is_down_fails_the_batch_and_the_resends_are_applied_once(
    redis: RedisServer,
) -> None:
    store = RedisStore(redis.url, max_connections=4, timeout=2)
    try:
        for i in range(5):
            await store.commit(f"s{i}", 0, {}, [ev(1)], action_id=None, ttl=60, now=1)
        redis.stop()

        def click(i: int) -> Any:
            return store.commit(f"s{i}", 1, {"i": i}, [ev(2)], action_id=f"a{i}", ttl=60, now=2)

        failed = await asyncio.gather(*(click(i) for i in range(5)), return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in failed), failed
        redis.start()
        await eventually(store.ping, timeout=10)
        assert [c.outcome for c in await asyncio.gather(*(click(i) for i in range(5)))] == [
            "ok"
        ] * 5
        assert [c.outcome for c in await asyncio.gather(*(click(i) for i in range(5)))] == [
            "duplicate"
        ] * 5
        for i in range(5):
            assert [e["seq"] for e in await store.replay(f"s{i}", 0)] == [1, 2]
    finally:
        await store.close()


async def test_a_redis_error_in_one_script_fails_that_commit_alone(redis: RedisServer) -> None:
    store = RedisStore(redis.url, max_connections=4)
    try:
        for sid in ("good", "broken"):
            await store.commit(sid, 0, {}, [ev(1)], action_id=None, ttl=60, now=1)
        # The broken session's transcript is not a list any more: its script fails (WRONGTYPE).
        await store._redis.delete("fe:{broken}:log")
        await store._redis.set("fe:{broken}:log", "not a list")
        good, broken = await asyncio.gather(
            store.commit("good", 1, {"x": 1}, [ev(2)], action_id="g", ttl=60, now=2),
            store.commit("broken", 1, {"x": 1}, [ev(2)], action_id="b", ttl=60, now=2),
            return_exceptions=True,
        )
        assert not isinstance(good, BaseException) and good.outcome == "ok"
        assert isinstance(broken, StoreUnavailable)
        assert [e["seq"] for e in await store.replay("good", 0)] == [1, 2]
    finally:
        await store.close()


async def test_an_sqlite_error_fails_the_whole_transaction_and_writes_none_of_it(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "data")
    try:
        for i in range(3):
            await store.commit(f"s{i}", 0, {}, [ev(1)], action_id=None, ttl=60, now=1)

        def broken(db: sqlite3.Connection) -> Any:
            db.execute("INSERT INTO no_such_table VALUES (1)")

        results = await asyncio.gather(
            *(
                store.commit(f"s{i}", 1, {"i": i}, [ev(2)], action_id=f"a{i}", ttl=60, now=2)
                for i in range(3)
            ),
            store._commits.submit(broken),
            return_exceptions=True,
        )
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        for i in range(3):  # rolled back together: nothing half-written
            rec = await store.load(f"s{i}")
            assert rec is not None and rec.rev == 1
            assert len(await store.replay(f"s{i}", 0)) == 1
    finally:
        await store.close()


# -- over real sockets ---------------------------------------------------------------------------


async def test_every_click_of_a_refused_batch_gets_store_unavailable_and_its_resend_lands_once(
    redis: RedisServer,
) -> None:
    async with AppServer(ServerConfig(redis_url=redis.url)) as app:
        shoppers = [await Client.connect(app.ws_url) for _ in range(4)]
        for c in shoppers:
            await c.until(lambda f: f.get("type") == "message" and f.get("options"))
        redis.stop()
        frames = [{"type": "choose", "id": f"click-{i}", "option": "shipping"} for i in range(4)]
        await asyncio.gather(*(c.send(f) for c, f in zip(shoppers, frames, strict=True)))
        for c, f in zip(shoppers, frames, strict=True):
            error = await c.next("error", timeout=15)
            assert (error["code"], error["id"]) == ("store_unavailable", f["id"])
        redis.start()

        async def ready() -> bool:
            return (await app.get("/readyz"))[0] == 200

        await eventually(ready, timeout=15)
        # Resent as a client does (docs/protocol.md): until it is acknowledged; a pooled
        # connection that died with the old server may fail the first resend's batch too.
        acks = [await _acked(c, f) for c, f in zip(shoppers, frames, strict=True)]
        assert all(not a["duplicate"] for a in acks)
        for c, f in zip(shoppers, frames, strict=True):  # a second resend: acknowledged once
            await c.send(f)
            assert (await c.next("ack", timeout=10))["duplicate"] is True
        for c, ack in zip(shoppers, acks, strict=True):
            await c.close()
            again = await Client.connect(app.ws_url, session=c.session)
            await again.until(lambda fr, a=ack: fr.get("seq") == a["seq"])
            shopper = [e for e in again.events if e.get("from") == "shopper"]
            assert len(shopper) == 1  # the click, once
            await again.close()


async def _acked(c: Client, frame: dict[str, Any], tries: int = 10) -> dict[str, Any]:
    for _ in range(tries):
        await c.send(frame)
        while True:
            reply = await c.recv(10)
            if reply.get("id") == frame["id"] and reply["type"] in ("ack", "error"):
                break
        if reply["type"] == "ack":
            return reply
        assert reply["code"] == "store_unavailable", reply
        await asyncio.sleep(0.2)
    raise AssertionError(f"{frame['id']} was never acknowledged")
