"""Redis as production runs it: writes a failover lost, a primary demoted in place, replicas
acknowledging commits (WAIT), Sentinel, Cluster. Real redis-server processes started by the
tests (tests/redis_server.py), on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from flowengine.server.config import ServerConfig
from flowengine.store import StoreUnavailable
from flowengine.store.redis import RedisStore
from tests.app_server import AppServer, running
from tests.redis_server import (
    Cluster,
    Proxy,
    RedisServer,
    SentinelServer,
    command,
    free_port,
    start_servers,
    stop_all,
)
from tests.server_process import Agent, Client, add_agent, eventually


def ev(seq: int, text: str = "hi") -> dict[str, Any]:
    return {"type": "message", "seq": seq, "from": "bot", "text": text}


@pytest.fixture
async def raw(redis_server: Any) -> AsyncIterator[aioredis.Redis]:
    redis_server.flush()
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    yield r
    await r.aclose()


# -- 1. seq safety ----------------------------------------------------------------------------


async def test_a_commit_whose_seqs_do_not_follow_the_stored_seq_is_a_conflict(
    redis_server: Any, raw: aioredis.Redis
) -> None:
    store = RedisStore(redis_server.url)
    try:
        await store.commit("s", 0, {"v": 0}, [ev(1), ev(2)], action_id=None, ttl=60, now=0)
        # Old seqs on the right revision (a cache made stale by a failover): refused.
        c = await store.commit("s", 1, {"v": 1}, [ev(2)], action_id="x", ttl=60, now=0)
        assert (c.outcome, c.rev, c.seq) == ("conflict", 1, 2)
        c = await store.commit("s", 1, {"v": 1}, [ev(4)], action_id="x", ttl=60, now=0)
        assert c.outcome == "conflict"
        assert [e["seq"] for e in await store.replay("s", 0)] == [1, 2]
        c = await store.commit("s", 1, {"v": 1}, [ev(3)], action_id="x", ttl=60, now=0)
        assert (c.outcome, c.seq) == ("ok", 3)
    finally:
        await store.close()


async def _rewind(r: aioredis.Redis, sid: str, snapshot: dict[str, str], rev: int) -> None:
    """What a failover that lost the writes after `snapshot` leaves (with the revision `rev`)."""
    await r.hset(f"fe:{{{sid}}}:s", mapping={**snapshot, "rev": rev})
    await r.ltrim(f"fe:{{{sid}}}:log", 0, int(snapshot["seq"]) - 1)


async def test_a_stale_cache_on_a_matching_revision_rereads_and_numbers_after_the_store(
    redis_server: Any, raw: aioredis.Redis
) -> None:
    async with AppServer(ServerConfig(redis_url=redis_server.url)) as a:
        c = await Client.connect(a.ws_url)
        await c.until(lambda f: f.get("seq") == 1)
        snapshot = await raw.hgetall(f"fe:{{{c.session}}}:s")
        ack = await c.act({"type": "choose", "option": "sizes"})
        assert ack["seq"] > 1
        # The store lost the click, but its revision matches this process's cached one.
        await _rewind(raw, str(c.session), snapshot, rev=2)
        await c.close()
        d = await Client.connect(a.ws_url, session=c.session)
        await d.until(lambda f: f.get("seq") == 1)
        ack = await d.act({"type": "choose", "option": "shipping"})
        assert ack["type"] == "ack"
        log = await raw.lrange(f"fe:{{{c.session}}}:log", 0, -1)
        assert [json.loads(e)["seq"] for e in log] == list(range(1, ack["seq"] + 1))
        await d.close()


async def test_a_client_ahead_of_the_store_is_reset_and_gets_the_whole_transcript(
    redis_server: Any, raw: aioredis.Redis
) -> None:
    async with AppServer(ServerConfig(redis_url=redis_server.url)) as a:
        c = await Client.connect(a.ws_url)
        await c.until(lambda f: f.get("seq") == 1)
        snapshot = await raw.hgetall(f"fe:{{{c.session}}}:s")
        ack = await c.act({"type": "choose", "option": "sizes"})
        await c.close()
        await _rewind(raw, str(c.session), snapshot, rev=1)
        d = await Client.connect(a.ws_url, session=c.session, last_seq=ack["seq"])
        assert d.frames[0]["reset"] is True and d.frames[0]["resumed"] is True
        await d.until(lambda f: f.get("seq") == 1)
        again = await d.act({"type": "choose", "option": "sizes"})
        assert [e["seq"] for e in d.events] == list(range(1, again["seq"] + 1))
        await d.close()
        # A client that is not ahead gets no reset.
        e = await Client.connect(a.ws_url, session=c.session, last_seq=again["seq"])
        assert "reset" not in e.frames[0]
        await e.close()


# -- 2. failover hygiene ----------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    """A primary and its replica."""
    primary = start_servers(tmp_path / "p", 1)[0]
    replica = start_servers(tmp_path / "r", 1, "--replicaof", "127.0.0.1", str(primary.port))[0]
    try:
        yield primary, replica
    finally:
        stop_all([replica, primary])


async def _cmd(port: int, *args: Any) -> Any:
    # Bounded: a node mid-failover may accept and not answer (an unbounded read hung a run).
    r = aioredis.Redis(port=port, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)
    try:
        return await r.execute_command(*args)
    finally:
        await r.aclose()


async def _until_replicated(replica: RedisServer, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (await _cmd(replica.port, "INFO", "replication")).get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica did not sync"
        await asyncio.sleep(0.05)


async def test_a_primary_demoted_in_place_behind_a_proxy_is_left_for_the_new_one(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, replica = pair
    await _until_replicated(replica)
    proxy = await Proxy(primary.port).start()
    store = RedisStore(proxy.url, timeout=1.0)
    try:
        assert (await store.commit("s", 0, {}, [ev(1)], action_id=None, ttl=60, now=0)).rev == 1
        assert await store.readiness() is None
        deadline = time.monotonic() + 10
        while not await _cmd(replica.port, "EXISTS", "fe:{s}:s"):  # replicated (no WAIT here)
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        # The failover: the replica becomes primary, the old primary its replica, the proxy
        # (a DNS name, a load balancer) now leads to the new one.
        await _cmd(replica.port, "REPLICAOF", "NO", "ONE")
        await _cmd(primary.port, "REPLICAOF", "127.0.0.1", str(replica.port))
        proxy.target = replica.port
        with pytest.raises(StoreUnavailable, match="read_only"):
            await store.commit("s", 1, {}, [ev(2)], action_id="a", ttl=60, now=0)
        assert store.problem == "read_only"
        # The connections that got READONLY were dropped: the next command finds the new one.
        c = await store.commit("s", 1, {}, [ev(2)], action_id="a", ttl=60, now=0)
        assert (c.outcome, c.seq) == ("ok", 2)
        assert await store.readiness() is None
        demoted = RedisStore(primary.url)
        try:
            assert await demoted.readiness() == "read_only"  # PING alone would say fine
        finally:
            await demoted.close()
    finally:
        await store.close()
        await proxy.stop()


async def test_readyz_names_a_wrong_password_and_an_unreachable_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    [locked] = start_servers(tmp_path, 1, "--requirepass", "s3cret")
    try:
        monkeypatch.setenv("FLOWENGINE_REDIS_PASSWORD", "wrong")
        async with AppServer(ServerConfig(redis_url=locked.url)) as a:
            status, body = await a.get("/readyz")
            assert status == 503 and json.loads(body)["store_problem"] == "auth_failed"
        assert "store not usable at start (auth_failed" in caplog.text
        unreachable = f"redis://127.0.0.1:{free_port()}/0"
        async with AppServer(ServerConfig(redis_url=unreachable)) as a:
            status, body = await a.get("/readyz")
            assert status == 503 and json.loads(body)["store_problem"] == "unreachable"
        # The right password, from a file (kept off the command line) or the environment.
        secret = tmp_path / "password"
        secret.write_text("s3cret\n")
        config = ServerConfig(redis_url=locked.url, redis_password_file=str(secret))
        async with AppServer(config) as a:
            status, body = await a.get("/readyz")
            assert status == 200 and json.loads(body)["store_problem"] is None
        monkeypatch.setenv("FLOWENGINE_REDIS_PASSWORD", "s3cret")
        async with AppServer(ServerConfig(redis_url=locked.url)) as a:
            assert (await a.get("/readyz"))[0] == 200
    finally:
        stop_all([locked])


# -- 3. replication before the ack ------------------------------------------------------------


async def test_a_commit_no_replica_acknowledged_is_unavailable_and_its_resend_a_duplicate(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, replica = pair
    await _until_replicated(replica)
    config = ServerConfig(redis_url=primary.url, redis_wait_replicas=1, redis_wait_timeout=0.3)
    async with AppServer(config) as a:
        c = await Client.connect(a.ws_url)
        await c.until(lambda f: f.get("seq") == 1)
        assert (await c.act({"type": "choose", "option": "sizes"}))["type"] == "ack"
        assert replica.proc is not None
        os.kill(replica.proc.pid, signal.SIGSTOP)  # the replica stops taking writes
        try:
            frame = {"type": "choose", "id": "unreplicated", "option": "tops"}
            await c.send(frame)
            error = await c.next("error")
            assert error["code"] == "store_unavailable" and error["id"] == "unreplicated"
        finally:
            os.kill(replica.proc.pid, signal.SIGCONT)
        await _until_replicated(replica)
        await c.send(frame)  # the client resends: it landed on the primary, so a duplicate
        ack = await c.next("ack")
        assert ack["id"] == "unreplicated" and ack["duplicate"] is True
        tops = [
            e for e in await a.runtime.store.replay(str(c.session), 0) if e["from"] == "shopper"
        ]
        assert len(tops) == 2  # "sizes" and the one "tops"
        await c.close()


# -- 4. Failovers under load: Sentinel and Cluster -------------------------------------------


async def _click(c: Client, frame: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send an action until it is acknowledged, as the widget does: the same id each time."""
    deadline = time.monotonic() + timeout
    while True:
        await c.send(frame)
        while True:
            reply = await c.recv(max(0.01, deadline - time.monotonic()))
            if reply["type"] in ("ack", "error") and reply.get("id") == frame["id"]:
                break
        if reply["type"] == "ack":
            return reply
        assert reply["code"] == "store_unavailable", reply
        assert time.monotonic() < deadline, "never acknowledged"
        await asyncio.sleep(0.2)


class _Shopper:
    """A shopper clicking restart on one instance (each acknowledged restart adds exactly one
    greeting to the transcript), and a second, read-only socket on the same session on another
    instance (a second tab, through the load balancer)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.acked: list[str] = []
        self.sid = ""

    async def open(self, url: str, other_url: str) -> None:
        self.clicker = await Client.connect(url)
        await self.clicker.until(lambda f: f.get("seq") == 1)
        self.sid = str(self.clicker.session)
        self.watcher = await Client.connect(other_url, session=self.sid)
        self._reading = asyncio.create_task(_read_all(self.watcher))

    async def click_until(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set() or n < 3:
            n += 1
            await _click(self.clicker, {"type": "restart", "id": f"{self.name}-{n}"})
            self.acked.append(f"{self.name}-{n}")
            await asyncio.sleep(0.05)

    async def check(self, store: RedisStore) -> None:
        """Every acknowledged click in the transcript once, seqs 1..n, both sockets saw the
        same events, and the session takes a click after the failover (not stuck)."""
        after = await _click(self.clicker, {"type": "restart", "id": f"{self.name}-after"})
        self.acked.append(f"{self.name}-after")
        events = await store.replay(self.sid, 0)
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(1, len(seqs) + 1)) and seqs[-1] == after["seq"]
        greetings = [e for e in events if e.get("text") == events[0]["text"]]
        assert len(greetings) == 1 + len(self.acked), (self.sid, len(greetings), len(self.acked))
        await eventually(lambda: self.watcher.events and self.watcher.events[-1]["seq"] == seqs[-1])
        for c in (self.clicker, self.watcher):
            assert [(e["seq"], e["text"]) for e in c.events] == [
                (e["seq"], e["text"]) for e in events
            ], self.sid
        assert self.clicker.events == self.watcher.events
        self._reading.cancel()
        await self.clicker.close()
        await self.watcher.close()


async def _read_all(c: Client) -> None:
    with contextlib.suppress(Exception):
        while True:
            await c.recv(timeout=120)


async def _failover_under_load(
    url: str, failover: Callable[[list[str]], Awaitable[None]], shoppers: int = 10
) -> None:
    """Two instances on `url`, `shoppers` shoppers clicking on one with a second socket on the
    other; `failover(sessions)` mid-run; then the four properties, session by session."""
    config = ServerConfig(
        redis_url=url,
        redis_wait_timeout=0.5,
        socket_rate=100.0,
        ip_rate=1000.0,
        ip_burst=1000,
        new_sessions_per_minute=1000.0,
    )
    a, b = AppServer(config), AppServer(config)
    async with asyncio.timeout(180), running(a, b):  # a hang fails, with where it waited
        assert a.runtime.store.wait_replicas == 1  # WAIT is on for Sentinel and Cluster URLs
        assert (await a.get("/readyz"))[0] == 200 and (await b.get("/readyz"))[0] == 200
        crowd = [_Shopper(f"c{i}") for i in range(shoppers)]
        for i, s in enumerate(crowd):
            await s.open(*((a.ws_url, b.ws_url) if i % 2 else (b.ws_url, a.ws_url)))
        stop = asyncio.Event()
        clicking = [asyncio.create_task(s.click_until(stop)) for s in crowd]
        await asyncio.sleep(0.5)
        await failover([s.sid for s in crowd])
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*clicking)
        assert all(len(s.acked) > 3 for s in crowd)
        store = a.runtime.store
        assert isinstance(store, RedisStore)
        for s in crowd:
            await s.check(store)


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, str]]:
    """A primary, its replica and three sentinels (a primary is down after 1 s); the URL."""
    [primary] = start_servers(tmp_path / "p", 1)
    [replica] = start_servers(tmp_path / "r", 1, "--replicaof", "127.0.0.1", str(primary.port))
    sentinels = []
    try:
        for i in range(3):
            (tmp_path / f"s{i}").mkdir()
            s = SentinelServer(tmp_path / f"s{i}", primary.port)
            s.start()
            sentinels.append(s)
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
        yield primary, replica, f"redis+sentinel://{hosts}/mymaster/0"
    finally:
        stop_all([*sentinels, replica, primary])


async def _until_primary(server: RedisServer, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while (await _cmd(server.port, "ROLE"))[0] != "master":
        assert time.monotonic() < deadline, "no failover"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize(
    "how", ["SENTINEL FAILOVER", pytest.param("kill -9", marks=pytest.mark.slow)]
)
async def test_a_sentinel_failover_under_load_loses_no_acknowledged_click(
    sentinel_group: tuple[RedisServer, RedisServer, str], how: str
) -> None:
    primary, replica, url = sentinel_group
    await _until_replicated(replica)
    sentinel = url.removeprefix("redis+sentinel://").split(",")[0].split(":")[1]

    async def failover(sessions: list[str]) -> None:
        if how == "kill -9":
            assert primary.proc is not None
            primary.proc.kill()
            await asyncio.to_thread(primary.proc.wait, 10)
            primary.proc = None
        else:
            await _cmd(int(sentinel), "SENTINEL", "FAILOVER", "mymaster")
        await _until_primary(replica)
        if how == "kill -9":
            # Back (as a process supervisor would bring it): the sentinels make it the new
            # primary's replica, and commits, which WAIT for one, are acknowledged again.
            await asyncio.to_thread(primary.start)
        # The sentinels turn a primary that should be a replica into one ~8 s after they see it.
        await _until_replicated(primary, timeout=30)

    await _failover_under_load(url, failover)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """3 primaries and 3 replicas; a node silent for 1 s is failed (its replica takes over)."""
    group = Cluster(tmp_path, primaries=3, replicas=1, node_timeout=1000)
    try:
        yield group.start()
    finally:
        group.stop()


# A failover can lose a publish with no error anywhere (sent to a primary as it went): the
# store reads the watched sessions' seqs every 2 s, so a second socket that missed one catches
# up (it stalled until the next click, about one run in six, before).
@pytest.mark.parametrize(
    "how", ["CLUSTER FAILOVER", pytest.param("kill -9", marks=pytest.mark.slow)]
)
async def test_a_cluster_failover_under_load_loses_no_acknowledged_click(
    cluster: Cluster, how: str
) -> None:
    async def failover(sessions: list[str]) -> None:
        owners = await asyncio.gather(
            *(asyncio.to_thread(cluster.owner, f"fe:{{{sid}}}:s") for sid in sessions)
        )
        # The primary holding the most sessions' slots fails.
        primary = max(owners, key=lambda n: sum(o is n for o in owners))
        replica = await asyncio.to_thread(cluster.replica_of, primary)
        if how == "kill -9":
            await asyncio.to_thread(cluster.kill, primary)
        else:
            await _cmd(replica.port, "CLUSTER", "FAILOVER")
        await _until_primary(replica)
        if how == "kill -9":
            await asyncio.to_thread(primary.start)  # back, as the new primary's replica
        await asyncio.to_thread(cluster.wait_until_ok)

    await _failover_under_load(cluster.url, failover)


class _Heard:
    """A store listener that keeps the seqs it is told (not the catch-up signals, seq -1)."""

    def __init__(self) -> None:
        self.seqs: dict[str, list[int]] = {}

    def committed(self, sid: str, seq: int, events: tuple[dict[str, Any], ...] | None) -> None:
        if seq > 0:
            self.seqs.setdefault(sid, []).append(seq)

    def signalled(self, sid: str, payload: dict[str, Any]) -> None:
        pass


def _bus(cluster: Cluster) -> dict[int, tuple[int, int]]:
    """Per live node: (publish, publishshard) messages it received over the cluster bus."""
    counts = {}
    for node in cluster.live():
        info = dict(
            line.split(":", 1)
            for line in command(node.port, "CLUSTER", "INFO").split()
            if ":" in line
        )
        counts[node.port] = tuple(
            int(info.get(f"cluster_stats_messages_{kind}_received", 0))
            for kind in ("publish", "publishshard")
        )
    return counts  # type: ignore[return-value]


async def _commit_until_stored(store: RedisStore, sid: str, seq: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            c = await store.commit(
                sid, seq - 1, {"v": seq}, [ev(seq)], action_id=None, ttl=60, now=0
            )
            assert c.outcome in ("ok", "conflict"), c  # conflict: a retry after a lost reply
            return
        except StoreUnavailable as exc:
            assert time.monotonic() < deadline, f"the store did not come back: {exc}"
            await asyncio.sleep(0.2)


@pytest.mark.parametrize(
    "how", ["CLUSTER FAILOVER", pytest.param("kill -9", marks=pytest.mark.slow)]
)
async def test_cluster_live_updates_stay_in_the_sessions_shard_and_follow_a_failover(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Sharded pub/sub: a session's updates travel only to its own shard (a broadcasting
    store, compared, reaches every node), and after its primary fails over they are heard
    again, by pub/sub alone (the 2 s reconciler, which would hide a dead subscription, off)."""
    monkeypatch.setattr("flowengine.store.redis.RECONCILE_EVERY", 3600.0)
    writer = RedisStore(cluster.url, wait_timeout=0.5)
    broadcaster = RedisStore(cluster.url, wait_timeout=0.5, sharded_pubsub=False)
    reader, heard = RedisStore(cluster.url), _Heard()
    reader.set_listener(heard)
    sids = [f"shard-{i}" for i in range(12)]  # slots on every primary
    try:
        for sid in sids:
            await reader.watch(sid)
        one = sids[0]
        owner = await asyncio.to_thread(cluster.owner, f"fe:{{{one}}}:s")
        replica = await asyncio.to_thread(cluster.replica_of, owner)

        before = await asyncio.to_thread(_bus, cluster)
        await _commit_until_stored(writer, one, 1)
        await eventually(lambda: heard.seqs.get(one) == [1])
        after = await asyncio.to_thread(_bus, cluster)
        for port, (plain, shard) in after.items():
            assert plain == before[port][0], "a sharded publish was broadcast"
            if port == replica.port:
                assert shard > before[port][1]  # the shard's replica carries it
            elif port != owner.port:
                assert shard == before[port][1], f"node {port} of another shard received it"
        # The contrast: a plain PUBLISH (sent to any node) reaches every other node.
        await broadcaster._redis.publish(broadcaster._channel(one), "0:elsewhere")
        await eventually(
            lambda: (
                sum(c[0] > before[p][0] for p, c in _bus(cluster).items())
                == len(cluster.live()) - 1
            )
        )

        # The primary holding the most watched sessions fails over.
        owners = [await asyncio.to_thread(cluster.owner, f"fe:{{{s}}}:s") for s in sids]
        primary = max(owners, key=lambda n: sum(o is n for o in owners))
        moved = [s for s, o in zip(sids, owners, strict=True) if o is primary]
        for sid in moved:
            if sid != one:
                await _commit_until_stored(writer, sid, 1)
        await eventually(lambda: all(heard.seqs.get(s) for s in moved))
        new_primary = await asyncio.to_thread(cluster.replica_of, primary)
        if how == "kill -9":
            await asyncio.to_thread(cluster.kill, primary)
        else:
            await _cmd(new_primary.port, "CLUSTER", "FAILOVER")
        await _until_primary(new_primary)
        if how == "kill -9":
            await asyncio.to_thread(primary.start)
        await asyncio.to_thread(cluster.wait_until_ok)

        # Commits go on, each a new seq, until the reader hears them again (a publish sent
        # before the reader has subscribed on the new primary is lost: that is the reconciler's
        # job); then every later one is heard.
        for sid in moved:
            seq = max(heard.seqs[sid])
            deadline = time.monotonic() + 20
            while True:
                seq += 1
                await _commit_until_stored(writer, sid, seq)
                with contextlib.suppress(AssertionError):
                    await eventually(lambda s=sid, n=seq: n in heard.seqs[s], timeout=0.5)
                    break
                assert time.monotonic() < deadline, f"{sid}: updates not heard after failover"
            await _commit_until_stored(writer, sid, seq + 1)
            await eventually(lambda s=sid, n=seq + 1: n in heard.seqs[s], timeout=2)
    finally:
        for store in (writer, broadcaster, reader):
            await store.close()


# -- 5. Cluster -------------------------------------------------------------------------------


async def test_a_conversation_through_two_boxes_on_a_three_node_cluster(tmp_path: Path) -> None:
    nodes = start_servers(tmp_path, 3, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000")
    try:
        create = await asyncio.create_subprocess_exec(
            "redis-cli",
            "--cluster",
            "create",
            *[f"127.0.0.1:{n.port}" for n in nodes],
            "--cluster-yes",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert await asyncio.wait_for(create.wait(), 60) == 0
        deadline = time.monotonic() + 20
        while "cluster_state:ok" not in await _cmd(nodes[0].port, "CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "the cluster did not form"
            await asyncio.sleep(0.1)
        url = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in nodes[:2]) + "/0"
        config = ServerConfig(redis_url=url, redis_wait_replicas=0)  # no replicas here
        async with AppServer(config) as a, AppServer(config) as b:
            assert (await a.get("/readyz"))[0] == 200
            sessions = []
            for _ in range(4):  # sessions in several slots, on several nodes
                on_a = await Client.connect(a.ws_url)
                on_b = await Client.connect(b.ws_url, session=on_a.session)
                await on_a.until(lambda f: f.get("seq") == 1)
                await on_b.until(lambda f: f.get("seq") == 1)
                ack = await on_a.act({"type": "choose", "option": "sizes"})
                assert ack["type"] == "ack"
                await on_b.until(lambda f, s=ack["seq"]: f.get("seq") == s)  # fan-out
                ack = await on_b.act({"type": "choose", "option": "tops"})
                await on_a.until(lambda f, s=ack["seq"]: f.get("seq") == s)
                for c in (on_a, on_b):
                    assert [e["seq"] for e in c.events] == list(range(1, ack["seq"] + 1))
                    await c.close()
                sessions.append(on_a.session)
            store = a.runtime.store
            await store.push_webhook({"n": 1})  # the outbox's keys are in one slot (LMOVE)
            item = await store.take_webhook()
            assert item is not None and item["n"] == 1
            await store.done_webhook(item)
            assert await store.failures(["user:x", "addr:y"]) == [0, 0]
            # An agent added with the CLI on this cluster's URL logs in on either box.
            await asyncio.to_thread(add_agent, "carol", redis_url=url)
            agent = await Agent.login(b, "carol", "correct-horse-battery")
            await agent.close()
    finally:
        stop_all(nodes)


async def test_agents_added_on_a_sentinel_url_log_in_there(
    sentinel_group: tuple[RedisServer, RedisServer, str],
) -> None:
    _, _, url = sentinel_group
    await asyncio.to_thread(add_agent, "dora", redis_url=url)
    async with AppServer(ServerConfig(redis_url=url, handoff_config=None)) as box:
        agent = await Agent.login(box, "dora", "correct-horse-battery")
        await agent.close()


async def test_a_transition_finds_a_record_another_instance_moved(redis_server: Any) -> None:
    """Each instance names a handoff's queue and load keys from the record as it last saw it
    (a claim is one round trip): moved since by another instance, the record is sent back and
    the keys named again, so nothing is left in the old queue or load."""
    redis_server.flush()
    one, two = RedisStore(redis_server.url), RedisStore(redis_server.url)
    try:
        record = {"session": "s", "team": "orders", "priority": "normal", "created_at": 1.0}
        assert await one.put_handoff("s", record, score=1, ttl=60)  # `one` saw it in orders
        await two.get_handoff("s")
        moved = await two.transition(
            "s", ("queued",), {"status": "assigned", "agent": "ann"}, None, 60
        )
        assert moved is not None
        moved = await two.transition(
            "s", ("assigned",), {"status": "queued", "team": "returns", "agent": None}, 5, 60
        )
        assert moved is not None and moved["team"] == "returns"
        claimed = await one.transition(  # still thinks: orders, nobody
            "s", ("queued",), {"status": "assigned", "agent": "bob"}, None, 60
        )
        assert claimed is not None and claimed["agent"] == "bob"
        assert await one.queue("returns") == [] and await one.queue("orders") == []
        assert [r["session"] for r in await one.agent_chats("bob")] == ["s"]
        assert await one.agent_chats("ann") == []
    finally:
        await one.close()
        await two.close()
