"""The store contract: what the server needs from persistence, and nothing more.

A session is a record (engine state as JSON, a revision, the last transcript seq) plus its
transcript, an append-only log of events numbered 1, 2, 3 ... Every change is one atomic
`commit`: compare the revision, write the new state, append the events, remember the client's
action id, refresh the TTLs, and notify listeners. A commit on a stale revision returns
`conflict` (the caller re-reads and re-applies: the engine is pure, so that is safe); a commit
whose action id was already applied returns `duplicate` and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, Protocol

# The insights fold as the store runs it: a batch of analytics events -> increments of the
# counters, keyed (day "YYYY-MM-DD", counter field) (flowengine/insights/fold.py).
Fold = Callable[[list[Any]], dict[tuple[str, str], int]]

DAY = 86_400


def day_expires(day: str, retention_days: int) -> int:
    """When a day's counters may go (Unix seconds): `retention_days` after the day ended."""
    start = date.fromisoformat(day).toordinal() - date(1970, 1, 1).toordinal()
    return (start + 1 + retention_days) * DAY


class StoreUnavailable(Exception):
    """The backing store cannot be reached; nothing was written."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    sid: str
    state: dict[str, Any]
    rev: int
    seq: int
    updated_at: float
    applied: bool = False  # the action id asked about at load was already applied


@dataclass(frozen=True, slots=True)
class Commit:
    outcome: Literal["ok", "conflict", "duplicate", "missing"]
    rev: int = 0
    seq: int = 0


@dataclass(frozen=True, slots=True)
class ChatView:
    """What an agent opening a chat sees, read in one round trip."""

    session: SessionRecord | None
    transcript: list[dict[str, Any]]
    notes: list[dict[str, Any]]
    handoff: dict[str, Any] | None


class Listener(Protocol):
    """Who hears of sessions' news (the server's hub). Called by the store; must not block."""

    def committed(self, sid: str, seq: int, events: tuple[dict[str, Any], ...] | None) -> None:
        """Seq `seq` of `sid` was stored. `events` are the events just stored when this process
        committed them (send them without reading); None when another process did, or
        `seq` is -1 ("notifications may have been lost: re-read")."""

    def signalled(self, sid: str, payload: dict[str, Any]) -> None:
        """Something not stored happened (typing, a note), on any instance."""


class SessionStore(Protocol):
    kind: str

    async def load(self, sid: str, action_id: str | None = None) -> SessionRecord | None:
        """The session, or None if it never existed or expired; `applied` tells whether
        `action_id` was already applied (read in the same round trip)."""

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
        """Write a new state if the session is at `rev` (0: create it). `events` carry their
        seqs (last seq + 1, + 2, ...); events that do not follow the stored seq are refused as
        a `conflict` (a cache made stale by writes a failover lost: the caller re-reads)."""

    async def replay(self, sid: str, after_seq: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Transcript events with seq > after_seq, in order."""

    async def put_version(self, version: str, bundle: dict[str, Any], ttl: float) -> None: ...

    async def get_version(self, version: str) -> dict[str, Any] | None: ...

    async def touch_version(self, version: str, ttl: float) -> None: ...

    async def append_events(self, events: list[dict[str, Any]]) -> None:
        """Analytics events, into a capped log."""

    async def read_events(self, count: int = 100) -> list[dict[str, Any]]:
        """The newest analytics events, oldest first."""

    async def watch(self, sid: str) -> None:
        """Start telling the listener about commits to `sid` (from any instance)."""

    async def unwatch(self, sid: str) -> None: ...

    def set_listener(self, listener: Listener) -> None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class HandoffStore(Protocol):
    """The agent side: the handoff queue, presence, console tokens, notes, webhook outbox.

    A handoff record is a dict with at least `session`, `team`, `priority`, `status`
    (`queued`, `assigned`, `closed`), `agent` and `created_at`. `transition` is the one atomic
    operation on it: it applies `changes` only if the status is one of `allowed`, and keeps the
    team queues and the agents' loads in step, so two agents claiming one chat get one winner.
    """

    async def put_handoff(self, sid: str, record: dict[str, Any], score: float, ttl: float) -> bool:
        """Queue a new handoff; False if the session already has an open one."""

    async def get_handoff(self, sid: str) -> dict[str, Any] | None: ...

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
        """The new record, or None when the status was not one of `allowed` (or, with `teams`,
        the chat's team is not one of them; with `agent`, another agent holds it)."""

    async def chat_view(self, sid: str, limit: int = 5000) -> ChatView:
        """The session, its transcript, notes and handoff record, in one round trip."""

    async def queue(self, team: str) -> list[dict[str, Any]]:
        """Waiting handoffs of a team, first in line first."""

    async def agent_chats(self, agent: str) -> list[dict[str, Any]]: ...

    async def heartbeat(self, agent: str, info: dict[str, Any], now: float) -> None: ...

    async def online(self, now: float, window: float = 30.0) -> dict[str, dict[str, Any]]: ...

    async def presence(self) -> dict[str, float]:
        """When each agent who has connected was last seen (a heartbeat), until `leave`."""

    async def leave(self, agent: str) -> None:
        """Forget an agent's presence (gone, holding nothing: no sweep needs to look again)."""

    async def once(self, key: str, ttl: float) -> bool:
        """True the first time `key` is seen within `ttl` seconds, on any instance (an agent
        action id: applied once)."""

    async def forget(self, key: str) -> None:
        """Let `key` be seen for the first time again (the action failed: a resend may apply)."""

    async def put_ticket(self, key: str, ticket: dict[str, Any]) -> None:
        """Keep a ticket (a left message, a problem report) in the inbox, newest first; its
        `packet` (the conversation, which can be long) is kept apart from the rest."""

    async def tickets(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest `limit` tickets, newest first, without their packets (a list to scan)."""

    async def get_ticket(self, key: str) -> dict[str, Any] | None:
        """One ticket, with its packet."""

    async def update_ticket(self, key: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Apply `changes` to a ticket atomically; the new ticket, or None if there is none."""

    async def failures(self, keys: list[str]) -> list[int]:
        """How many failures each key has had in its current window (0: none)."""

    async def add_failure(self, keys: list[str], window: float) -> list[int]:
        """Count a failure for each key, atomically, and return each key's count with it; a
        key's count is forgotten `window` seconds after its first failure. Shared by every
        instance (the login and order-check throttles count an attempt here before making it,
        so that a hundred attempts at once cannot all read a count under the limit)."""

    async def forgive(self, keys: list[str]) -> None:
        """Take back one failure from each key (an attempt counted up front that succeeded);
        never below zero, the window unchanged."""

    async def put_token(self, token_hash: str, username: str, ttl: float) -> None: ...

    async def get_token(self, token_hash: str) -> str | None: ...

    async def del_token(self, token_hash: str) -> None: ...

    async def add_note(self, sid: str, note: dict[str, Any], ttl: float) -> None: ...

    async def notes(self, sid: str) -> list[dict[str, Any]]: ...

    async def signal(self, sid: str, payload: dict[str, Any]) -> None:
        """Tell every instance's listener about something not stored (typing)."""

    async def push_webhook(self, item: dict[str, Any]) -> None: ...

    async def take_webhook(self) -> dict[str, Any] | None:
        """The next delivery, moved to in-flight until `done_webhook` (at-least-once)."""

    async def done_webhook(self, item: dict[str, Any]) -> None: ...

    async def recover_webhooks(self) -> int:
        """Put in-flight deliveries back (after a crash); how many."""

    async def log_webhook(self, entry: dict[str, Any]) -> None: ...

    async def webhook_log(self, count: int = 50) -> list[dict[str, Any]]: ...


class InsightsStore(Protocol):
    """The insight counters, consumed from the analytics log (docs/insights.md).

    Every entry of the log is folded once: reading it, adding its increments and marking it
    consumed happen atomically (a Lua script that applies an entry only if its XACK
    acknowledged it, on Redis; one transaction with the consumer's cursor, on SQLite), so a
    crash between them loses and doubles nothing."""

    async def consume_events(
        self, fold: Fold, *, consumer: str, count: int = 500, idle: float = 60.0,
        retention_days: int = 400,
    ) -> int:  # fmt: skip
        """Fold the next entries of the log not yet consumed (at most `count`; on Redis first
        those another consumer read and left unacknowledged for `idle` seconds) into the
        counters; how many entries were taken (0: none waiting). A day's counters are kept
        `retention_days` after it (Redis: a TTL; the embedded stores: `prune_insights`)."""

    async def insight_counts(self, days: list[str]) -> dict[str, dict[str, int]]:
        """The counters of each of `days` that has any: day -> field -> value."""

    async def prune_insights(self, before: str) -> int:
        """Delete the counters of days before `before`; how many counters (Redis: 0, its
        day keys expire by themselves; it forgets the group's consumers that stopped)."""

    async def forget_log(self, before: float) -> int:
        """Delete the analytics log's events from before `before` (Unix seconds) that are
        consumed (on Redis every entry older: an entry's id is its time): the log names
        sessions, which are kept no longer than a session lives. How many went (Redis: 0)."""


class Store(SessionStore, HandoffStore, InsightsStore, Protocol):
    """Everything the server keeps: both halves, one object (one connection pool)."""
