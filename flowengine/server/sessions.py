"""Sessions: the shell that feeds events to the pure engine and stores what comes out.

One shopper action: load the session, run `engine.step` on the version the session is pinned to,
and commit the new state with its transcript events and the action id, atomically. If another
instance (or tab) committed first, the commit reports a conflict and the action is re-applied on
the fresh state; the engine is pure, so that is safe, and per session the actions are applied in
one order. Effects (order backend calls, handoffs) run after the action is stored, and their
outcomes go through the same path.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from ..actions.orders import OrderBackend
from ..actions.registry import perform
from ..engine import model as m
from ..engine.step import start, step
from ..store import Store, StoreUnavailable
from .analytics import Analytics
from .config import ServerConfig
from .flows import FlowRegistry
from .metrics import Metrics
from .protocol import Hello

log = logging.getLogger("flowengine.sessions")

MAX_CONFLICT_RETRIES = 20
ACTION_GRACE = 65.0
CACHE_SESSIONS = 10_000  # an action still pending after this long was interrupted by a crash


KEEP: Any = object()  # `decide` returns it to store extra events with the state unchanged


class HandoffPort(Protocol):
    async def request(self, sid: str, effect: m.RequestHandoff) -> Applied | None: ...
    async def cancelled_by_shopper(self, sid: str) -> None: ...
    async def ticket_created(self, sid: str, args: dict[str, Any], data: Any) -> None: ...


class SessionGone(Exception):
    """The session expired or never existed."""


@dataclass(frozen=True)
class Opened:
    sid: str
    resumed: bool
    expired: bool


@dataclass(frozen=True)
class Applied:
    outcome: str  # ok | duplicate | error
    seq: int = 0
    error: m.EngineError | None = None
    effects: tuple[m.Effect, ...] = ()
    events: tuple[dict[str, Any], ...] = ()  # what was stored, to send without re-reading


def transcript(
    result: m.Result, before: m.State, seq: int, now: float, extra: tuple[dict[str, Any], ...] = ()
) -> list[dict[str, Any]]:
    """The persisted events a result adds, numbered after `seq`."""
    out: list[dict[str, Any]] = [dict(e) for e in extra]
    for msg in result.messages:
        out.append(
            {
                "type": "message",
                "from": msg.sender,
                "text": msg.text,
                "options": list(msg.options),
                "input": msg.input,
            }
        )
    if result.state.waiting == "ended" and before.waiting != "ended":
        out.append({"type": "ended", "resolution": result.state.resolution})
    for i, e in enumerate(out, start=seq + 1):
        e["seq"] = i
        e["at"] = now
    return out


class _Locks:
    """One asyncio lock per session, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def __call__(self, sid: str) -> asyncio.Lock:
        lock, users = self._locks.get(sid, (asyncio.Lock(), 0))
        self._locks[sid] = (lock, users + 1)
        await lock.acquire()
        return lock

    def release(self, sid: str) -> None:
        lock, users = self._locks[sid]
        lock.release()
        if users <= 1:
            del self._locks[sid]
        else:
            self._locks[sid] = (lock, users - 1)


class SessionService:
    def __init__(
        self,
        store: Store,
        flows: FlowRegistry,
        backend: OrderBackend,
        config: ServerConfig,
        metrics: Metrics,
        analytics: Analytics,
        clock: Callable[[], float] = time.time,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.store = store
        self.flows = flows
        self.backend = backend
        self.config = config
        self.metrics = metrics
        self.analytics = analytics
        self.clock = clock
        self.today = today
        self._locks = _Locks()
        self._tasks: set[asyncio.Task[None]] = set()
        self._cache: OrderedDict[str, tuple[int, int, m.State]] = OrderedDict()
        self.handoffs: HandoffPort | None = None  # wired by the server

    # -- opening ---------------------------------------------------------------------------
    async def open(self, hello: Hello) -> Opened:
        if hello.session is not None:
            record = await self.store.load(hello.session)
            if record is not None:
                self.metrics.sessions.labels("resumed").inc()
                state = m.State.from_json(record.state)
                if state.waiting == "action" and self.clock() - record.updated_at > ACTION_GRACE:
                    # The process running the action died: take the flow's error exit.
                    self.spawn(self._settle(hello.session, lambda s: _interrupted(s)))
                if _context_changed(state.context, hello.context):
                    await self.advance(hello.session, lambda _s: m.SetContext(hello.context), None)
                return Opened(hello.session, resumed=True, expired=False)
        project = self.flows.current
        assert project is not None
        await self.flows.publish(unless_recent=True)
        now = self.clock()
        result = start(project, now=now, locale=hello.locale, context=hello.context)
        sid = secrets.token_urlsafe(18)
        events = transcript(result, result.state, 0, now)
        commit = await self.store.commit(
            sid,
            0,
            result.state.to_json(),
            events,
            action_id=None,
            ttl=self.config.session_ttl,
            now=now,
        )
        if commit.outcome != "ok":  # pragma: no cover - a 144-bit token collided
            raise StoreUnavailable("could not create the session")
        self._remember(sid, commit.rev, commit.seq, result.state)
        self.metrics.sessions.labels("expired" if hello.session else "new").inc()
        self.analytics.add(sid, result.events)
        self.spawn(self.run_effects(sid, result.effects))
        return Opened(sid, resumed=False, expired=hello.session is not None)

    # -- applying --------------------------------------------------------------------------
    async def apply(self, sid: str, event: m.Event, action_id: str | None) -> Applied:
        """Apply one shopper action, stored before this returns."""
        return await self.advance(sid, lambda _state: event, action_id)

    async def advance(
        self,
        sid: str,
        decide: Callable[[m.State], m.Event | None],
        action_id: str | None,
        extra: tuple[dict[str, Any], ...] = (),
    ) -> Applied:
        """Load (or take from the cache), step, commit; on a conflict, re-read and re-apply.

        The last state this process committed for a session is cached, so a click is usually
        one round trip (the commit); a stale cache shows up as a conflict and costs a re-read.
        """
        await self._locks(sid)
        try:
            cached = self._cache.get(sid)
            for _ in range(MAX_CONFLICT_RETRIES):
                if cached is not None:
                    rev, seq, state = cached
                    cached = None  # trusted once: a retry re-reads
                    from_cache = True
                else:
                    record = await self.store.load(sid, action_id)
                    if record is None:
                        self._forget(sid)
                        raise SessionGone(sid)
                    if record.applied:
                        return Applied("duplicate", record.seq)
                    rev, seq, state = record.rev, record.seq, m.State.from_json(record.state)
                    from_cache = False
                event = decide(state)
                if event is None:
                    if from_cache:
                        continue  # another box may have moved the session on: read it
                    return Applied("ok", seq)
                now = self.clock()
                if event is KEEP:
                    result = m.Result(state)
                else:
                    project = await self.flows.get(state.version)
                    result = step(project, state, event, now)
                if result.error is not None:
                    if from_cache:
                        continue  # decide on the stored state (a retry may be a duplicate)
                    return Applied("error", seq, result.error)
                events = transcript(result, state, seq, now, extra)
                commit = await self.store.commit(
                    sid,
                    rev,
                    result.state.to_json(),
                    events,
                    action_id=action_id,
                    ttl=self.config.session_ttl,
                    now=now,
                )
                if commit.outcome == "conflict":
                    self._forget(sid)
                    continue
                if commit.outcome == "missing":
                    self._forget(sid)
                    raise SessionGone(sid)
                if commit.outcome == "duplicate":
                    return Applied("duplicate", commit.seq)
                self._remember(sid, commit.rev, commit.seq, result.state)
                self.analytics.add(sid, result.events)
                return Applied("ok", commit.seq, effects=result.effects, events=tuple(events))
            raise StoreUnavailable("the session is too busy; try again")
        except StoreUnavailable:
            self._forget(sid)
            raise
        finally:
            self._locks.release(sid)

    def left(self, sid: str) -> None:
        """The last socket of a session on this process closed: if the conversation was still
        open, count it as abandoned (it may yet resume, which analytics then sees too)."""
        cached = self._cache.get(sid)
        if cached is not None and cached[2].waiting not in ("ended", "agent"):
            state = cached[2]
            self.analytics.add(
                sid,
                [
                    {
                        "type": "session_abandoned",
                        "at": self.clock(),
                        "flow": state.flow,
                        "step": state.step,
                    }
                ],
            )

    def _remember(self, sid: str, rev: int, seq: int, state: m.State) -> None:
        self._cache[sid] = (rev, seq, state)
        self._cache.move_to_end(sid)
        while len(self._cache) > CACHE_SESSIONS:
            self._cache.popitem(last=False)

    def _forget(self, sid: str) -> None:
        self._cache.pop(sid, None)

    # -- effects ---------------------------------------------------------------------------
    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run_effects(self, sid: str, effects: tuple[m.Effect, ...]) -> None:
        """Run what the engine asked for; feed each outcome back as an event."""
        queue = list(effects)
        while queue:
            effect = queue.pop(0)
            try:
                applied = await self._run_effect(sid, effect)
            except (StoreUnavailable, SessionGone) as exc:
                log.warning("effect %s for a session not applied: %s", type(effect).__name__, exc)
                return
            except Exception:
                log.exception("effect %s failed", type(effect).__name__)
                return
            if applied is not None:
                queue.extend(applied.effects)

    async def _run_effect(self, sid: str, effect: m.Effect) -> Applied | None:
        if isinstance(effect, m.CallAction):
            outcome = await perform(effect, self.backend, self.today())
            if effect.action == "tickets.create" and outcome.outcome == "ok" and self.handoffs:
                await self.handoffs.ticket_created(sid, effect.args, outcome.data)
            return await self.advance(
                sid,
                lambda s: (
                    outcome if s.waiting == "action" and s.pending == effect.call_id else None
                ),
                None,
            )
        if isinstance(effect, m.RequestHandoff):
            if self.handoffs is None:
                return await self.no_agent(sid, effect.queue, "no_agent")
            return await self.handoffs.request(sid, effect)
        if isinstance(effect, m.CancelHandoff) and self.handoffs is not None:
            await self.handoffs.cancelled_by_shopper(sid)
        return None  # ForwardToAgent: the shopper's text is in the transcript agents read

    async def no_agent(self, sid: str, queue: str, reason: str) -> Applied:
        """Tell the shopper nobody is available; the flow's offline exit (leave a message)."""
        notice = {"type": "handoff", "status": "offline", "queue": queue, "reason": reason}
        return await self.advance(
            sid,
            lambda s: m.HandoffUpdate("offline") if s.waiting == "agent" else None,
            None,
            extra=(notice,),
        )

    async def append(self, sid: str, events: list[dict[str, Any]]) -> Applied:
        """Store events (an agent's message, a handoff notice) without running the engine."""
        return await self.advance(sid, lambda _s: KEEP, None, extra=tuple(events))

    async def _settle(self, sid: str, decide: Callable[[m.State], m.Event | None]) -> None:
        try:
            applied = await self.advance(sid, decide, None)
            await self.run_effects(sid, applied.effects)
        except (StoreUnavailable, SessionGone) as exc:
            log.warning("could not settle a session: %s", exc)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _context_changed(stored: dict[str, Any], given: dict[str, Any]) -> bool:
    """A resuming page may bring a login or a new page; an empty hello changes nothing."""
    if not any(given.values()):
        return False
    return any(given.get(k) != stored.get(k) for k in ("shopper", "page", "context"))


def _interrupted(state: m.State) -> m.Event | None:
    if state.waiting != "action" or state.pending is None:
        return None
    return m.ActionResult(state.pending, "error", {"reason": "interrupted"})
