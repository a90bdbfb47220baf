"""The live-agent queue at work: routing a handoff, claiming, replies, close, hand back,
transfer, queue timeouts and auto-assignment. The shell around the store's atomic transitions.

Every change the shopper must see is a stored transcript event (`handoff` notices, agent
messages), and every outcome the flow can branch on goes to the engine as `HandoffUpdate`.
No chat is left without an owner or a ticket: with nobody online, out of hours, or nobody
claiming in time, the engine's offline/timeout exit runs (the shipped flow takes a message).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ..engine import model as m
from ..handoff import packet as packets
from ..handoff.accounts import Account
from ..handoff.config import HandoffConfig
from ..handoff.routing import is_open, route, score
from ..store.base import HandoffStore, Store
from .sessions import Applied, SessionService
from .webhooks import Webhooks
from .wire import stop_task

log = logging.getLogger("flowengine.handoffs")

ONLINE_WINDOW = 30.0


class NotYours(Exception):
    """The agent does not hold this chat (any more)."""


class HandoffService:
    def __init__(
        self,
        store: Store,
        sessions: SessionService,
        config: HandoffConfig,
        webhooks: Webhooks,
        ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.hstore: HandoffStore = store  # type: ignore[assignment]
        self.sessions = sessions
        self.config = config
        self.webhooks = webhooks
        self.ttl = ttl
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    # -- from the engine -------------------------------------------------------------------
    async def request(self, sid: str, effect: m.RequestHandoff) -> Applied | None:
        team, priority = route(
            self.config, effect.flow, effect.reason, effect.queue, effect.priority
        )
        now = self.clock()
        if not is_open(self.config, now):
            return await self.sessions.no_agent(sid, team, "closed")
        if not await self._agents_for(team, now):
            return await self.sessions.no_agent(sid, team, "no_agent")
        record = {
            "session": sid,
            "team": team,
            "priority": priority,
            "reason": effect.reason,
            "flow": effect.flow,
            "step": effect.step,
            "created_at": now,
            "queued_at": now,
        }
        if not await self.hstore.put_handoff(sid, record, score(priority, now), self.ttl):
            return None  # one is already open
        position = await self._position(team, sid)
        await self.sessions.append(
            sid, [{"type": "handoff", "status": "queued", "queue": team, "position": position}]
        )
        await self.webhooks.emit("handoff.created", await self.packet(sid))
        if self.config.mode == "auto":
            await self.assign_waiting(team)
        return None

    async def cancelled_by_shopper(self, sid: str) -> None:
        record = await self.hstore.transition(
            sid,
            ("queued", "assigned"),
            {"status": "closed", "outcome": "cancelled", "closed_at": self.clock()},
            None,
            self.ttl,
        )
        if record is not None:
            await self.sessions.append(
                sid, [{"type": "handoff", "status": "closed", "by": "shopper"}]
            )

    async def ticket_created(self, sid: str, args: dict[str, Any], data: Any) -> None:
        await self.webhooks.emit(
            "ticket.created", {"session": sid, "ticket": data, "request": args}
        )

    # -- agents ----------------------------------------------------------------------------
    async def claim(self, agent: Account, sid: str) -> dict[str, Any] | None:
        record = await self.hstore.get_handoff(sid)
        if record is None or (record["team"] not in agent.teams and agent.role != "admin"):
            return None
        record = await self.hstore.transition(
            sid,
            ("queued",),
            {
                "status": "assigned",
                "agent": agent.username,
                "agent_name": agent.name,
                "assigned_at": self.clock(),
            },
            None,
            self.ttl,
        )
        if record is None:
            return None  # somebody else was faster
        notice = {"type": "handoff", "status": "assigned", "agent": agent.name}
        await self.sessions.advance(
            sid,
            lambda s: m.HandoffUpdate("assigned") if s.waiting == "agent" else None,
            None,
            extra=(notice,),
        )
        await self.webhooks.emit(
            "handoff.assigned", {**await self.packet(sid), "agent": agent.public()}
        )
        return record

    async def _mine(self, agent: Account, sid: str) -> dict[str, Any]:
        record = await self.hstore.get_handoff(sid)
        if (
            record is None
            or record["status"] != "assigned"
            or record.get("agent") != agent.username
        ):
            raise NotYours(sid)
        return record

    async def reply(self, agent: Account, sid: str, text: str) -> Applied:
        await self._mine(agent, sid)
        return await self.sessions.append(
            sid,
            [
                {
                    "type": "message",
                    "from": "agent",
                    "agent": agent.name,
                    "text": text,
                    "options": [],
                    "input": None,
                }
            ],
        )

    async def note(self, agent: Account, sid: str, text: str) -> dict[str, Any]:
        await self._mine(agent, sid)
        note = {"agent": agent.name, "text": text, "at": self.clock()}
        await self.hstore.add_note(sid, note, self.ttl)
        await self.hstore.signal(sid, {"note": note})
        return note

    async def close(self, agent: Account, sid: str, *, hand_back: bool) -> None:
        await self._mine(agent, sid)
        outcome = "handed_back" if hand_back else "closed"
        record = await self.hstore.transition(
            sid,
            ("assigned",),
            {"status": "closed", "outcome": outcome, "closed_at": self.clock()},
            None,
            self.ttl,
        )
        if record is None:
            raise NotYours(sid)
        notice = {"type": "handoff", "status": outcome, "agent": agent.name}
        await self.sessions.advance(
            sid,
            lambda s: m.HandoffUpdate(outcome) if s.waiting == "agent" else None,  # type: ignore[arg-type]
            None,
            extra=(notice,),
        )
        if not hand_back:
            await self.webhooks.emit(
                "conversation.closed", {**await self.packet(sid), "agent": agent.public()}
            )

    async def transfer(self, agent: Account, sid: str, team: str) -> None:
        if team not in self.config.teams:
            raise ValueError(f"unknown team '{team}'")
        record = await self._mine(agent, sid)
        moved = await self.hstore.transition(
            sid,
            ("assigned",),
            {
                "status": "queued",
                "team": team,
                "agent": None,
                "agent_name": None,
                "transferred_by": agent.name,
                "queued_at": self.clock(),
            },
            score(record["priority"], record["created_at"]),
            self.ttl,
        )
        if moved is None:
            raise NotYours(sid)
        await self.sessions.append(
            sid,
            [
                {
                    "type": "handoff",
                    "status": "queued",
                    "queue": team,
                    "position": await self._position(team, sid),
                }
            ],
        )
        if self.config.mode == "auto":
            await self.assign_waiting(team)

    # -- the queue over time ---------------------------------------------------------------
    async def _agents_for(self, team: str, now: float) -> dict[str, dict[str, Any]]:
        online = await self.hstore.online(now, ONLINE_WINDOW)
        return {
            a: i
            for a, i in online.items()
            if i.get("status", "online") == "online" and team in i.get("teams", ())
        }

    async def _position(self, team: str, sid: str) -> int:
        waiting = await self.hstore.queue(team)
        return next((i + 1 for i, r in enumerate(waiting) if r["session"] == sid), 0)

    async def assign_waiting(self, team: str) -> None:
        """Auto mode: hand waiting chats to online agents under capacity, least loaded first."""
        now = self.clock()
        agents = await self._agents_for(team, now)
        if not agents:
            return
        loads = {a: len(await self.hstore.agent_chats(a)) for a in agents}
        for record in await self.hstore.queue(team):
            free = [
                a for a in agents if loads[a] < int(agents[a].get("capacity", self.config.capacity))
            ]
            if not free:
                return
            chosen = min(free, key=lambda a: loads[a])
            info = agents[chosen]
            account = Account(
                chosen,
                str(info.get("name", chosen)),
                str(info.get("role", "agent")),
                tuple(info.get("teams", ())),
                "",
            )
            if await self.claim(account, record["session"]) is not None:
                loads[chosen] += 1

    async def sweep(self) -> None:
        """Time out chats nobody claimed; in auto mode, hand out what waits."""
        now = self.clock()
        for team in self.config.teams:
            for record in await self.hstore.queue(team):
                # Measured from when it (re)entered this queue: a transfer starts a new wait.
                if now - record.get("queued_at", record["created_at"]) < self.config.queue_timeout:
                    continue
                done = await self.hstore.transition(
                    record["session"],
                    ("queued",),
                    {"status": "closed", "outcome": "timeout", "closed_at": now},
                    None,
                    self.ttl,
                )
                if done is None:
                    continue
                notice = {
                    "type": "handoff",
                    "status": "offline",
                    "queue": team,
                    "reason": "timeout",
                }
                await self.sessions.advance(
                    record["session"],
                    lambda s: m.HandoffUpdate("timeout") if s.waiting == "agent" else None,
                    None,
                    extra=(notice,),
                )
            if self.config.mode == "auto":
                await self.assign_waiting(team)

    async def run(self, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.sweep()
            except Exception as exc:  # the store may be down; the next sweep retries
                log.debug("handoff sweep: %s", exc)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        await stop_task(self._task)

    # -- what an agent sees ------------------------------------------------------------------
    async def packet(self, sid: str) -> dict[str, Any]:
        record = await self.store.load(sid)
        handoff = await self.hstore.get_handoff(sid) or {}
        if record is None:
            return {"session": sid, "missing": True}
        state = m.State.from_json(record.state)
        transcript = await self.store.replay(sid, 0, 5000)
        return packets.build(
            sid,
            state,
            handoff.get("team", ""),
            handoff.get("priority", "normal"),
            handoff.get("reason"),
            transcript,
            handoff.get("created_at", self.clock()),
        )
