"""The embedded store: one process, everything in memory, the same contract as Redis.

Expiry is checked when a key is read and swept on writes, so idle sessions go away as they
would on Redis. Nothing survives a restart: that is what the Redis store is for.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .base import Commit, Listener, SessionRecord

MAX_EVENTS = 100_000


@dataclass
class _Session:
    state: dict[str, Any]
    rev: int
    seq: int
    updated_at: float
    expires: float
    log: list[dict[str, Any]] = field(default_factory=list)
    actions: set[str] = field(default_factory=set)


class MemoryStore:
    kind = "memory"

    def __init__(self, clock: Any = time.time) -> None:
        self._sessions: dict[str, _Session] = {}
        self._versions: dict[str, tuple[dict[str, Any], float]] = {}
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._watched: set[str] = set()
        self._listener: Listener | None = None
        self._clock = clock
        self._writes = 0
        self._pending: set[asyncio.Future[Any]] = set()

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
        applied = action_id is not None and action_id in s.actions
        return SessionRecord(sid, copy.deepcopy(s.state), s.rev, s.seq, s.updated_at, applied)

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
        if s is not None and action_id and action_id in s.actions:
            return Commit("duplicate", s.rev, s.seq)
        if rev == 0:
            if s is not None:
                return Commit("conflict", s.rev, s.seq)
            s = _Session({}, 0, 0, now, 0.0)
            self._sessions[sid] = s
        elif s is None:
            return Commit("missing")
        elif s.rev != rev:
            return Commit("conflict", s.rev, s.seq)
        s.state = copy.deepcopy(state)
        s.rev += 1
        s.log.extend(copy.deepcopy(events))
        s.seq += len(events)
        s.updated_at = now
        s.expires = self._clock() + ttl
        if action_id:
            s.actions.add(action_id)
        self._sweep()
        if events and sid in self._watched and self._listener is not None:
            outcome = self._listener(sid, s.seq)
            if inspect.isawaitable(outcome):
                task = asyncio.ensure_future(outcome)
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
        return Commit("ok", s.rev, s.seq)

    async def replay(self, sid: str, after_seq: int, limit: int = 1000) -> list[dict[str, Any]]:
        s = self._live(sid)
        if s is None:
            return []
        start = max(after_seq, 0)
        return copy.deepcopy(s.log[start : start + limit])

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
        self._events.extend(copy.deepcopy(events))

    async def read_events(self, count: int = 100) -> list[dict[str, Any]]:
        return list(self._events)[-count:]

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
