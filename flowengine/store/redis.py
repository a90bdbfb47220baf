"""The Redis store: sessions, transcripts and versions shared by every instance.

Keys (one session's keys share the hash tag `{sid}`, so Redis Cluster keeps them in one slot):

    fe:{sid}:s      hash   state (JSON), rev, seq, at          TTL: the session's idle time
    fe:{sid}:log    list   transcript events (JSON), index = seq - 1    same TTL
    fe:{sid}:act    set    client action ids already applied             same TTL
    fe:{sid}:w      set    the instances following the session (a socket or console there)
                    same TTL; a commit publishes only if one other than its own is in it
    fe:v:<version>  string a flow version's sources (JSON)       TTL: refreshed while in use
    fe:{insights}:events  stream analytics events, up to 50 an entry   capped (MAXLEN ~
                    10,000 entries); the consumer group `insights` folds it into the
                    counters beside it
    fe:{insights}:d:<day>  hash  the insight counters of a day (field -> value)
                    TTL: the retention (`--insights-retention-days`) after the day
    fe:n:<sid>      pub/sub channel: "N:<instance>" (seq N was committed by that process),
                    or a JSON signal (typing, a note, a place in line)   (not a key);
                    on Cluster `fe:n:{<sid>}`, sharded (SPUBLISH/SSUBSCRIBE, the session's
                    slot); with WAIT, published after the replicas have the commit
    fe:n:@agent:<user>  pub/sub channel: {"logout": token hash | "*"} ends consoles
    fe:{handoff}:*  handoff records, team queues, agents' loads, presence
    fe:{tickets}:*  the ticket inbox (all, changes, packets, order)   no TTL
    fe:{outbox}     list   webhook deliveries; `:inflight`, `:log` beside it (one slot)
    fe:once:<key>   an agent action id already applied            TTL 24 h

A click is one round trip: the commit script compares the revision (and checks that the
events' seqs follow the stored seq: a cache that is stale after a failover lost writes must not
store old seqs again; refused as a conflict, so the caller re-reads), writes the state, appends
the events, records the action id, refreshes the TTLs and publishes, atomically. Connections
come from one bounded pool (they do not grow with sockets) plus one pub/sub connection per
process. Pub/sub is only a hint: whoever gets it re-reads the log from its last seq, so a lost
notification delays nothing that a reconnect would not repair.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)

from .. import jsontext
from ..cancellation import raise_if_cancelled
from . import redis_topology as topology
from .base import (
    ChatView,
    Commit,
    Fold,
    Listener,
    SessionRecord,
    StoreUnavailable,
    day_expires,
)
from .group_commit import GroupCommit

log = logging.getLogger("flowengine.store")

# The analytics stream and the insight counters share the hash tag {insights}: the script that
# acknowledges an entry and adds its increments touches both (one slot on Cluster).
EVENTS_KEY = "fe:{insights}:events"
INSIGHTS_DAY = "fe:{insights}:d:"
INSIGHTS_GROUP = "insights"
OUTBOX = "fe:{outbox}"  # the webhook outbox, `:inflight` and `:log`: one slot (LMOVE)
EVENTS_PER_ENTRY = 50
EVENTS_MAXLEN = 10_000  # entries: at most 500,000 events
CONSUMER_GONE = 3600.0  # s: a consumer holding nothing, not heard of this long, is forgotten
CONSUME_ENTRIES = 20  # entries folded per script call: at most 1,000 events

# Publish "<seq>:<instance>" with `tell` ("PUBLISH <channel>" or "SPUBLISH <channel>"), only if
# an instance other than `me` is in the session's watchers set: the committing one hears of its
# own commits directly. Shared by the commit script and the mark (after WAIT).
_TELL_OTHERS = """
local function tell_others(watchers, me, tell, seq)
  local others = redis.call('SCARD', watchers)
  if others > 1 or (others == 1 and redis.call('SISMEMBER', watchers, me) == 0) then
    local command, channel = string.match(tell, '^(%S+) (.+)$')
    redis.call(command, channel, seq .. ':' .. me)
  end
end
"""

_COMMIT = (
    _TELL_OTHERS
    + """
local rev = redis.call('HGET', KEYS[1], 'rev')
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local expected = ARGV[1]
local action = ARGV[5]
if action ~= '' and redis.call('SISMEMBER', KEYS[3], action) == 1 then
  -- a write, so that the WAIT after it covers the first commit of this action too
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
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
local n = #ARGV - 8
if n > 0 and tonumber(ARGV[8]) ~= seq + 1 then
  return {'conflict', tonumber(rev), seq}
end
local newrev = tonumber(rev) + 1
local newseq = seq + n
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'rev', newrev, 'seq', newseq, 'at', ARGV[6])
for i = 9, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
if action ~= '' then redis.call('SADD', KEYS[3], action) end
local ttl = tonumber(ARGV[4])
redis.call('PEXPIRE', KEYS[1], ttl)
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ttl) end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ttl) end
if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('PEXPIRE', KEYS[4], ttl) end
-- ARGV[7]: "PUBLISH <channel>", "SPUBLISH <channel>" (Cluster), or '' (told after WAIT)
if n > 0 and ARGV[7] ~= '' then tell_others(KEYS[4], ARGV[3], ARGV[7], newseq) end
return {'ok', newrev, newseq}
"""
)


# Entries consumed exactly once: each entry's increments are added only if its XACK
# acknowledged it now (a replayed entry that another consumer has applied meanwhile is not
# counted twice). KEYS[1]: the stream; KEYS[2..d+1]: the day hashes. ARGV[1]: the group;
# ARGV[2]: d; ARGV[3..d+2]: each day hash's expiry (Unix s); ARGV[d+3]: m, then the m counter
# fields; then per entry its id and its increments as "k f n k f n ..." (an index into KEYS, an
# index into the fields, the amount): a few arguments per entry, not three per counter.
_CONSUME = """
local d = tonumber(ARGV[2])
local m = tonumber(ARGV[d + 3])
local fields = d + 3
local applied = 0
local sums = {}  -- "k f" -> the sum of the acknowledged entries' amounts: one HINCRBY each
for i = d + m + 4, #ARGV, 2 do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    applied = applied + 1
    for kf, n in string.gmatch(ARGV[i + 1], '(%d+ %d+) (%d+)') do
      sums[kf] = (sums[kf] or 0) + tonumber(n)
    end
  end
end
local touched = {}
for kf, n in pairs(sums) do
  local k, f = string.match(kf, '(%d+) (%d+)')
  k = tonumber(k)
  redis.call('HINCRBY', KEYS[k], ARGV[fields + tonumber(f)], n)
  touched[k] = true
end
for k in pairs(touched) do redis.call('EXPIREAT', KEYS[k], ARGV[k + 1]) end
return applied
"""

# The entries to fold next, read in one script that returns one string ("id\nevents\n..."):
# first those another consumer read and left unacknowledged for ARGV[3] ms (it died), else new
# ones. Entries trimmed off the stream while pending come with no events. (One string, not
# seven reply elements per entry: parsing the reply was most of the consumer's cost.)
# KEYS[1]: the stream. ARGV: the group, this consumer, the idle ms, how many.
_READ = """
local out = {}
local function add(entries)
  for _, e in ipairs(entries) do
    local events = ''
    if e[2] then
      for i = 1, #e[2], 2 do if e[2][i] == 'events' then events = e[2][i + 1] end end
    end
    out[#out + 1] = e[1]
    out[#out + 1] = events
  end
end
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0',
  'COUNT', ARGV[4])
add(claimed[2])
for _, id in ipairs(claimed[3] or {}) do
  out[#out + 1] = id
  out[#out + 1] = ''
end
if #out == 0 then
  local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[4],
    'STREAMS', KEYS[1], '>')
  if read then add(read[1][2]) end
end
return table.concat(out, '\\n')
"""

# Consumers of the group that hold nothing and have not been heard of for ARGV[2] ms (their
# process stopped) are forgotten, atomically: one that still holds entries is never dropped
# (they would then be counted by nobody). KEYS[1]: the stream; ARGV[1]: the group.
_FORGET_CONSUMERS = """
local gone = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if tonumber(info['pending']) == 0 and tonumber(info['idle']) > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    gone = gone + 1
  end
end
return gone
"""

# Replies that mean the slot map this process holds is out of date (Cluster).
_MOVED = (MovedError, AskError, ClusterDownError, TryAgainError, ReadOnlyError)

RECONCILE_EVERY = 2.0  # seconds (replicated topologies only)

# The highest seq of a session known to be on a replica (written after WAIT; never lowered).
# Then, as the commit script does without WAIT, tell the other instances following it.
# KEYS: the state hash, the watchers set; ARGV: the seq, this instance, "[S]PUBLISH <channel>".
_MARK = (
    _TELL_OTHERS
    + """
local seq = tonumber(ARGV[1])
local known = tonumber(redis.call('HGET', KEYS[1], 'aseq') or '0')
if redis.call('EXISTS', KEYS[1]) == 1 and known < seq then
  redis.call('HSET', KEYS[1], 'aseq', seq)
end
tell_others(KEYS[2], ARGV[2], ARGV[3], seq)
return 1
"""
)

# An instance follows a session: in its watchers set, kept as long as the session (at least
# ARGV[2] ms: a session not stored yet). KEYS: the watchers set, the state hash.
_WATCH = """
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[2])
if ttl < tonumber(ARGV[2]) then ttl = tonumber(ARGV[2]) end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""
WATCH_FLOOR_MS = 3_600_000  # a watchers set outlives a session that is not stored yet

# A key's TTL set again as it is: a write (replicated) that changes nothing.
_TOUCH = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
"""


# One handoff operation, atomically: check the status, apply the changes, keep the team queue
# and the agent's load in step. All handoff keys share the hash tag {handoff} (one slot).
_TRANSITION = """
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local rec = cjson.decode(raw)
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do if rec.status == s then allowed = true end end
if not allowed then return false end
if ARGV[9] ~= '' and rec.agent ~= ARGV[9] then return false end
if ARGV[8] ~= '' then
  local member = false
  for t in string.gmatch(ARGV[8], '[^,]+') do if rec.team == t then member = true end end
  if not member then return false end
end
local sid = ARGV[7]
local function name(v) if v and v ~= cjson.null then return tostring(v) end return '' end
-- KEYS[2..5]: the queue and the load the record is in now, and will be in (declared, for
-- Cluster): the caller named them from the record as it last saw it; if that is not how the
-- record is now, it gets the record and asks again.
if name(rec.team) ~= ARGV[10] or name(rec.agent) ~= ARGV[11] then return 'again:' .. raw end
if rec.team then redis.call('ZREM', KEYS[2], sid) end
if name(rec.agent) ~= '' then redis.call('SREM', KEYS[3], sid) end
local changes = cjson.decode(ARGV[2])
for k, v in pairs(changes) do rec[k] = v end
if rec.status == 'queued' then
  local score = ARGV[5]
  if score == '' then score = rec.score or 0 end
  rec.score = tonumber(score)
  redis.call('ZADD', KEYS[4], score, sid)
elseif rec.status == 'assigned' then
  redis.call('SADD', KEYS[5], sid)
end
local out = cjson.encode(rec)
redis.call('SET', KEYS[1], out, 'PX', ARGV[6])
return out
"""

_PUT = """
local raw = redis.call('GET', KEYS[1])
if raw then
  local rec = cjson.decode(raw)
  if rec.status ~= 'closed' then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
return 1
"""

# A ticket's changes (status, assignee: flat values) merged atomically; nothing if no ticket.
_UPDATE_TICKET = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
local t = raw and cjson.decode(raw) or {}
for k, v in pairs(cjson.decode(ARGV[2])) do t[k] = v end
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(t))
return 1
"""

# One failure taken back, never below zero, the key's expiry kept (a missing key stays missing).
_FORGIVE = """
if (tonumber(redis.call('GET', KEYS[1]) or '0')) > 0 then redis.call('DECR', KEYS[1]) end
"""

H = "fe:{handoff}:"
# The inbox: `all` hash key -> ticket as created, without its packet (JSON), `packets` hash
# key -> the packet (JSON; read only when one ticket is opened), `changes` hash key -> its
# changes (JSON), `order` zset key -> created_at. Kept until deleted (no TTL): tickets are the
# shop's records.
T = "fe:{tickets}:"


def _parsed(entries: list[tuple[str, str]]) -> list[list[Any]]:
    """Each entry's events (one JSON parse for all: several times faster than one each); an
    entry that is not a JSON array of events gives [None], which the fold counts as nothing."""
    try:
        parsed = jsontext.loads("[" + ",".join(raw or "[]" for _, raw in entries) + "]")
        if len(parsed) == len(entries) and all(isinstance(p, list) for p in parsed):
            return list(parsed)
    except ValueError:
        pass
    out: list[list[Any]] = []
    for _, raw in entries:
        try:
            events = jsontext.loads(raw) if raw else []
        except ValueError:
            events = None
        out.append(events if isinstance(events, list) else [events])
    return out


def _keys(sid: str) -> tuple[str, str, str, str]:
    """A session's state, log, applied action ids and watchers (one hash tag: one slot)."""
    return f"fe:{{{sid}}}:s", f"fe:{{{sid}}}:log", f"fe:{{{sid}}}:act", f"fe:{{{sid}}}:w"


def _first_seq(events: list[dict[str, Any]]) -> int:
    """The seq the events start at (0: none), after checking they are consecutive: the commit
    script refuses (as a conflict) events that do not follow the stored seq."""
    if not events:
        return 0
    first = int(events[0]["seq"])
    if [int(e["seq"]) for e in events] != list(range(first, first + len(events))):
        raise ValueError("a commit's events must carry consecutive seqs")
    return first


def _names(rec: dict[str, Any]) -> tuple[str, str]:
    """A handoff record's team and agent, as its keys are named."""
    return _name(rec.get("team")), _name(rec.get("agent"))


def _name(value: Any) -> str:
    """A team's or an agent's name in a key ('' for none), as the transition script writes it."""
    return "" if value is None else str(value)


def _stream_id(value: str, plus: int = 0) -> tuple[int, int]:
    """A stream entry id "ms-n" as numbers (`plus` added to n: the id just after)."""
    ms, _, n = str(value).partition("-")
    return int(ms), int(n or 0) + plus


def channel(sid: str, cluster: bool) -> str:
    """The notification channel of a session (or of an agent's consoles, `@agent:<user>`). On
    Cluster a sharded channel (SPUBLISH, SSUBSCRIBE) named with the session's hash tag: it is
    carried by the shard holding the session's slot only, not broadcast to every node."""
    return f"fe:n:{{{sid}}}" if cluster else f"fe:n:{sid}"


def _sid_of(name: str) -> str:
    sid = name.removeprefix("fe:n:")
    return sid[1:-1] if sid.startswith("{") and sid.endswith("}") else sid


def _record(sid: str, data: Mapping[Any, Any], applied: bool = False) -> SessionRecord | None:
    # (decode_responses=True: keys and values are str)
    if not data or "state" not in data:
        return None
    return SessionRecord(
        sid,
        jsontext.loads(data["state"]),
        int(data["rev"]),
        int(data["seq"]),
        float(data.get("at", 0)),
        applied,
    )


class RedisStore:
    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 32,
        timeout: float = 2.0,
        password: str | None = None,
        wait_replicas: int | None = None,
        wait_timeout: float = 1.0,
        sharded_pubsub: bool = True,
    ) -> None:
        """`password` overrides the URL's. `wait_replicas`: after each commit, how many
        replicas must have it (WAIT) before it is acknowledged; None: 1 on Sentinel and
        Cluster, 0 (no WAIT) on one server."""
        self.url = url
        self.topology = topology.parse(url)
        self._redis, self._pool = topology.connect(
            self.topology, password=password, max_connections=max_connections, timeout=timeout
        )
        self.cluster = self.topology.kind == "cluster"
        # sid -> (team, agent) of its handoff record as this process last saw it (transition)
        self._handoff_names: OrderedDict[str, tuple[str, str]] = OrderedDict()
        if wait_replicas is None:
            wait_replicas = 1 if self.topology.replicated else 0
        self.wait_replicas = wait_replicas
        self.wait_ms = max(1, int(wait_timeout * 1000))
        self.problem: topology.Problem | None = None  # the last failure's kind, until a success
        self._commit = self._redis.register_script(_COMMIT)
        self._commits: GroupCommit[tuple[list[str], list[Any]], list[Any]] = GroupCommit(
            self._write_commits
        )
        self._mark = self._redis.register_script(_MARK)
        self._watch = self._redis.register_script(_WATCH)
        self._transition = self._redis.register_script(_TRANSITION)
        self._put = self._redis.register_script(_PUT)
        self._update_ticket = self._redis.register_script(_UPDATE_TICKET)
        self._consume = self._redis.register_script(_CONSUME)
        self._read = self._redis.register_script(_READ)
        self._forget_consumers = self._redis.register_script(_FORGET_CONSUMERS)
        self._group_ready = False
        self._watched: dict[str, int] = {}
        self._following: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # `_one_at_a_time`
        self._listener: Listener | None = None
        self._pubsub: Any = None
        self._pump: asyncio.Task[None] | None = None
        # On a replicated topology a failover can lose a publish with no error on any side
        # (sent to a primary as it died): every RECONCILE_EVERY s the watched sessions' stored
        # seqs are read, and a watcher behind one is told to catch up.
        self._reconciler: asyncio.Task[None] | None = None
        self._known_seq: dict[str, int] = {}
        self._unmarked: dict[str, int] = {}  # replicated seqs whose `aseq` was not written yet
        self._stale = False  # a subscription failed: the pump subscribes everything again
        # Sharded: (first, last) time in a run of "a node's pub/sub has no connection" errors
        self._unconnected = (0.0, 0.0)
        self._subscribed = asyncio.Event()
        # On Cluster, sharded pub/sub (SPUBLISH/SSUBSCRIBE in the session's slot: only that
        # shard carries it); `sharded_pubsub=False` broadcasts to every node (tests compare).
        self.sharded = self.cluster and sharded_pubsub
        self._publish = "SPUBLISH" if self.sharded else "PUBLISH"
        self.instance = secrets.token_hex(6)
        self._watch_args = [self.instance, WATCH_FLOOR_MS]

    # -- sessions ------------------------------------------------------------------------
    async def load(self, sid: str, action_id: str | None = None) -> SessionRecord | None:
        state_key, _, actions_key, _ = _keys(sid)

        try:
            if action_id is None:
                data, applied = await self._redis.hgetall(state_key), False
            else:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.hgetall(state_key)
                    pipe.sismember(actions_key, action_id)
                    data, applied = await pipe.execute()
            if applied and self.wait_replicas > 0:
                await self._replicated(actions_key)
        except topology.FAILURES as exc:
            raise await self._unavailable(exc) from exc
        return _record(sid, data, bool(applied))

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
            jsontext.dumps(state),
            self.instance,
            int(ttl * 1000),
            action_id or "",
            now,
            # With WAIT, the others are told once the replicas have it (below): told before,
            # another instance could show an event that a failover then loses.
            "" if self.wait_replicas > 0 else f"{self._publish} {self._channel(sid)}",
            _first_seq(events),
        ]
        args += [jsontext.dumps(e) for e in events]
        try:
            outcome, new_rev, new_seq = await self._commits.submit((list(_keys(sid)), args))
        except topology.FAILURES as exc:
            raise await self._unavailable(exc) from exc
        except AttributeError as exc:  # redis-py's cluster client, mid-failover
            raise StoreUnavailable(f"{self.problem or 'error'}: {type(exc).__name__}") from exc
        if outcome == "ok" and events and self.wait_replicas > 0:
            await self._acknowledged(sid, int(new_seq))
        if outcome == "ok" and events and self._listener is not None and sid in self._watched:
            # This process hears of its own commits at once, with the events (nothing to
            # re-read); pub/sub tells the others.
            self._tell(sid, int(new_seq), tuple(events))
        return Commit(outcome, int(new_rev), int(new_seq))

    async def _write_commits(
        self, batch: Sequence[tuple[list[str], list[Any]]]
    ) -> list[list[Any] | BaseException]:
        """A group commit (store/group_commit.py): the commit scripts of one loop turn, one
        pipeline per node (one on a single server or Sentinel), each script keeping its own
        compare-and-set. Each request's reply, or the error its command (or its node's
        connection) got."""
        if not self.cluster:
            return await self._commits_on_one_connection(batch)
        groups = await self._by_node([keys[0] for keys, _ in batch])
        out: list[list[Any] | BaseException] = [RedisError("not written")] * len(batch)
        answers = await asyncio.gather(
            *(self._commits_on_one_connection([batch[i] for i in ix]) for ix in groups),
            return_exceptions=True,
        )
        for ix, answer in zip(groups, answers, strict=True):
            for n, i in enumerate(ix):
                out[i] = answer if isinstance(answer, BaseException) else answer[n]
        return out

    async def _by_node(self, keys: list[str]) -> list[list[int]]:
        """The indexes of `keys`, grouped by the node that holds each (one group off Cluster)."""
        if not self.cluster:
            return [list(range(len(keys)))]
        await self._redis.initialize()  # the slot map, on a first command (no-op after)
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(self._redis.get_node_from_key(key).name, []).append(i)
        return list(groups.values())

    async def _commits_on_one_connection(
        self, batch: Sequence[tuple[list[str], list[Any]]]
    ) -> list[list[Any] | BaseException]:
        """Commit scripts sent together on one connection, then (with `wait_replicas`) one WAIT
        for all of them: WAIT counts the replicas that have every write of the connection. A
        commit fewer replicas than `wait_replicas` acknowledged within the timeout is refused
        as unavailable: it may be lost in a failover, so the client is not told it is saved;
        its resend carries the same action id, and is answered as a duplicate if the commit
        survived."""
        out: list[list[Any] | BaseException] = [RedisError("not written")] * len(batch)
        todo = list(range(len(batch)))
        for attempt in range(2):
            commands: list[tuple[Any, ...]] = [
                ("EVALSHA", self._commit.sha, len(batch[i][0]), *batch[i][0], *batch[i][1])
                for i in todo
            ]
            if self.wait_replicas > 0:
                commands.append(("WAIT", self.wait_replicas, self.wait_ms))
            results = await self._on_one_connection(batch[todo[0]][0][0], commands)
            acked = results[-1] if self.wait_replicas > 0 else None
            short = None
            if isinstance(acked, BaseException):
                short = acked
            elif acked is not None and int(acked) < self.wait_replicas:
                short = RedisError(
                    f"the commit reached {acked} of {self.wait_replicas} replicas "
                    f"within {self.wait_ms} ms"
                )
            again = []
            for i, r in zip(todo, results, strict=False):
                if isinstance(r, NoScriptError) and attempt == 0:
                    again.append(i)  # not run: sent again once the script is loaded
                elif isinstance(r, BaseException):
                    out[i] = r
                # A duplicate too: its first commit may be on this primary alone (its WAIT
                # failed), and a failover would lose it after the resend was told it is saved.
                elif short is not None and r[0] in ("ok", "duplicate"):
                    out[i] = short
                else:
                    out[i] = list(r)
            if not again:
                break
            await self._load_script(batch[again[0]][0][0], _COMMIT)
            todo = again
        return out

    async def _replicated(self, key: str) -> None:
        """Raise unless `wait_replicas` replicas have everything `key`'s primary has now: an
        action found applied is answered as a duplicate only then (its first commit may be on
        this primary alone, its WAIT failed, and a failover would lose it). A write (the key's
        TTL, unchanged) and WAIT on one connection: WAIT counts the connection's writes."""
        commands = [("EVAL", _TOUCH, 1, key), ("WAIT", self.wait_replicas, self.wait_ms)]
        results = await self._on_one_connection(key, commands)
        for r in results:
            if isinstance(r, Exception):
                raise r
        if int(results[1]) < self.wait_replicas:
            raise RedisError(
                f"an applied action reached {results[1]} of {self.wait_replicas} replicas "
                f"within {self.wait_ms} ms"
            )

    async def _on_one_connection(self, key: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Commands sent together on one connection (to the node holding `key` on Cluster);
        each one's reply, or the error it got."""
        if self.cluster:
            from redis.asyncio.cluster import PipelineCommand

            # Sent to the node past the client's own redirect handling: a node that has gone
            # or a slot that moved refreshes the slot map here, so the resend finds the owner.
            await self._redis.initialize()  # the slot map, on a first command (no-op after)
            batch = [PipelineCommand(i, *c) for i, c in enumerate(commands)]
            try:
                await self._redis.get_node_from_key(key).execute_pipeline(batch)
            except topology.FAILURES:
                await self._refresh_slots()
                raise
            if any(isinstance(c.result, _MOVED) for c in batch):
                await self._refresh_slots()
            return [c.result for c in batch]
        async with self._redis.pipeline(transaction=False) as pipe:
            for c in commands:
                pipe.execute_command(*c)
            return list(await pipe.execute(raise_on_error=False))

    async def _refresh_slots(self) -> None:
        with contextlib.suppress(*topology.FAILURES):
            await self._redis.nodes_manager.initialize()

    async def _load_script(self, key: str, source: str) -> None:
        if self.cluster:
            node = self._redis.get_node_from_key(key)
            await self._redis.execute_command("SCRIPT", "LOAD", source, target_nodes=node)
        else:
            await self._redis.script_load(source)

    async def replay(self, sid: str, after_seq: int, limit: int = 1000) -> list[dict[str, Any]]:
        start = max(after_seq, 0)
        try:
            raw = await self._redis.lrange(_keys(sid)[1], start, start + limit - 1)
        except topology.FAILURES as exc:
            raise await self._unavailable(exc) from exc
        return [jsontext.loads(r) for r in raw]

    # -- flow versions -------------------------------------------------------------------
    async def put_version(self, version: str, bundle: dict[str, Any], ttl: float) -> None:
        try:
            await self._redis.set(f"fe:v:{version}", json.dumps(bundle), px=int(ttl * 1000))
        except topology.FAILURES as exc:
            raise await self._unavailable(exc) from exc

    async def get_version(self, version: str) -> dict[str, Any] | None:
        try:
            raw = await self._redis.get(f"fe:v:{version}")
        except topology.FAILURES as exc:
            raise await self._unavailable(exc) from exc
        return json.loads(raw) if raw else None

    async def touch_version(self, version: str, ttl: float) -> None:
        try:
            await self._redis.pexpire(f"fe:v:{version}", int(ttl * 1000))
        except topology.FAILURES as exc:
            raise await self._unavailable(exc) from exc

    # -- analytics -----------------------------------------------------------------------
    async def append_events(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        try:
            # One stream entry per EVENTS_PER_ENTRY events flushed together (of any sessions):
            # what a reader pays per entry (the insights consumer's read and acknowledgement)
            # is paid once for many events, and a flush is one or a few XADDs.
            async with self._redis.pipeline(transaction=False) as pipe:
                for i in range(0, len(events), EVENTS_PER_ENTRY):
                    chunk = events[i : i + EVENTS_PER_ENTRY]
                    pipe.xadd(
                        EVENTS_KEY,
                        {"events": jsontext.dumps(chunk)},
                        maxlen=EVENTS_MAXLEN,
                        approximate=True,
                    )
                await pipe.execute()
        except topology.FAILURES as exc:
            raise await self._unavailable(exc) from exc

    async def read_events(self, count: int = 100) -> list[dict[str, Any]]:
        try:
            rows = await self._redis.xrevrange(EVENTS_KEY, count=count)
        except topology.FAILURES as exc:
            raise await self._unavailable(exc) from exc
        out: list[dict[str, Any]] = []
        for _, fields in reversed(rows or []):
            if fields:
                out.extend(jsontext.loads(fields["events"]))
        return out[-count:]

    # -- insights ------------------------------------------------------------------------
    async def consume_events(
        self, fold: Fold, *, consumer: str, count: int = 500, idle: float = 60.0,
        retention_days: int = 400,
    ) -> int:  # fmt: skip
        try:
            # A script blocks Redis while it runs: at most CONSUME_ENTRIES entries a call.
            count = min(count, CONSUME_ENTRIES)
            if not self._group_ready:
                await self._create_group()
            try:
                entries = await self._unconsumed(consumer, count, idle)
            except RedisError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._create_group()  # the stream was deleted: start it again
                entries = await self._unconsumed(consumer, count, idle)
            if not entries:
                return 0
            days: dict[str, int] = {}  # day -> its index into KEYS
            names: dict[str, int] = {}  # counter field -> its index into the fields
            body: list[Any] = []
            for (entry_id, _), events in zip(entries, _parsed(entries), strict=True):
                increments = fold(events)
                spec = " ".join(
                    f"{days.setdefault(d, len(days) + 2)} {names.setdefault(f, len(names) + 1)} {n}"
                    for (d, f), n in increments.items()
                )
                body += [entry_id, spec]
            keys = [EVENTS_KEY, *(INSIGHTS_DAY + day for day in days)]
            expiry = [day_expires(day, retention_days) for day in days]
            args = [INSIGHTS_GROUP, len(days), *expiry, len(names), *names, *body]
            await self._consume(keys=keys, args=args)
            return len(entries)
        except topology.FAILURES as exc:
            raise await self._unavailable(exc) from exc

    async def _create_group(self) -> None:
        try:
            # From the stream's first entry: what was logged before insights existed counts.
            await self._redis.xgroup_create(EVENTS_KEY, INSIGHTS_GROUP, id="0", mkstream=True)
        except RedisError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _unconsumed(self, consumer: str, count: int, idle: float) -> list[tuple[str, str]]:
        """(entry id, its events as JSON) of the entries to fold next ("" for none)."""
        raw = await self._read(
            keys=[EVENTS_KEY], args=[INSIGHTS_GROUP, consumer, int(idle * 1000), count]
        )
        parts = raw.split("\n") if raw else []
        return list(zip(parts[::2], parts[1::2], strict=True))

    async def insight_counts(self, days: list[str]) -> dict[str, dict[str, int]]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for day in days:
                    pipe.hgetall(INSIGHTS_DAY + day)
                rows = await pipe.execute()
        except topology.FAILURES as exc:
            raise await self._unavailable(exc) from exc
        return {
            day: {f: int(v) for f, v in row.items()}
            for day, row in zip(days, rows, strict=True)
            if row
        }

    async def prune_insights(self, before: str) -> int:
        # Each day's hash expires by itself (EXPIREAT, set as it is written); what is pruned
        # here is the group's consumers that stopped (one per process that ever ran).
        try:
            if self._group_ready:
                await self._forget_consumers(
                    keys=[EVENTS_KEY], args=[INSIGHTS_GROUP, int(CONSUMER_GONE * 1000)]
                )
        except topology.FAILURES as exc:
            raise await self._unavailable(exc) from exc
        return 0

    async def forget_log(self, before: float) -> int:
        # A stream entry's id is its time in ms; trimmed up to `before`, but never past an
        # entry the group has not read yet or a reader still holds (pending).
        try:
            groups = await self._redis.xinfo_groups(EVENTS_KEY)
            group = next((g for g in groups if g["name"] == INSIGHTS_GROUP), None)
            if group is None:
                return 0
            bounds = [(int(before * 1000), 0), _stream_id(group["last-delivered-id"], 1)]
            pending = await self._redis.xpending(EVENTS_KEY, INSIGHTS_GROUP)
            if pending["pending"]:
                bounds.append(_stream_id(pending["min"]))
            ms, n = min(bounds)
            await self._redis.xtrim(EVENTS_KEY, minid=f"{ms}-{n}", approximate=False)
        except topology.FAILURES as exc:
            raise await self._unavailable(exc) from exc
        return 0

    # -- fan-out -------------------------------------------------------------------------
    def set_listener(self, listener: Listener) -> None:
        self._listener = listener

    async def watch(self, sid: str) -> None:
        async with self._one_at_a_time(sid):
            self._watched[sid] = self._watched.get(sid, 0) + 1
            if self._watched[sid] > 1:
                return
            # Subscribed, then in the watchers set, then (the caller) the log read: a commit
            # before the set has it is in that read; one after it publishes, and is heard.
            await self._subscribe(sid)
            try:
                await self._register([sid])
            except topology.FAILURES:
                raise_if_cancelled()
                log.warning("pub/sub unavailable; session updates resume when Redis is back")
                self._stale = True  # the pump subscribes and registers everything again

    async def unwatch(self, sid: str) -> None:
        async with self._one_at_a_time(sid):
            left = self._watched.get(sid, 0) - 1
            if left > 0:
                self._watched[sid] = left
                return
            self._watched.pop(sid, None)
            self._known_seq.pop(sid, None)
            with contextlib.suppress(*topology.FAILURES):  # else it expires with the session
                await self._redis.srem(_keys(sid)[3], self.instance)
            if self._pubsub is not None:
                with contextlib.suppress(*topology.FAILURES, RuntimeError):
                    if self.sharded:
                        await self._pubsub.sunsubscribe(self._channel(sid))
                    else:
                        await self._pubsub.unsubscribe(self._channel(sid))

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, sid: str) -> AsyncIterator[None]:
        """`watch` and `unwatch` of one session in turn: a reload's new socket watching while
        its old one unwatches must not have the unwatch's SREM land after its SADD (two
        connections: Redis may take them in either order), nor its unsubscribe after its
        subscribe, which left this process following the session deaf to it."""
        entry = self._following.get(sid)
        if entry is None:
            entry = self._following[sid] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._following[sid]

    def _channel(self, sid: str) -> str:
        return channel(sid, self.sharded)

    async def _acknowledged(self, sid: str, seq: int) -> None:
        """On a replicated topology, after WAIT: record seq `seq` of `sid` as replicated (the
        `aseq` field, which is what the reconciler reads: never a seq a failover may still
        lose) and tell the other instances. If that fails (the node is going), it is done
        again by the reconciler until it works: a watcher is never left behind for good."""
        try:
            state_key, _, _, watchers_key = _keys(sid)
            tell = f"{self._publish} {self._channel(sid)}"
            await self._mark(keys=[state_key, watchers_key], args=[seq, self.instance, tell])
        except Exception as exc:
            log.warning("a replicated seq was not recorded yet (%s)", type(exc).__name__)
            self._unmarked[sid] = max(seq, self._unmarked.get(sid, 0))

    async def _listen(self, *sids: str) -> None:
        channels = [self._channel(s) for s in sids]
        if self.sharded:  # one SSUBSCRIBE per slot, on the node holding it
            await self._redis.initialize()  # the slot map (no-op once known)
            for c in channels:
                await self._pubsub.ssubscribe(c)
        else:
            await self._pubsub.subscribe(*channels)

    async def _subscribe(self, sid: str) -> None:
        if self._pubsub is None:
            self._pubsub = self._new_pubsub()
        try:
            await self._listen(sid)
        except topology.FAILURES:
            log.warning("pub/sub unavailable; session updates resume when Redis is back")
            self._stale = True  # the pump subscribes again
        self._subscribed.set()
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run_pump())
        replicated = self.topology.replicated
        if replicated and (self._reconciler is None or self._reconciler.done()):
            self._reconciler = asyncio.create_task(self._reconcile())

    async def _register(self, sids: list[str]) -> None:
        """Put this instance in the watchers sets of `sids`: one on `watch`, every watched one
        after a reconnect (a Redis that restarted, a new primary that never had the set).
        Pipelined, per node on Cluster (whose client refuses scripts in its own pipelines)."""
        for ix in await self._by_node([_keys(sid)[3] for sid in sids]):
            group = [sids[i] for i in ix]
            for i in range(0, len(group), 500):
                chunk = group[i : i + 500]
                key = _keys(chunk[0])[3]
                commands = [
                    ("EVALSHA", self._watch.sha, 2, _keys(s)[3], _keys(s)[0], *self._watch_args)
                    for s in chunk
                ]
                results = await self._on_one_connection(key, commands)
                if any(isinstance(r, NoScriptError) for r in results):  # a new server
                    await self._load_script(key, _WATCH)
                    results = await self._on_one_connection(key, commands)
                for result in results:
                    if isinstance(result, BaseException):
                        raise result

    def _new_pubsub(self) -> Any:
        # Sharded: subscription messages are read, as a `sunsubscribe` nobody asked for is how
        # a node that lost the slot (a failover) tells its subscribers to go elsewhere.
        return self._redis.pubsub(ignore_subscribe_messages=not self.sharded)

    async def _reconcile(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_EVERY)
            for sid, seq in list(self._unmarked.items()):
                self._unmarked.pop(sid, None)
                await self._acknowledged(sid, seq)  # put back if it fails again
            sids = list(self._watched)
            if not sids or self._listener is None:
                continue
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for sid in sids:
                        pipe.hget(_keys(sid)[0], "aseq")  # replicated seqs only
                    seqs = await pipe.execute()
            except topology.FAILURES:
                raise_if_cancelled()
                continue  # the store is away: the pump's resubscribe re-reads when it is back
            for sid, seq in zip(sids, seqs, strict=True):
                if seq is not None and sid in self._watched:
                    self._tell(sid, int(seq), None)

    def _tell(self, sid: str, seq: int, events: tuple[dict[str, Any], ...] | None) -> None:
        """Tell the listener seq `seq` of `sid` is stored, once per seq (the reconciler reads
        every watched session's seq; only news is passed on)."""
        if self._listener is None or (events is None and self._known_seq.get(sid, 0) >= seq):
            return
        self._known_seq[sid] = max(seq, self._known_seq.get(sid, 0))
        self._listener.committed(sid, seq, events)

    async def _next_message(self) -> dict[str, Any] | None:
        if not self.sharded:
            message: dict[str, Any] | None = await self._pubsub.get_message(timeout=1.0)
            return message
        # Sharded: one connection per node holding a watched slot, read in turn (a short wait
        # on each, so a message on any of them waits at most ~0.1 s).
        nodes = len(self._pubsub.node_pubsub_mapping)
        if nodes == 0:
            await asyncio.sleep(0.1)
            return None
        try:
            message = await self._pubsub.get_sharded_message(timeout=0.1 / nodes)
        except RuntimeError:
            # A node's connection being made by a concurrent `watch`; if it never is (its
            # subscribe failed), subscribe everything again.
            now = asyncio.get_running_loop().time()
            if now - self._unconnected[1] > 1.0:  # a new run of these errors
                self._unconnected = (now, now)
            self._unconnected = (self._unconnected[0], now)
            if now - self._unconnected[0] > 2.0:
                raise
            await asyncio.sleep(0.01)
            return None
        if message and message["type"] == "sunsubscribe":
            # Not asked for (a node that no longer holds the slot drops its subscribers, as
            # after a failover): subscribe again where the slot is now.
            if _sid_of(message["channel"]) in self._watched:
                self._stale = True
            return None
        return message

    async def _run_pump(self) -> None:
        """Deliver notifications; on a broken connection, resubscribe (every watched channel,
        until it works) and tell every watcher to catch up from the log (notifications sent
        meanwhile are lost)."""
        while True:
            try:
                if self._stale:
                    await asyncio.sleep(0.5)
                    self._stale = not await self._resubscribe()
                    if not self._stale:  # the pair of "connection lost"
                        log.info("pub/sub connection back (%d sessions)", len(self._watched))
                    continue
                message = await self._next_message()
                if message and message.get("type") in ("message", "smessage"):
                    self._heard(_sid_of(message["channel"]), message["data"])
            except asyncio.CancelledError:
                raise
            except (*topology.FAILURES, RuntimeError) as exc:
                raise_if_cancelled()
                log.warning(
                    "pub/sub connection lost (%s: %s); reconnecting", type(exc).__name__, exc
                )
                self._stale = True

    async def _resubscribe(self) -> bool:
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
        if self.cluster:  # a node failed: learn which nodes hold the slots now
            await self._refresh_slots()
        self._pubsub = self._new_pubsub()
        try:
            await self._listen(*(self._watched or ["-"]))  # "-": keep the connection subscribed
            await self._register(list(self._watched))
        except topology.FAILURES:
            raise_if_cancelled()
            return False
        if self._listener is not None:
            for sid in list(self._watched):
                self._listener.committed(sid, -1, None)
        return True

    def _heard(self, sid: str, data: str) -> None:
        """A pub/sub message: "N:<instance>" (seq N stored there) or a JSON signal."""
        if self._listener is None or sid not in self._watched:
            return
        if data.startswith("{"):
            self._listener.signalled(sid, json.loads(data))
            return
        seq, _, origin = data.partition(":")
        if origin != self.instance:  # our own commits were told directly
            self._tell(sid, int(seq), None)

    # -- lifecycle -----------------------------------------------------------------------
    async def ping(self) -> bool:
        return await self.readiness() is None

    async def readiness(self) -> topology.Problem | None:
        """None if the store takes a write now (a SET with a short TTL: a replica, a primary
        demoted in place, answers PING but refuses it); else what is wrong (auth_failed, tls,
        read_only, unreachable, error)."""
        try:
            await self._redis.set(f"fe:health:{self.instance}", 1, px=5000)
        except topology.FAILURES as exc:
            await self._unavailable(exc)
            return self.problem
        self.problem = None
        return None

    async def close(self) -> None:
        # Commits under way are answered first (bounded: a Redis that is gone fails them).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._commits.drain(), 5)
        for task in (self._pump, self._reconciler):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        await self._redis.aclose()
        if self._pool is not None:
            await self._pool.aclose()

    # -- handoffs (HandoffStore) ---------------------------------------------------------------
    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except topology.FAILURES as exc:
            raise await self._unavailable(exc) from exc

    async def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        """The error to raise for a failed command. A READONLY reply means the server we are
        connected to is a replica now (a primary demoted in place, or a proxy or DNS name that
        moved): every pooled connection is dropped, so the next command connects afresh (to
        the new primary) instead of being refused until the process restarts."""
        self.problem = topology.problem_of(exc)
        if isinstance(exc, ReadOnlyError) and self._pool is not None:
            log.warning("Redis answered READONLY: reconnecting to find the primary")
            with contextlib.suppress(Exception):
                await self._pool.disconnect(inuse_connections=True)
        return StoreUnavailable(f"{self.problem}: {exc}")

    async def put_handoff(self, sid: str, record: dict[str, Any], score: float, ttl: float) -> bool:
        record = {**record, "status": "queued", "agent": None, "score": score}
        done = await self._call(
            self._put(
                keys=[H + "h:" + sid, H + "q:" + record["team"]],
                args=[json.dumps(record), score, int(ttl * 1000), sid],
            )
        )
        if done:
            self._remember_names(sid, record)
        return bool(done)

    async def get_handoff(self, sid: str) -> dict[str, Any] | None:
        raw = await self._call(self._redis.get(H + "h:" + sid))
        if not raw:
            return None
        rec: dict[str, Any] = json.loads(raw)
        self._remember_names(sid, rec)
        return rec

    async def transition(
        self,
        sid: str,
        allowed: tuple[str, ...],
        changes: dict[str, Any],
        score: float | None,
        ttl: float,
        teams: tuple[str, ...] | None = None,
        agent: str | None = None,
    ) -> dict[str, Any] | None:
        # The record's team and agent name the keys the script declares: as this process last
        # saw them (no read first: a claim stays one round trip), else read now.
        known = self._handoff_names.get(sid)
        if known is None:
            raw = await self._call(self._redis.get(H + "h:" + sid))
            if not raw:
                return None
            known = _names(json.loads(raw))
        for _ in range(20):
            team, holder = known
            new = {"team": team, "agent": holder or None, **changes}
            out = await self._call(
                self._transition(
                    keys=[
                        H + "h:" + sid,
                        H + "q:" + team,
                        H + "load:" + holder,
                        H + "q:" + _name(new.get("team")),
                        H + "load:" + _name(new.get("agent")),
                    ],
                    args=[
                        ",".join(allowed),
                        json.dumps(changes),
                        "",
                        "",
                        "" if score is None else score,
                        int(ttl * 1000),
                        sid,
                        "" if teams is None else ",".join(teams) or ",",
                        agent or "",
                        team,
                        holder,
                    ],
                )
            )
            if isinstance(out, str) and out.startswith("again:"):
                known = _names(json.loads(out.removeprefix("again:")))
                continue
            if not out:
                return None
            rec = json.loads(out)
            self._remember_names(sid, rec)
            return dict(rec)
        raise StoreUnavailable("the handoff is too busy; try again")

    def _remember_names(self, sid: str, rec: dict[str, Any]) -> None:
        self._handoff_names[sid] = _names(rec)
        self._handoff_names.move_to_end(sid)
        while len(self._handoff_names) > 10_000:
            self._handoff_names.popitem(last=False)

    async def chat_view(self, sid: str, limit: int = 5000) -> ChatView:
        state_key, log_key, _, _ = _keys(sid)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(state_key)
            pipe.lrange(log_key, 0, limit - 1)
            pipe.lrange(f"fe:{{{sid}}}:notes", 0, -1)
            pipe.get(H + "h:" + sid)
            data, log, notes, handoff = await self._call(pipe.execute())
        return ChatView(
            _record(sid, data),
            [jsontext.loads(e) for e in log],
            [json.loads(n) for n in notes],
            json.loads(handoff) if handoff else None,
        )

    async def _records(self, sids: list[str]) -> list[dict[str, Any]]:
        if not sids:
            return []
        raws = await self._call(self._redis.mget([H + "h:" + s for s in sids]))
        return [json.loads(r) for r in raws if r]

    async def queue(self, team: str) -> list[dict[str, Any]]:
        sids = await self._call(self._redis.zrange(H + "q:" + team, 0, -1))
        return [r for r in await self._records(sids) if r.get("status") == "queued"]

    async def agent_chats(self, agent: str) -> list[dict[str, Any]]:
        sids = sorted(await self._call(self._redis.smembers(H + "load:" + agent)))
        return [
            r
            for r in await self._records(sids)
            if r.get("status") == "assigned" and r.get("agent") == agent
        ]

    async def heartbeat(self, agent: str, info: dict[str, Any], now: float) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(H + "online", {agent: now})
            pipe.hset(H + "info", agent, json.dumps(info))
            await self._call(pipe.execute())

    async def online(self, now: float, window: float = 30.0) -> dict[str, dict[str, Any]]:
        agents = await self._call(self._redis.zrangebyscore(H + "online", now - window, "+inf"))
        if not agents:
            return {}
        infos = await self._call(self._redis.hmget(H + "info", agents))
        return {a: json.loads(i) for a, i in zip(agents, infos, strict=True) if i}

    async def presence(self) -> dict[str, float]:
        seen = await self._call(self._redis.zrange(H + "online", 0, -1, withscores=True))
        return {a: float(t) for a, t in seen}

    async def leave(self, agent: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(H + "online", agent)
            pipe.hdel(H + "info", agent)
            await self._call(pipe.execute())

    async def once(self, key: str, ttl: float) -> bool:
        first = await self._call(self._redis.set("fe:once:" + key, 1, px=int(ttl * 1000), nx=True))
        return bool(first)

    async def forget(self, key: str) -> None:
        await self._call(self._redis.delete("fe:once:" + key))

    async def put_ticket(self, key: str, ticket: dict[str, Any]) -> None:
        summary = {k: v for k, v in ticket.items() if k != "packet"}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(T + "all", key, json.dumps(summary, ensure_ascii=False))
            pipe.hset(T + "packets", key, json.dumps(ticket.get("packet"), ensure_ascii=False))
            pipe.zadd(T + "order", {key: float(ticket.get("created_at", 0))})
            await self._call(pipe.execute())

    async def _merged(self, keys: list[str]) -> list[dict[str, Any]]:
        """Tickets as created, with their changes (kept apart: flat, so a script can merge them
        without cjson turning an empty list into an object)."""
        if not keys:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(T + "all", keys)
            pipe.hmget(T + "changes", keys)
            raws, changes = await self._call(pipe.execute())
        return [
            {**json.loads(r), **(json.loads(c) if c else {})}
            for r, c in zip(raws, changes, strict=True)
            if r
        ]

    async def tickets(self, limit: int = 1000) -> list[dict[str, Any]]:
        keys = await self._call(self._redis.zrevrange(T + "order", 0, limit - 1))
        return await self._merged(keys)

    async def get_ticket(self, key: str) -> dict[str, Any] | None:
        found = await self._merged([key])
        if not found:
            return None
        packet = await self._call(self._redis.hget(T + "packets", key))
        return {**found[0], "packet": json.loads(packet) if packet else None}

    async def update_ticket(self, key: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        done = await self._call(
            self._update_ticket(
                keys=[T + "all", T + "changes"], args=[key, json.dumps(changes, ensure_ascii=False)]
            )
        )
        return await self.get_ticket(key) if done else None

    async def failures(self, keys: list[str]) -> list[int]:
        if not keys:
            return []
        names = ["fe:fail:" + k for k in keys]  # in several slots on Cluster
        mget = self._redis.mget_nonatomic if self.cluster else self._redis.mget
        raws = await self._call(mget(names))
        return [int(r) if r else 0 for r in raws]

    async def add_failure(self, keys: list[str], window: float) -> list[int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for k in keys:
                # The window starts at the first failure: created with its expiry, then counted
                # (INCR keeps the expiry, and answers the count: atomic under any concurrency).
                pipe.set("fe:fail:" + k, 0, px=int(window * 1000), nx=True)
                pipe.incr("fe:fail:" + k)
            answers = await self._call(pipe.execute())
        return [int(n) for n in answers[1::2]]

    async def forgive(self, keys: list[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for k in keys:  # one key a script: each in its own slot on Cluster
                pipe.eval(_FORGIVE, 1, "fe:fail:" + k)
            await self._call(pipe.execute())

    async def put_token(self, token_hash: str, username: str, ttl: float) -> None:
        await self._call(self._redis.set("fe:tok:" + token_hash, username, px=int(ttl * 1000)))

    async def get_token(self, token_hash: str) -> str | None:
        username: str | None = await self._call(self._redis.get("fe:tok:" + token_hash))
        return username

    async def del_token(self, token_hash: str) -> None:
        await self._call(self._redis.delete("fe:tok:" + token_hash))

    async def add_note(self, sid: str, note: dict[str, Any], ttl: float) -> None:
        key = f"fe:{{{sid}}}:notes"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, json.dumps(note, ensure_ascii=False))
            pipe.pexpire(key, int(ttl * 1000))
            await self._call(pipe.execute())

    async def notes(self, sid: str) -> list[dict[str, Any]]:
        raws = await self._call(self._redis.lrange(f"fe:{{{sid}}}:notes", 0, -1))
        return [json.loads(r) for r in raws]

    async def signal(self, sid: str, payload: dict[str, Any]) -> None:
        publish = self._redis.spublish if self.sharded else self._redis.publish
        await self._call(publish(self._channel(sid), json.dumps(payload)))

    async def push_webhook(self, item: dict[str, Any]) -> None:
        await self._call(self._redis.lpush(OUTBOX, json.dumps(item)))

    async def take_webhook(self) -> dict[str, Any] | None:
        raw = await self._call(self._redis.lmove(OUTBOX, OUTBOX + ":inflight", "RIGHT", "LEFT"))
        if raw is None:
            return None
        item: dict[str, Any] = json.loads(raw)
        item["_raw"] = raw
        return item

    async def done_webhook(self, item: dict[str, Any]) -> None:
        raw = item.get("_raw")
        if raw:
            await self._call(self._redis.lrem(OUTBOX + ":inflight", 1, raw))

    async def recover_webhooks(self) -> int:
        n = 0
        while await self._call(self._redis.lmove(OUTBOX + ":inflight", OUTBOX, "RIGHT", "RIGHT")):
            n += 1
        return n

    async def log_webhook(self, entry: dict[str, Any]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.rpush(OUTBOX + ":log", json.dumps(entry))
            pipe.ltrim(OUTBOX + ":log", -1000, -1)
            await self._call(pipe.execute())

    async def webhook_log(self, count: int = 50) -> list[dict[str, Any]]:
        raws = await self._call(self._redis.lrange(OUTBOX + ":log", -count, -1))
        return [json.loads(r) for r in raws]
