"""The embedded store: one process, everything in memory, the same contract as Redis.

Expiry is checked when a key is read and swept on writes, so idle sessions go away as they
would on Redis. Nothing survives a restart: that is what the Redis store is for.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import jsontext
from .base import ChatView, Commit, Fold, Listener, SessionRecord

MAX_EVENTS = 100_000


@dataclass(slots=True)
class _Session:
    # Kept as JSON text, as Redis keeps them: a copy nobody can change through a reference, in
    # a third of the memory of the dicts, and cheaper to make than a deep copy.
    state: str
    rev: int
    seq: int
    updated_at: float
    expires: float
    log: list[str] = field(default_factory=list)
    # The action ids applied; None until the first (an empty set is 216 bytes, and most
    # sessions opened by a page view never act).
    actions: set[str] | None = None


def _text(value: Any) -> str:
    return jsontext.dumps(value)


def _time(event: dict[str, Any]) -> float:
    """An event's `at`; 0 for one without a usable time (folded as nothing, forgotten first)."""
    try:
        return float(event.get("at", 0))
    except (TypeError, ValueError):
        return 0.0


class MemoryStore:
    kind = "memory"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._sessions: dict[str, _Session] = {}
        self._versions: dict[str, tuple[dict[str, Any], float]] = {}
        # The analytics log, each event as JSON text (a third of a dict's memory; a copy, as
        # Redis keeps it): parsed when read or folded.
        self._events: deque[str] = deque(maxlen=MAX_EVENTS)
        self._appended = 0  # events ever appended: the insights cursor counts in these
        self._consumed = 0  # events the insights consumer has folded
        self._insights: dict[str, dict[str, int]] = {}  # day -> field -> value
        self._watched: set[str] = set()
        self._listener: Listener | None = None
        self._clock = clock
        self._writes = 0
        self._handoffs: dict[str, tuple[dict[str, Any], float]] = {}
        self._scores: dict[str, float] = {}
        self._presence: dict[str, tuple[dict[str, Any], float]] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (count, forgotten at)
        self._notes: dict[str, list[dict[str, Any]]] = {}
        self._once: dict[str, float] = {}  # key -> forgotten at
        self._tickets: dict[str, dict[str, Any]] = {}  # oldest first
        self._outbox: deque[dict[str, Any]] = deque()
        self._inflight: list[dict[str, Any]] = []
        self._webhook_log: deque[dict[str, Any]] = deque(maxlen=1000)

    def _live(self, sid: str) -> _Session | None:
        s = self._sessions.get(sid)
        if s is not None and s.expires <= self._clock():
            del self._sessions[sid]
            return None
        return s

    def _sweep(self) -> None:
        self._writes += 1
        if self._writes % 1000 == 0:
            now = self._clock()
            for sid in [k for k, s in self._sessions.items() if s.expires <= now]:
                del self._sessions[sid]

    async def load(self, sid: str, action_id: str | None = None) -> SessionRecord | None:
        s = self._live(sid)
        if s is None:
            return None
        applied = action_id is not None and s.actions is not None and action_id in s.actions
        return SessionRecord(sid, jsontext.loads(s.state), s.rev, s.seq, s.updated_at, applied)

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
        s = self._live(sid)
        if s is not None and action_id and s.actions is not None and action_id in s.actions:
            return Commit("duplicate", s.rev, s.seq)
        if rev == 0:
            if s is not None:
                return Commit("conflict", s.rev, s.seq)
            s = _Session("{}", 0, 0, now, 0.0)
            self._sessions[sid] = s
        elif s is None:
            return Commit("missing")
        elif s.rev != rev:
            return Commit("conflict", s.rev, s.seq)
        if events and events[0].get("seq") != s.seq + 1:  # numbered from a stale view
            return Commit("conflict", s.rev, s.seq)
        s.state = _text(state)
        s.rev += 1
        s.log.extend(_text(e) for e in events)
        s.seq += len(events)
        s.updated_at = now
        s.expires = self._clock() + ttl
        if action_id:
            if s.actions is None:
                s.actions = set()
            s.actions.add(action_id)
        self._sweep()
        if events and sid in self._watched and self._listener is not None:
            # The events as given (the store keeps its own text), as the Redis store does.
            self._listener.committed(sid, s.seq, tuple(events))
        return Commit("ok", s.rev, s.seq)

    async def replay(self, sid: str, after_seq: int, limit: int = 1000) -> list[dict[str, Any]]:
        s = self._live(sid)
        if s is None:
            return []
        start = max(after_seq, 0)
        return [jsontext.loads(e) for e in s.log[start : start + limit]]

    async def put_version(self, version: str, bundle: dict[str, Any], ttl: float) -> None:
        self._versions[version] = (copy.deepcopy(bundle), self._clock() + ttl)

    async def get_version(self, version: str) -> dict[str, Any] | None:
        item = self._versions.get(version)
        if item is None or item[1] <= self._clock():
            return None
        return copy.deepcopy(item[0])

    async def touch_version(self, version: str, ttl: float) -> None:
        item = self._versions.get(version)
        if item is not None:
            self._versions[version] = (item[0], self._clock() + ttl)

    async def append_events(self, events: list[dict[str, Any]]) -> None:
        self._events.extend(_text(e) for e in events)
        self._appended += len(events)

    async def read_events(self, count: int = 100) -> list[dict[str, Any]]:
        start = max(len(self._events) - count, 0)
        return [jsontext.loads(e) for e in itertools.islice(self._events, start, None)]

    # -- insights (InsightsStore) --------------------------------------------------------------
    async def consume_events(
        self, fold: Fold, *, consumer: str, count: int = 500, idle: float = 60.0,
        retention_days: int = 400,
    ) -> int:  # fmt: skip
        # Events that fell off the capped log before being consumed are skipped.
        first = max(self._consumed, self._appended - len(self._events))
        offset = first - (self._appended - len(self._events))
        batch = [jsontext.loads(e) for e in itertools.islice(self._events, offset, offset + count)]
        if not batch:
            return 0
        increments = fold(batch)  # computed before anything changes (the fold is pure)
        for (day, f), n in increments.items():
            counters = self._insights.setdefault(day, {})
            counters[f] = counters.get(f, 0) + n
        self._consumed = first + len(batch)
        return len(batch)

    async def insight_counts(self, days: list[str]) -> dict[str, dict[str, int]]:
        return {d: dict(self._insights[d]) for d in days if d in self._insights}

    async def prune_insights(self, before: str) -> int:
        old = [d for d in self._insights if d < before]
        return sum(len(self._insights.pop(d)) for d in old)

    async def forget_log(self, before: float) -> int:
        gone = 0
        first = self._appended - len(self._events)  # the log's first event, as counted
        while self._events and first + gone < self._consumed:
            if _time(jsontext.loads(self._events[0])) >= before:
                break
            self._events.popleft()
            gone += 1
        return gone

    async def watch(self, sid: str) -> None:
        self._watched.add(sid)

    async def unwatch(self, sid: str) -> None:
        self._watched.discard(sid)

    def set_listener(self, listener: Listener) -> None:
        self._listener = listener

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        pass

    # -- handoffs (HandoffStore) ---------------------------------------------------------------
    def _handoff(self, sid: str) -> dict[str, Any] | None:
        item = self._handoffs.get(sid)
        if item is None or item[1] <= self._clock():
            self._handoffs.pop(sid, None)
            self._scores.pop(sid, None)
            return None
        return item[0]

    async def put_handoff(self, sid: str, record: dict[str, Any], score: float, ttl: float) -> bool:
        current = self._handoff(sid)
        if current is not None and current["status"] != "closed":
            return False
        self._handoffs[sid] = (
            {**copy.deepcopy(record), "status": "queued", "agent": None, "score": score},
            self._clock() + ttl,
        )
        self._scores[sid] = score
        return True

    async def get_handoff(self, sid: str) -> dict[str, Any] | None:
        record = self._handoff(sid)
        return copy.deepcopy(record) if record is not None else None

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
        record = self._handoff(sid)
        if record is None or record["status"] not in allowed:
            return None
        if teams is not None and record.get("team") not in teams:
            return None
        if agent is not None and record.get("agent") != agent:
            return None
        record = {**record, **copy.deepcopy(changes)}
        self._handoffs[sid] = (record, self._clock() + ttl)
        if record["status"] == "queued":
            if score is not None:
                self._scores[sid] = record["score"] = score
        else:
            self._scores.pop(sid, None)
        return copy.deepcopy(record)

    async def queue(self, team: str) -> list[dict[str, Any]]:
        waiting = [
            (self._scores[sid], r)
            for sid in list(self._scores)
            if (r := self._handoff(sid)) is not None
            and r["status"] == "queued"
            and r["team"] == team
        ]
        return [copy.deepcopy(r) for _, r in sorted(waiting, key=lambda x: x[0])]

    async def agent_chats(self, agent: str) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(r)
            for sid in list(self._handoffs)
            if (r := self._handoff(sid)) is not None
            and r["status"] == "assigned"
            and r.get("agent") == agent
        ]

    async def heartbeat(self, agent: str, info: dict[str, Any], now: float) -> None:
        self._presence[agent] = (copy.deepcopy(info), now)

    async def online(self, now: float, window: float = 30.0) -> dict[str, dict[str, Any]]:
        return {
            a: copy.deepcopy(info)
            for a, (info, seen) in self._presence.items()
            if now - seen <= window
        }

    async def presence(self) -> dict[str, float]:
        return {a: seen for a, (_, seen) in self._presence.items()}

    async def leave(self, agent: str) -> None:
        self._presence.pop(agent, None)

    async def once(self, key: str, ttl: float) -> bool:
        now = self._clock()
        if self._once.get(key, 0.0) > now:
            return False
        self._once[key] = now + ttl
        if len(self._once) > 100_000:
            self._once = {k: t for k, t in self._once.items() if t > now}
        return True

    async def forget(self, key: str) -> None:
        self._once.pop(key, None)

    async def put_ticket(self, key: str, ticket: dict[str, Any]) -> None:
        self._tickets[key] = copy.deepcopy(ticket)

    async def tickets(self, limit: int = 1000) -> list[dict[str, Any]]:
        newest = reversed(list(self._tickets.values())[-limit:])
        return [copy.deepcopy({k: v for k, v in t.items() if k != "packet"}) for t in newest]

    async def get_ticket(self, key: str) -> dict[str, Any] | None:
        ticket = self._tickets.get(key)
        return copy.deepcopy(ticket) if ticket is not None else None

    async def update_ticket(self, key: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        if key not in self._tickets:
            return None
        self._tickets[key] = {**self._tickets[key], **copy.deepcopy(changes)}
        return copy.deepcopy(self._tickets[key])

    async def failures(self, keys: list[str]) -> list[int]:
        now = self._clock()
        counts = (self._failures.get(k, (0, 0.0)) for k in keys)
        return [n if until > now else 0 for n, until in counts]

    async def add_failure(self, keys: list[str], window: float) -> list[int]:
        now = self._clock()
        counts = []
        for k in keys:
            n, until = self._failures.get(k, (0, 0.0))
            self._failures[k] = (n + 1, until) if until > now else (1, now + window)
            counts.append(self._failures[k][0])
        if len(self._failures) > 100_000:  # bounded under a spray of names and addresses
            self._failures = {k: v for k, v in self._failures.items() if v[1] > now}
        return counts

    async def forgive(self, keys: list[str]) -> None:
        now = self._clock()
        for k in keys:
            n, until = self._failures.get(k, (0, 0.0))
            if until > now and n > 0:
                self._failures[k] = (n - 1, until)

    async def put_token(self, token_hash: str, username: str, ttl: float) -> None:
        self._tokens[token_hash] = (username, self._clock() + ttl)

    async def get_token(self, token_hash: str) -> str | None:
        item = self._tokens.get(token_hash)
        if item is None or item[1] <= self._clock():
            self._tokens.pop(token_hash, None)
            return None
        return item[0]

    async def del_token(self, token_hash: str) -> None:
        self._tokens.pop(token_hash, None)

    async def add_note(self, sid: str, note: dict[str, Any], ttl: float) -> None:
        self._notes.setdefault(sid, []).append(copy.deepcopy(note))

    async def notes(self, sid: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self._notes.get(sid, []))

    async def chat_view(self, sid: str, limit: int = 5000) -> ChatView:
        return ChatView(
            await self.load(sid),
            await self.replay(sid, 0, limit),
            await self.notes(sid),
            await self.get_handoff(sid),
        )

    async def signal(self, sid: str, payload: dict[str, Any]) -> None:
        if sid in self._watched and self._listener is not None:
            self._listener.signalled(sid, copy.deepcopy(payload))

    async def push_webhook(self, item: dict[str, Any]) -> None:
        self._outbox.append(copy.deepcopy(item))

    async def take_webhook(self) -> dict[str, Any] | None:
        if not self._outbox:
            return None
        item = self._outbox.popleft()
        self._inflight.append(item)
        return copy.deepcopy(item)

    async def done_webhook(self, item: dict[str, Any]) -> None:
        self._inflight = [i for i in self._inflight if i.get("id") != item.get("id")]

    async def recover_webhooks(self) -> int:
        n = len(self._inflight)
        self._outbox.extendleft(reversed(self._inflight))
        self._inflight = []
        return n

    async def log_webhook(self, entry: dict[str, Any]) -> None:
        self._webhook_log.append(copy.deepcopy(entry))

    async def webhook_log(self, count: int = 50) -> list[dict[str, Any]]:
        return list(self._webhook_log)[-count:]
