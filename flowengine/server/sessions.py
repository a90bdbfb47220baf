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
from typing import Any, Literal

from .. import frames
from ..actions.declared import DeclaredActions
from ..effects import ActionPort, Decide, EffectRunner, HandoffPort
from ..engine import model as m
from ..engine.step import start, step
from ..language import ir
from ..store import SessionRecord, Store, StoreUnavailable
from .analytics import Analytics, abandoned
from .config import ServerConfig
from .flows import FlowRegistry
from .metrics import Metrics
from .protocol import Hello
from .tasks import Tasks

log = logging.getLogger("flowengine.sessions")

MAX_CONFLICT_RETRIES = 20
ACTION_GRACE = 65.0  # an action still pending after this long was interrupted by a crash
CACHE_SESSIONS = 10_000


class SessionGone(Exception):
    """The session expired or never existed."""


class TooManySessions(Exception):
    """This client address has started too many sessions lately."""


@dataclass(frozen=True)
class Opened:
    sid: str
    resumed: bool
    expired: bool
    seq: int = 0  # the stored seq when it was opened


@dataclass(frozen=True)
class Applied:
    outcome: Literal["ok", "duplicate", "error"]
    seq: int = 0
    error: m.EngineError | None = None
    effects: tuple[m.Effect, ...] = ()
    events: tuple[frames.Frame, ...] = ()  # what was stored, to send without re-reading


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
        actions: ActionPort,
        config: ServerConfig,
        metrics: Metrics,
        analytics: Analytics,
        tasks: Tasks,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.flows = flows
        self.actions = actions
        self.config = config
        self.metrics = metrics
        self.analytics = analytics
        self.tasks = tasks
        self.clock = clock
        self._locks = _Locks()
        self._cache: OrderedDict[str, tuple[int, int, m.State]] = OrderedDict()
        self._runner: EffectRunner | None = None
        # The project's own actions, as the version each session runs declares them.
        self.declared = DeclaredActions(self.project_of)

    def use_handoffs(self, handoffs: HandoffPort) -> None:
        """Wire the handoff side (it needs this service too, so it comes second)."""
        self._runner = EffectRunner(self.actions, handoffs, self.declared)

    async def project_of(self, sid: str) -> ir.Project:
        """The flow version session `sid` is pinned to (from the cache, else the store)."""
        cached = self._cache.get(sid)
        if cached is not None:
            version = cached[2].version
        else:
            record = await self.store.load(sid)
            if record is None:
                raise SessionGone(sid)
            version = m.State.from_json(record.state).version
        return await self.flows.get(version)

    # -- opening ---------------------------------------------------------------------------
    async def open(self, hello: Hello, may_start: Callable[[], bool] = lambda: True) -> Opened:
        """Resume the hello's session, or start a new one if `may_start()` allows (a budget of
        new sessions per client address); else `TooManySessions`, and nothing is stored."""
        if hello.session is not None:
            record = await self.store.load(hello.session)
            if record is not None:
                self.metrics.sessions.labels("resumed").inc()
                state = m.State.from_json(record.state)
                if state.waiting == "action" and self.clock() - record.updated_at > ACTION_GRACE:
                    # The process running the action died: take the flow's error exit.
                    self.settle(hello.session, _interrupted)
                seq = record.seq
                if _context_changed(state.context, hello.context):
                    context = hello.context
                    changed = await self.advance(
                        hello.session, lambda _s: m.SetContext(context), None
                    )
                    seq = max(seq, changed.seq)
                return Opened(hello.session, resumed=True, expired=False, seq=seq)
        if not may_start():
            raise TooManySessions()
        project = self.flows.current
        assert project is not None, "flows are loaded at startup"
        await self.flows.publish(unless_recent=True)
        now = self.clock()
        result = start(project, now=now, locale=hello.locale, context=hello.context)
        sid = secrets.token_urlsafe(18)
        events = frames.number(frames.transcript(result, result.state), 0, now)
        commit = await self.store.commit(
            sid,
            0,
            result.state.to_json(),
            events,
            action_id=None,
            ttl=min(self.config.session_ttl, self.config.untouched_session_ttl),
            now=now,
        )
        if commit.outcome != "ok":  # pragma: no cover - a 144-bit token collided
            raise StoreUnavailable("could not create the session")
        self._remember(sid, commit.rev, commit.seq, result.state)
        self.metrics.sessions.labels("expired" if hello.session else "new").inc()
        self.analytics.add(sid, result.events)
        self.run_effects(sid, result.effects)
        return Opened(sid, resumed=False, expired=hello.session is not None, seq=commit.seq)

    # -- applying --------------------------------------------------------------------------
    async def apply(self, sid: str, event: m.Event, action_id: str | None) -> Applied:
        """Apply one shopper action, stored before this returns."""
        return await self.advance(sid, lambda _state: event, action_id)

    async def append(self, sid: str, events: list[frames.Frame]) -> Applied:
        """Store transcript events (an agent's message, a notice) without running the engine."""
        return await self.advance(sid, None, None, extra=tuple(events))

    async def advance(
        self,
        sid: str,
        decide: Decide | None,
        action_id: str | None,
        extra: tuple[frames.Frame, ...] = (),
        known: SessionRecord | None = None,
    ) -> Applied:
        """Load (or take from the cache), step, commit; on a conflict, re-read and re-apply.

        `decide` picks the event from the current state (None from it: nothing to do); without
        `decide` only `extra` is stored. The last state this process committed for a session
        is cached, so a click is one round trip (the commit); a stale cache shows up as a
        conflict and costs a re-read. `known` is a record the caller has just read (saves the
        read when this process has no cached state).
        """
        await self._locks(sid)
        try:
            cached = self._cache.get(sid)
            if known is not None and (cached is None or cached[0] < known.rev):
                cached = (known.rev, known.seq, m.State.from_json(known.state))
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
                now = self.clock()
                if decide is None:
                    result = m.Result(state)
                else:
                    event = decide(state)
                    if event is None:
                        if from_cache:
                            continue  # another box may have moved the session on: read it
                        return Applied("ok", seq)
                    project = await self.flows.get(state.version)
                    result = step(project, state, event, now)
                if result.error is not None:
                    if from_cache:
                        continue  # decide on the stored state (a retry may be a duplicate)
                    return Applied("error", seq, result.error)
                events = frames.number(frames.transcript(result, state, extra), seq, now)
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

    async def left(self, sid: str) -> None:
        """The last shopper socket of a session on this process closed: if the conversation was
        still open, count it as abandoned (it may yet resume, which analytics then sees too).
        Waiting in line for a person counts (nobody has answered yet); talking to one does not
        (read from the store: another instance's agent may have taken the chat meanwhile)."""
        cached = self._cache.get(sid)
        state = cached[2] if cached is not None else None
        if state is not None and state.waiting == "agent":
            try:
                record = await self.store.load(sid)
            except StoreUnavailable:
                return
            state = m.State.from_json(record.state) if record is not None else None
            if (
                state is not None
                and state.waiting == "agent"
                and (state.handoff is None or state.handoff.assigned)
            ):
                return
        if state is None or state.waiting == "ended":
            return
        locales = self.flows.current.settings.locales if self.flows.current else ("en",)
        self.analytics.add(sid, [abandoned(state, self.clock(), locales)])

    def _remember(self, sid: str, rev: int, seq: int, state: m.State) -> None:
        self._cache[sid] = (rev, seq, state)
        self._cache.move_to_end(sid)
        while len(self._cache) > CACHE_SESSIONS:
            self._cache.popitem(last=False)

    def _forget(self, sid: str) -> None:
        self._cache.pop(sid, None)

    # -- effects ---------------------------------------------------------------------------
    def run_effects(
        self, sid: str, effects: tuple[m.Effect, ...], address: str | None = None
    ) -> None:
        """Run what the engine asked for, in the background, after the action is stored.
        `address`: the client whose action it was (the order-check throttle counts by it)."""
        if effects:
            self.tasks.spawn(self._run(sid, effects, address))

    def settle(self, sid: str, decide: Decide) -> None:
        """Apply `decide` in the background, then run the effects it causes."""
        self.tasks.spawn(self._settle(sid, decide))

    async def _settle(self, sid: str, decide: Decide) -> None:
        try:
            applied = await self.advance(sid, decide, None)
        except (StoreUnavailable, SessionGone) as exc:
            log.warning("could not settle a session: %s", exc)
            return
        await self._run(sid, applied.effects)

    async def _run(
        self, sid: str, effects: tuple[m.Effect, ...], address: str | None = None
    ) -> None:
        assert self._runner is not None, "use_handoffs() wires the runner"

        async def feed(decide: Decide) -> tuple[m.Effect, ...]:
            return (await self.advance(sid, decide, None)).effects

        try:
            await self._runner.run(sid, effects, feed, address)
        except (StoreUnavailable, SessionGone) as exc:
            log.warning("effects for a session not applied: %s", exc)
        except Exception:
            log.exception("effects for a session failed")


def _context_changed(stored: dict[str, Any], given: dict[str, Any]) -> bool:
    """A resuming page may bring a login or a new page; an empty hello changes nothing."""
    if not any(given.values()):
        return False
    return any(given.get(k) != stored.get(k) for k in ("shopper", "page", "context"))


def _interrupted(state: m.State) -> m.Event | None:
    if state.waiting != "action" or state.pending is None:
        return None
    return m.ActionResult(state.pending, "error", {"reason": "interrupted"})
