"""The live-agent queue at work: routing a handoff, logging agents in, claiming, replies, notes,
close, hand back, transfer, queue timeouts and auto-assignment. The shell around the store's
atomic transitions; the agent socket and the effect runner reach the queue only through here.

Every change the shopper must see is a stored transcript event (`handoff` notices, agent
messages), and every outcome the flow can branch on goes to the engine as `HandoffUpdate`.
No chat is left without an owner or a ticket: with nobody online, out of hours, or nobody
claiming in time, the engine's offline/timeout exit runs (the shipped flow takes a message).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any, Literal

from .. import frames
from ..cancellation import raise_if_cancelled
from ..engine import model as m
from ..server.analytics import agent_replied
from ..server.sessions import Applied, SessionGone, SessionService
from ..server.tasks import stop_task
from ..store import ChatView, Store
from . import packet as packets
from .accounts import Account, AccountBook
from .config import HandoffConfig
from .passwords import hash_password, verify_password
from .routing import is_open, opening_hours, route, score
from .webhooks import Webhooks

log = logging.getLogger("flowengine.handoffs")

ONLINE_WINDOW = 30.0
TOKEN_TTL = 12 * 3600.0
# Console logins: after this many failures within LOGIN_WINDOW seconds (of the first one), for a
# username or from an address, further attempts get 429 until the window ends.
LOGIN_FAILURES_PER_USER = 5
LOGIN_FAILURES_PER_ADDRESS = 20
LOGIN_WINDOW = 300.0
PREVIEW = 140  # characters of the shopper's last message the queue shows
TRANSCRIPT_LIMIT = 5000  # events of a transcript an agent (and a webhook) gets at most

Outcome = Literal["assigned", "offline", "timeout", "closed", "handed_back"]


class Throttled(Exception):
    """Too many failed logins for this username or from this address; try again later."""


class NotYours(Exception):
    """The agent does not hold this chat (any more)."""


class NotAllowed(Exception):
    """The chat is not in the agent's teams."""


class NotAvailable(Exception):
    """The chat is no longer waiting: another agent took it, or it left the queue."""


class NobodyOnline(Exception):
    """A transfer to a team with nobody online (it would wait for nobody): refused."""


class NoTicket(Exception):
    """No ticket has this key."""


_DUMMY: list[str] = []


async def _dummy_hash() -> str:
    """A hash no password matches, made once (as slow to check as a real one)."""
    if not _DUMMY:
        _DUMMY.append(await asyncio.to_thread(hash_password, secrets.token_urlsafe(16)))
    return _DUMMY[0]


def logins(username: str) -> str:
    """The signal channel of `username`'s console sockets (a logout reaches every instance)."""
    return "@agent:" + username


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _serving(online: dict[str, dict[str, Any]], team: str) -> bool:
    """Whether anyone of `online` takes `team`'s chats (admins take every team's)."""
    return any(i.get("role") == "admin" or team in i.get("teams", ()) for i in online.values())


def _waiting_for_agent(outcome: Outcome, agent: str) -> Callable[[m.State], m.Event | None]:
    """Tell the engine about the handoff, if the conversation is still waiting for a person."""
    return lambda s: m.HandoffUpdate(outcome, agent=agent) if s.waiting == "agent" else None


class HandoffService:
    def __init__(
        self,
        store: Store,
        sessions: SessionService,
        config: HandoffConfig,
        accounts: AccountBook,
        webhooks: Webhooks,
        ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.config = config
        self.accounts = accounts
        self.webhooks = webhooks
        self.ttl = ttl
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    # -- the effect runner's port (flowengine.effects.HandoffPort) -------------------------
    async def request(self, sid: str, effect: m.RequestHandoff) -> tuple[m.Effect, ...]:
        # Routing goes by the flow the shopper chose (track_order), not the linked flow that
        # asked (identify_order); the team's fallback chain is tried while nobody is online.
        chosen = effect.top or effect.flow
        routed, priority = route(self.config, chosen, effect.reason, effect.queue, effect.priority)
        now = self.clock()
        if not is_open(self.config, now):
            return await self._offline(sid, routed, "closed")
        team = await self._staffed(routed, now)
        if team is None:
            return await self._offline(sid, routed, "no_agent")
        record = {
            "session": sid,
            "team": team,
            "priority": priority,
            "reason": effect.reason,
            "flow": chosen,
            "step": effect.step if effect.flow == chosen else f"{effect.flow}.{effect.step}",
            "created_at": now,
            "queued_at": now,
            **await self._about(sid),
        }
        if team != routed:
            record["routed_to"] = routed
        if not await self.store.put_handoff(sid, record, score(priority, now), self.ttl):
            return ()  # one is already open
        position = await self._line_moved(team, joined=sid)
        await self.sessions.append(sid, [frames.handoff_queued(team, position)])
        await self._emit_packet("handoff.created", sid)
        if self.config.mode == "auto":
            await self.assign_waiting(team)
        return ()

    async def _staffed(self, team: str, now: float) -> str | None:
        """The first team of `team`'s fallback chain with someone online; None: nobody."""
        online = await self._online(now)
        return next((t for t in self.config.chain(team) if _serving(online, t)), None)

    async def _about(self, sid: str) -> dict[str, Any]:
        """What the queue shows of a waiting shopper: name or email, and what they last said."""
        record = await self.store.load(sid)
        if record is None:
            return {}
        state = m.State.from_json(record.state)
        who = state.context.get("shopper") or {}
        shopper = {k: str(who[k])[:200] for k in ("name", "email") if who.get(k)}
        if "email" not in shopper and isinstance(state.vars.get("email"), str):
            shopper["email"] = state.vars["email"][:200]
        tail = await self.store.replay(sid, max(0, record.seq - 20), 20)
        said = [e["text"] for e in tail if e.get("type") == "message" and e["from"] == "shopper"]
        return {"shopper": shopper, "preview": said[-1][:PREVIEW] if said else None}

    async def cancel(self, sid: str) -> None:
        """The shopper left the queue or the chat (started over)."""
        record = await self.store.transition(
            sid,
            ("queued", "assigned"),
            {"status": "closed", "outcome": "cancelled", "closed_at": self.clock()},
            None,
            self.ttl,
        )
        if record is not None:
            await self.sessions.append(sid, [frames.handoff_closed("shopper")])
            if record.get("agent") is None:  # it was waiting (a held chat has its agent)
                await self._line_moved(record["team"], left=record.get("score"))

    async def forward(self, sid: str, effect: m.ForwardToAgent) -> None:
        """The shopper wrote to the person: the text is in the transcript agents follow. While
        nobody has the chat yet, the queue's preview shows it (a held chat's agent reads the
        transcript: no write for each message of a live chat)."""
        await self.store.transition(
            sid, ("queued",), {"preview": effect.text[:PREVIEW]}, None, self.ttl
        )

    async def emit(self, event: str, data: dict[str, Any]) -> None:
        if event == "ticket.created":
            await self.keep_ticket(data["session"], data.get("ticket") or {}, data["request"])
        await self.webhooks.emit(event, data)

    async def _offline(
        self, sid: str, team: str, reason: frames.OfflineReason
    ) -> tuple[m.Effect, ...]:
        """Tell the shopper nobody is available; the flow's offline exit (leave a message), which
        may say the opening hours (`handoff.hours`, in the shopper's language)."""
        now = self.clock()

        def decide(s: m.State) -> m.Event | None:
            if s.waiting != "agent":
                return None
            outcome: Outcome = "timeout" if reason == "timeout" else "offline"
            return m.HandoffUpdate(outcome, opening_hours(self.config, s.locale, now))

        applied = await self.sessions.advance(
            sid, decide, None, extra=(frames.handoff_offline(team, reason),)
        )
        return applied.effects

    # -- agents: logging in --------------------------------------------------------------
    async def login(self, username: str, password: str, address: str) -> tuple[str, Account] | None:
        """A new console token for a right username and password; None otherwise. Raises
        `Throttled` after too many recent failures for that username or from that address
        (counted in the store, so every instance agrees; successes do not count)."""
        keys = [f"user:{username}", f"addr:{address}"]
        # Counted as a failure before the password is checked, and taken back if it is right:
        # a hundred guesses at once get counts 1..100, not a hundred reads of "under the limit".
        by_user, by_address = await self.store.add_failure(keys, LOGIN_WINDOW)
        if by_user > LOGIN_FAILURES_PER_USER or by_address > LOGIN_FAILURES_PER_ADDRESS:
            raise Throttled(username)
        account = await asyncio.to_thread(self.accounts.get, username)
        # An unknown username costs the same KDF run as a wrong password: the answer's timing
        # does not tell which usernames exist.
        stored = account.password_hash if account is not None else await _dummy_hash()
        ok = await asyncio.to_thread(verify_password, password, stored) and account is not None
        if not ok or account is None:
            return None
        await self.store.forgive(keys)
        token = secrets.token_urlsafe(32)
        await self.store.put_token(token_hash(token), account.username, TOKEN_TTL)
        return token, account

    async def logout(self, token: str) -> None:
        """End the login: the token stops working, and every console socket opened with it, on
        every instance, is closed at once (a signal; the sockets' own check is the backstop)."""
        username = await self.store.get_token(token_hash(token))
        await self.store.del_token(token_hash(token))
        if username is not None:
            await self.store.signal(logins(username), {"logout": token_hash(token)})

    async def account(self, username: str) -> Account | None:
        return await asyncio.to_thread(self.accounts.get, username)

    async def agent_for(self, token: object) -> Account | None:
        """The account a console token belongs to, if it is still valid."""
        if not isinstance(token, str) or not 20 <= len(token) <= 100:
            return None
        username = await self.store.get_token(token_hash(token))
        if username is None:
            return None
        return await asyncio.to_thread(self.accounts.get, username)

    # -- agents: the work ----------------------------------------------------------------
    def _teams(self, agent: Account) -> tuple[str, ...] | None:
        """The teams whose chats `agent` may take; None: all (admins)."""
        return None if agent.role == "admin" else agent.teams

    async def claim(self, agent: Account, sid: str) -> frames.Frame:
        """Take a waiting chat; exactly one of any number of agents wins. The chat frame."""
        record = await self.store.transition(
            sid,
            ("queued",),
            {
                "status": "assigned",
                "agent": agent.username,
                "agent_name": agent.name,
                "assigned_at": self.clock(),
                "replied_at": None,
            },
            None,
            self.ttl,
            teams=self._teams(agent),
        )
        if record is None:
            # Not waiting any more, or not this agent's team: say which (a read, on failure only).
            current = await self.store.get_handoff(sid)
            teams = self._teams(agent)
            if current is None:
                await self._gone_or(sid, NotAvailable(sid))
            if current is not None and teams is not None and current.get("team") not in teams:
                raise NotAllowed(sid)
            raise NotAvailable(sid)
        # Read what the agent will see first, and step the engine on the state read with it:
        # a claim is three round trips (transition, read, commit), the engine's step included.
        view = await self.store.chat_view(sid, TRANSCRIPT_LIMIT)
        applied = await self.sessions.advance(
            sid,
            _waiting_for_agent("assigned", agent.username),
            None,
            extra=(frames.handoff_assigned(agent.name),),
            known=view.session,
        )
        transcript = [*view.transcript, *applied.events]
        if any(b["seq"] != a["seq"] + 1 for a, b in pairwise(transcript)):
            transcript = await self.store.replay(sid, 0, TRANSCRIPT_LIMIT)  # raced with a click
        chat = frames.chat(
            sid,
            self._packet(sid, ChatView(view.session, transcript, view.notes, record)),
            view.notes,
            record,
        )
        # The rest of the line moves up; off the claim's path (the agent waits for the chat).
        self.sessions.tasks.spawn(self._line_moved(record["team"], left=record.get("score")))
        if self.webhooks.wants("handoff.assigned"):
            packet = chat["packet"]
            await self.webhooks.emit("handoff.assigned", {**packet, "agent": agent.public()})
        return chat

    async def open(self, agent: Account, sid: str) -> frames.Frame:
        """The chat frame for a chat of the agent's teams: packet, notes, handoff record."""
        view = await self.store.chat_view(sid, TRANSCRIPT_LIMIT)
        teams = self._teams(agent)
        if view.handoff is None and view.session is None:
            raise SessionGone(sid)
        if view.handoff is None or (teams is not None and view.handoff["team"] not in teams):
            raise NotAllowed(sid)
        return frames.chat(sid, self._packet(sid, view), view.notes, view.handoff)

    async def _gone_or(self, sid: str, otherwise: Exception) -> None:
        """Raise SessionGone if the shopper's session has expired, else `otherwise`."""
        if await self.store.load(sid) is None:
            raise SessionGone(sid)
        raise otherwise

    async def _mine(self, agent: Account, sid: str) -> dict[str, Any]:
        record = await self.store.get_handoff(sid)
        if record is None:
            await self._gone_or(sid, NotYours(sid))
        if (
            record is None
            or record["status"] != "assigned"
            or record.get("agent") != agent.username
        ):
            raise NotYours(sid)
        return record

    async def reply(self, agent: Account, sid: str, text: str) -> Applied:
        record = await self._mine(agent, sid)
        applied = await self.sessions.append(sid, [frames.agent_message(agent.name, text)])
        if record.get("replied_at") is None:
            await self._first_reply(agent, sid, record)
        return applied

    async def _first_reply(self, agent: Account, sid: str, record: dict[str, Any]) -> None:
        """`agent_replied`: how long the shopper waited for the first word of the agent who has
        the chat (each agent who takes it over counts from their own assignment)."""
        now = self.clock()
        marked = await self.store.transition(
            sid, ("assigned",), {"replied_at": now}, None, self.ttl, agent=agent.username
        )
        session = await self.store.load(sid)
        if marked is None or session is None:
            return
        state = m.State.from_json(session.state)
        after = now - float(record.get("assigned_at") or now)
        current = self.sessions.flows.current
        locales = current.settings.locales if current else ("en",)
        team = str(record.get("team", ""))
        event = agent_replied(state, team, agent.username, after, now, locales)
        self.sessions.analytics.add(sid, [event])

    async def note(self, agent: Account, sid: str, text: str) -> dict[str, Any]:
        await self._mine(agent, sid)
        note = {"agent": agent.name, "text": text, "at": self.clock()}
        await self.store.add_note(sid, note, self.ttl)
        await self.store.signal(sid, {"note": note})
        return note

    async def agent_typing(self, agent: Account, sid: str) -> None:
        """Only the agent who has the chat makes the shopper see "typing"."""
        await self._mine(agent, sid)
        await self.store.signal(sid, {"typing": "agent", "name": agent.name})

    async def shopper_typing(self, sid: str) -> None:
        await self.store.signal(sid, {"typing": "shopper"})

    async def close(self, agent: Account, sid: str, *, hand_back: bool) -> None:
        await self._mine(agent, sid)
        outcome: Outcome = "handed_back" if hand_back else "closed"
        record = await self.store.transition(
            sid,
            ("assigned",),
            {"status": "closed", "outcome": outcome, "closed_at": self.clock()},
            None,
            self.ttl,
            agent=agent.username,
        )
        if record is None:
            raise NotYours(sid)
        notice = (
            frames.handoff_handed_back(agent.name)
            if hand_back
            else frames.handoff_closed("agent", agent.name)
        )
        await self.sessions.advance(
            sid, _waiting_for_agent(outcome, agent.username), None, extra=(notice,)
        )
        if not hand_back:
            await self._emit_packet("conversation.closed", sid, agent=agent.public())

    async def transfer(self, agent: Account, sid: str, team: str) -> None:
        if team not in self.config.teams:
            raise ValueError(f"unknown team '{team}'")
        record = await self._mine(agent, sid)
        if not await self._agents_for(team, self.clock()):
            raise NobodyOnline(f"nobody in '{team}' is online; the chat stays yours")
        moved = await self.store.transition(
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
            agent=agent.username,
        )
        if moved is None:
            raise NotYours(sid)
        position = await self._line_moved(team, joined=sid)
        await self.sessions.append(sid, [frames.handoff_queued(team, position)])
        if self.config.mode == "auto":
            await self.assign_waiting(team)

    async def take_over(self, admin: Account, sid: str, to: Account) -> frames.Frame:
        """An admin gives a held chat to `to` (themselves: a take over). The shopper is told who
        has it now; the chat frame for `to`. Raises NotAllowed for a non-admin."""
        if admin.role != "admin":
            raise NotAllowed(sid)
        if to.username != admin.username:
            held = await self.store.get_handoff(sid)
            if held is None:
                await self._gone_or(sid, NotYours(sid))
            team = str((held or {}).get("team"))
            if to.role != "admin" and team not in to.teams:
                raise NotAllowed(sid)
            if to.username not in await self._agents_for(team, self.clock()):
                raise NobodyOnline(f"'{to.username}' is not online; the chat stays where it is")
        record = await self.store.transition(
            sid,
            ("assigned",),
            {
                "agent": to.username,
                "agent_name": to.name,
                "assigned_at": self.clock(),
                "replied_at": None,
                "reassigned_by": admin.name,
            },
            None,
            self.ttl,
        )
        if record is None:
            await self._gone_or(sid, NotYours(sid))
        await self.sessions.append(sid, [frames.handoff_assigned(to.name)])
        view = await self.store.chat_view(sid, TRANSCRIPT_LIMIT)
        return frames.chat(sid, self._packet(sid, view), view.notes, view.handoff)

    async def requeue_absent(self) -> None:
        """Chats held by an agent gone longer than the grace go back to the front of their
        queue (an agent removed, or a console closed without a word); the shopper is told."""
        now = self.clock()
        for username, seen in (await self.store.presence()).items():
            if now - seen < self.config.presence_grace:
                continue
            held = await self.store.agent_chats(username)
            if not held:
                # Nothing (left) to requeue: forget them, so neither this sweep nor an admin's
                # queue looks at them every second from now on (a login brings them back).
                await self.store.leave(username)
                continue
            for record in held:
                sid = record["session"]
                moved = await self.store.transition(
                    sid,
                    ("assigned",),
                    {
                        "status": "queued",
                        "agent": None,
                        "agent_name": None,
                        "requeued_from": record.get("agent_name") or username,
                        "queued_at": now,
                    },
                    score(record["priority"], 0),  # the front of its priority
                    self.ttl,
                    agent=username,
                )
                if moved is None:
                    continue
                log.info("requeued chat %s: agent %s gone %.0f s", sid[:6], username, now - seen)
                position = await self._line_moved(moved["team"], joined=sid)
                await self.sessions.append(sid, [frames.handoff_queued(moved["team"], position)])

    # -- the inbox: tickets (left messages, problem reports) ---------------------------------
    async def keep_ticket(self, sid: str, created: dict[str, Any], request: dict[str, Any]) -> None:
        """File a ticket an action created, with the conversation so far, in the inbox."""
        ticket_id = str(created.get("ticket_id", ""))
        key = f"{ticket_id}.{sid[:8]}"  # backends number tickets per process: keep both
        packet = await self.packet(sid)
        # The team the shopper was sent to before nobody could take it, else by the flow.
        asked = [e.get("queue") for e in packet.get("transcript", []) if e.get("type") == "handoff"]
        team = next((q for q in reversed(asked) if q in self.config.teams), None)
        if team is None:
            team = route(self.config, str(packet.get("flow") or ""), None, "", "normal")[0]
        fields = ("kind", "details", "number", "email", "name")
        order = packet.get("order") or {}
        collected = packet.get("collected") or {}
        number = request.get("number") or order.get("number") or collected.get("order_number")
        ticket = {
            "key": key,
            "ticket_id": ticket_id,
            "session": sid,
            "team": team,
            **{k: str(request[k])[:4000] for k in fields if request.get(k) is not None},
            **({"number": str(number)[:64]} if number else {}),
            "status": "open",
            "assignee": None,
            "created_at": self.clock(),
            "packet": packet,
        }
        await self.store.put_ticket(key, ticket)

    def _may_see(self, agent: Account, ticket: dict[str, Any]) -> bool:
        teams = self._teams(agent)
        return teams is None or ticket.get("team") in teams

    async def tickets(
        self, agent: Account, status: str = "open", query: str = ""
    ) -> list[dict[str, Any]]:
        """The inbox as a list (newest first, without packets): `status` open, done or all;
        `query` matches an email, an order number or a ticket id."""
        q = query.strip().lower().lstrip("#")
        out = []
        for t in await self.store.tickets():
            if not self._may_see(agent, t) or (status != "all" and t.get("status") != status):
                continue
            if q and not any(
                q in str(t.get(k) or "").lower() for k in ("email", "number", "ticket_id", "name")
            ):
                continue
            out.append(t)
        return out

    async def ticket(self, agent: Account, key: str) -> dict[str, Any]:
        ticket = await self.store.get_ticket(key)
        if ticket is None:
            raise NoTicket(key)
        if not self._may_see(agent, ticket):
            raise NotAllowed(key)
        return ticket

    async def update_ticket(
        self,
        agent: Account,
        key: str,
        status: str | None,
        assignee: Account | Literal[False] | None,
    ) -> dict[str, Any]:
        """Mark a ticket done or open again, and/or give it to someone who may open it
        (`assignee` None: nobody; False: unchanged)."""
        ticket = await self.ticket(agent, key)
        changes: dict[str, Any] = {"updated_at": self.clock(), "updated_by": agent.username}
        if status is not None:
            changes["status"] = status
            changes["done_at"] = self.clock() if status == "done" else None
        if assignee is not False:
            if assignee is not None and not self._may_see(assignee, ticket):
                raise NotAllowed(key)  # they could not even open it
            changes["assignee"] = assignee.username if assignee is not None else None
        updated = await self.store.update_ticket(key, changes)
        if updated is None:
            raise NoTicket(key)
        return updated

    async def went_away(self, agent: Account, info: dict[str, Any]) -> None:
        """A console closed: the agent stops counting as online now; the grace before their
        chats are requeued counts from here."""
        await self.store.heartbeat(agent.username, {**info, "status": "gone"}, self.clock())

    async def snapshot(self, agent: Account, info: dict[str, Any]) -> frames.Frame:
        """Mark the agent present and say what waits in their teams and what is theirs."""
        now = self.clock()
        await self.store.heartbeat(agent.username, info, now)
        teams = self.config.teams if agent.role == "admin" else agent.teams
        waiting = []
        for team in teams:
            for i, r in enumerate(await self.store.queue(team)):
                waiting.append({**r, "position": i + 1, "waiting": now - r["created_at"]})
        mine = await self.store.agent_chats(agent.username)
        if agent.role != "admin":
            return frames.queue(waiting, mine, now)
        others = []
        for username in await self.store.presence():
            if username != agent.username:
                others.extend(await self.store.agent_chats(username))
        return frames.queue(waiting, mine, now, others)

    # -- the queue over time ---------------------------------------------------------------
    async def _online(self, now: float) -> dict[str, dict[str, Any]]:
        """Agents online now (a console connected, status not away), with what they said of
        themselves (teams, role, capacity)."""
        online = await self.store.online(now, ONLINE_WINDOW)
        return {a: i for a, i in online.items() if i.get("status", "online") == "online"}

    async def _agents_for(self, team: str, now: float) -> dict[str, dict[str, Any]]:
        online = await self._online(now)
        return {a: i for a, i in online.items() if _serving({a: i}, team)}

    async def place_in_line(self, sid: str) -> tuple[str, int] | None:
        """(team, place) of a waiting chat; None when it is not waiting."""
        record = await self.store.get_handoff(sid)
        if record is None or record.get("status") != "queued":
            return None
        place = await self._line_moved(record["team"], joined=sid, tell=False)
        return (record["team"], place) if place else None

    async def _line_moved(
        self,
        team: str,
        *,
        joined: str | None = None,
        left: float | None = None,
        tell: bool = True,
    ) -> int:
        """Tell those waiting in `team` whose place just changed their new place: the ones
        behind a chat that `joined` (its sid) or `left` (its score). `joined`'s place (0: not
        waiting); with `tell=False`, only that."""
        place = 0
        for i, r in enumerate(await self.store.queue(team)):
            if r["session"] == joined:
                place = i + 1
                if not tell:
                    break
            elif tell and (
                (joined is not None and place) or (left is not None and r["score"] > left)
            ):
                await self.store.signal(r["session"], {"queue": team, "position": i + 1})
        return place

    async def assign_waiting(self, team: str) -> None:
        """Auto mode: hand waiting chats to online agents under capacity, least loaded first."""
        now = self.clock()
        agents = await self._agents_for(team, now)
        if not agents:
            return
        loads = {a: len(await self.store.agent_chats(a)) for a in agents}
        for record in await self.store.queue(team):
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
            try:
                await self.claim(account, record["session"])
            except (NotAllowed, NotAvailable):
                continue
            loads[chosen] += 1

    async def sweep(self) -> None:
        """Requeue the chats of agents who left; time out chats nobody claimed; in auto mode,
        hand out what waits."""
        await self.requeue_absent()
        now = self.clock()
        for team in self.config.teams:
            for record in await self.store.queue(team):
                # Measured from when it (re)entered this queue: a transfer starts a new wait.
                if now - record.get("queued_at", record["created_at"]) < self.config.queue_timeout:
                    continue
                done = await self.store.transition(
                    record["session"],
                    ("queued",),
                    {"status": "closed", "outcome": "timeout", "closed_at": now},
                    None,
                    self.ttl,
                )
                if done is None:
                    continue
                effects = await self._offline(record["session"], team, "timeout")
                self.sessions.run_effects(record["session"], effects)
                await self._line_moved(team, left=record.get("score"))
            if self.config.mode == "auto":
                await self.assign_waiting(team)

    async def run(self, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.sweep()
            except Exception as exc:  # the store may be down; the next sweep retries
                raise_if_cancelled()
                log.debug("handoff sweep: %s", exc)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        await stop_task(self._task)

    # -- what an agent and a webhook see ---------------------------------------------------
    def _packet(self, sid: str, view: ChatView) -> frames.Frame:
        handoff = view.handoff or {}
        if view.session is None:
            return {"session": sid, "missing": True, "transcript": []}
        return packets.build(
            sid,
            m.State.from_json(view.session.state),
            handoff.get("team", ""),
            handoff.get("priority", "normal"),
            handoff.get("reason"),
            view.transcript,
            handoff.get("created_at", self.clock()),
        )

    async def packet(self, sid: str) -> frames.Frame:
        return self._packet(sid, await self.store.chat_view(sid, TRANSCRIPT_LIMIT))

    async def _emit_packet(self, event: str, sid: str, **more: Any) -> None:
        if self.webhooks.wants(event):
            await self.webhooks.emit(event, {**await self.packet(sid), **more})
