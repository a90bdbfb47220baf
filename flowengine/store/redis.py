"""The Redis store: sessions, transcripts and versions shared by every instance.

Keys (one session's keys share the hash tag `{sid}`, so Redis Cluster keeps them in one slot):

    fe:{sid}:s      hash   state (JSON), rev, seq, at          TTL: the session's idle time
    fe:{sid}:log    list   transcript events (JSON), index = seq - 1    same TTL
    fe:{sid}:act    set    client action ids already applied             same TTL
    fe:v:<version>  string a flow version's sources (JSON)       TTL: refreshed while in use
    fe:events       stream analytics events                       capped (MAXLEN ~)
    fe:n:<sid>      pub/sub channel: "seq N was committed"        (not a key)

A click is one round trip: the commit script compares the revision, writes the state, appends
the events, records the action id, refreshes the TTLs and publishes, atomically. Connections
come from one bounded pool (they do not grow with sockets) plus one pub/sub connection per
process. Pub/sub is only a hint: whoever gets it re-reads the log from its last seq, so a lost
notification delays nothing that a reconnect would not repair.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .base import Commit, Listener, SessionRecord, StoreUnavailable

log = logging.getLogger("flowengine.store")

EVENTS_KEY = "fe:events"
EVENTS_MAXLEN = 100_000

_COMMIT = """
local rev = redis.call('HGET', KEYS[1], 'rev')
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local expected = ARGV[1]
local action = ARGV[5]
if action ~= '' and redis.call('SISMEMBER', KEYS[3], action) == 1 then
  return {'duplicate', tonumber(rev or '0'), seq}
end
if expected == '0' then
  if rev then return {'conflict', tonumber(rev), seq} end
  rev = 0
elseif not rev then
  return {'missing', 0, 0}
elseif rev ~= expected then
  return {'conflict', tonumber(rev), seq}
end
local newrev = tonumber(rev) + 1
local n = #ARGV - 7
local newseq = seq + n
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'rev', newrev, 'seq', newseq, 'at', ARGV[6])
for i = 8, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
if action ~= '' then redis.call('SADD', KEYS[3], action) end
local ttl = tonumber(ARGV[4])
redis.call('PEXPIRE', KEYS[1], ttl)
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ttl) end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ttl) end
if n > 0 then redis.call('PUBLISH', ARGV[7], newseq) end
return {'ok', newrev, newseq}
"""


def _keys(sid: str) -> tuple[str, str, str]:
    return f"fe:{{{sid}}}:s", f"fe:{{{sid}}}:log", f"fe:{{{sid}}}:act"


def _channel(sid: str) -> str:
    return f"fe:n:{sid}"


class RedisStore:
    kind = "redis"

    def __init__(self, url: str, *, max_connections: int = 32, timeout: float = 2.0) -> None:
        self.url = url
        self._pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=15,
            decode_responses=True,
        )
        self._redis = aioredis.Redis(connection_pool=self._pool)
        self._commit = self._redis.register_script(_COMMIT)
        self._watched: dict[str, int] = {}
        self._listener: Listener | None = None
        self._pubsub: Any = None
        self._pump: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    # -- sessions ------------------------------------------------------------------------
    async def load(self, sid: str, action_id: str | None = None) -> SessionRecord | None:
        state_key, _, actions_key = _keys(sid)
        try:
            if action_id is None:
                data, applied = await self._redis.hgetall(state_key), False
            else:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.hgetall(state_key)
                    pipe.sismember(actions_key, action_id)
                    data, applied = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        if not data or "state" not in data:
            return None
        return SessionRecord(
            sid,
            json.loads(data["state"]),
            int(data["rev"]),
            int(data["seq"]),
            float(data.get("at", 0)),
            bool(applied),
        )

    async def commit(
        self,
        sid: str,
        rev: int,
        state: dict[str, Any],
        events: list[dict[str, Any]],
        *,
        action_id: str | None,
        ttl: float,
        now: float,
    ) -> Commit:
        args: list[Any] = [
            rev,
            json.dumps(state, separators=(",", ":")),
            0,
            int(ttl * 1000),
            action_id or "",
            now,
            _channel(sid),
        ]
        args += [json.dumps(e, separators=(",", ":"), ensure_ascii=False) for e in events]
        try:
            outcome, new_rev, new_seq = await self._commit(keys=list(_keys(sid)), args=args)
        except RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return Commit(outcome, int(new_rev), int(new_seq))

    async def replay(self, sid: str, after_seq: int, limit: int = 1000) -> list[dict[str, Any]]:
        start = max(after_seq, 0)
        try:
            raw = await self._redis.lrange(_keys(sid)[1], start, start + limit - 1)
        except RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return [json.loads(r) for r in raw]

    # -- flow versions -------------------------------------------------------------------
    async def put_version(self, version: str, bundle: dict[str, Any], ttl: float) -> None:
        try:
            await self._redis.set(f"fe:v:{version}", json.dumps(bundle), px=int(ttl * 1000))
        except RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def get_version(self, version: str) -> dict[str, Any] | None:
        try:
            raw = await self._redis.get(f"fe:v:{version}")
        except RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return json.loads(raw) if raw else None

    async def touch_version(self, version: str, ttl: float) -> None:
        try:
            await self._redis.pexpire(f"fe:v:{version}", int(ttl * 1000))
        except RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc

    # -- analytics -----------------------------------------------------------------------
    async def append_events(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for e in events:
                    pipe.xadd(
                        EVENTS_KEY,
                        {"event": json.dumps(e, ensure_ascii=False)},
                        maxlen=EVENTS_MAXLEN,
                        approximate=True,
                    )
                await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def read_events(self, count: int = 100) -> list[dict[str, Any]]:
        try:
            rows = await self._redis.xrevrange(EVENTS_KEY, count=count)
        except RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return [json.loads(fields["event"]) for _, fields in reversed(rows)]

    # -- fan-out -------------------------------------------------------------------------
    def set_listener(self, listener: Listener) -> None:
        self._listener = listener

    async def watch(self, sid: str) -> None:
        self._watched[sid] = self._watched.get(sid, 0) + 1
        if self._watched[sid] == 1:
            await self._subscribe(sid)

    async def unwatch(self, sid: str) -> None:
        left = self._watched.get(sid, 0) - 1
        if left > 0:
            self._watched[sid] = left
            return
        self._watched.pop(sid, None)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, RuntimeError):
                await self._pubsub.unsubscribe(_channel(sid))

    async def _subscribe(self, sid: str) -> None:
        if self._pubsub is None:
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await self._pubsub.subscribe(_channel(sid))
        except RedisError:
            log.warning("pub/sub unavailable; session updates resume when Redis is back")
        self._subscribed.set()
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run_pump())

    async def _run_pump(self) -> None:
        """Deliver notifications; on a broken connection, resubscribe and tell every watcher
        to catch up from the log (notifications sent meanwhile are lost)."""
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
                if message and message.get("type") == "message":
                    await self._notify(
                        message["channel"].removeprefix("fe:n:"), int(message["data"])
                    )
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, RuntimeError) as exc:
                log.warning("pub/sub connection lost (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(0.5)
                await self._resubscribe()

    async def _resubscribe(self) -> None:
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        channels = [_channel(s) for s in self._watched]
        if not channels:
            channels = ["fe:n:-"]  # keep the connection subscribed to something
        try:
            await self._pubsub.subscribe(*channels)
        except RedisError:
            return
        for sid in list(self._watched):
            await self._notify(sid, -1)

    async def _notify(self, sid: str, seq: int) -> None:
        if self._listener is None or sid not in self._watched:
            return
        outcome = self._listener(sid, seq)
        if inspect.isawaitable(outcome):
            await outcome

    # -- lifecycle -----------------------------------------------------------------------
    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except RedisError:
            return False

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        await self._redis.aclose()
        await self._pool.aclose()
