"""The wire and transcript vocabulary, defined once (docs/protocol.md).

Every frame the server sends and every event it stores is built here by one typed constructor;
the server, the handoff service, the tests and the docs' examples all use these shapes, and
`tests/test_frames.py` checks the examples in docs/protocol.md against `SHAPES`. A frame is a
plain JSON-ready dict: it goes to a socket, to the store and to webhooks as it is.

Three kinds:

* transcript events (`message`, `handoff`, `ended`): stored, then numbered by `number` with
  `seq` (1, 2, 3 ... per session) and `at`; every socket of the session gets them in order;
* shopper socket frames (`session`, `ack`, `error`, `pong`, `typing`, `position`): not stored;
* agent socket frames (`welcome`, `queue`, `chat`, `event`, `typing`, `note`, `ack`, `error`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .engine import model as m

Frame = dict[str, Any]

Sender = Literal["bot", "shopper", "agent", "system"]
HandoffStatus = Literal["queued", "assigned", "offline", "closed", "handed_back"]
OfflineReason = Literal["no_agent", "closed", "timeout"]


@dataclass(frozen=True, slots=True)
class Shape:
    """What one frame type may carry, on one channel, in one direction."""

    channel: Literal["transcript", "shopper", "agent"]
    direction: Literal["in", "out"]
    required: frozenset[str]
    optional: frozenset[str] = frozenset()

    @property
    def fields(self) -> frozenset[str]:
        return self.required | self.optional


def _shape(
    channel: Literal["transcript", "shopper", "agent"],
    direction: Literal["in", "out"],
    required: str,
    optional: str = "",
) -> Shape:
    return Shape(channel, direction, frozenset(required.split()), frozenset(optional.split()))


# (channel, direction, type) -> shape. Adding a field here is a protocol change: document it.
SHAPES: dict[tuple[str, str, str], Shape] = {
    ("transcript", "out", "message"): _shape(
        "transcript", "out", "type seq at from text options input", "agent csat"
    ),
    ("transcript", "out", "handoff"): _shape(
        "transcript", "out", "type seq at status", "queue position agent reason by"
    ),
    ("transcript", "out", "ended"): _shape("transcript", "out", "type seq at resolution"),
    ("shopper", "in", "hello"): _shape(
        "shopper", "in", "type", "session last_seq locale context batch"
    ),
    ("shopper", "in", "choose"): _shape("shopper", "in", "type id option"),
    ("shopper", "in", "text"): _shape("shopper", "in", "type id text"),
    ("shopper", "in", "handoff"): _shape("shopper", "in", "type id"),
    ("shopper", "in", "restart"): _shape("shopper", "in", "type id"),
    ("shopper", "in", "ping"): _shape("shopper", "in", "type"),
    ("shopper", "in", "typing"): _shape("shopper", "in", "type"),
    ("shopper", "out", "session"): _shape(
        "shopper", "out", "type session resumed expired", "reset"
    ),
    ("shopper", "out", "ack"): _shape("shopper", "out", "type id seq duplicate"),
    ("shopper", "out", "error"): _shape("shopper", "out", "type code message", "id"),
    ("shopper", "out", "pong"): _shape("shopper", "out", "type"),
    ("shopper", "out", "typing"): _shape("shopper", "out", "type from"),
    ("shopper", "out", "position"): _shape("shopper", "out", "type queue position"),
    ("shopper", "out", "batch"): _shape("shopper", "out", "type frames"),
    ("agent", "in", "auth"): _shape("agent", "in", "type token"),
    ("agent", "in", "claim"): _shape("agent", "in", "type id session"),
    ("agent", "in", "open"): _shape("agent", "in", "type id session"),
    ("agent", "in", "reply"): _shape("agent", "in", "type id session text"),
    ("agent", "in", "note"): _shape("agent", "in", "type id session text"),
    ("agent", "in", "typing"): _shape("agent", "in", "type session", "id"),
    ("agent", "in", "close"): _shape("agent", "in", "type id session"),
    ("agent", "in", "handback"): _shape("agent", "in", "type id session"),
    ("agent", "in", "transfer"): _shape("agent", "in", "type id session team"),
    ("agent", "in", "status"): _shape("agent", "in", "type status", "id"),
    ("agent", "in", "takeover"): _shape("agent", "in", "type id session"),
    ("agent", "in", "reassign"): _shape("agent", "in", "type id session agent"),
    ("agent", "in", "tickets"): _shape("agent", "in", "type", "id status query"),
    ("agent", "in", "ticket"): _shape("agent", "in", "type id ticket"),
    ("agent", "in", "ticket_update"): _shape("agent", "in", "type id ticket", "status assignee"),
    ("agent", "in", "ping"): _shape("agent", "in", "type", "id"),
    ("agent", "out", "welcome"): _shape("agent", "out", "type agent teams canned mode"),
    ("agent", "out", "queue"): _shape("agent", "out", "type waiting mine at", "others"),
    ("agent", "out", "chat"): _shape("agent", "out", "type session packet notes handoff"),
    ("agent", "out", "event"): _shape("agent", "out", "type session event"),
    ("agent", "out", "typing"): _shape("agent", "out", "type session from"),
    ("agent", "out", "note"): _shape("agent", "out", "type session note"),
    ("agent", "out", "ack"): _shape("agent", "out", "type id", "duplicate"),
    ("agent", "out", "tickets"): _shape("agent", "out", "type items", "id"),
    ("agent", "out", "ticket"): _shape("agent", "out", "type ticket", "id"),
    ("agent", "out", "error"): _shape("agent", "out", "type code message", "id"),
    ("agent", "out", "pong"): _shape("agent", "out", "type"),
}


# -- transcript events (stored; `number` adds seq and at) -------------------------------------


def message(
    sender: Sender,
    text: str,
    options: Sequence[Mapping[str, str]] = (),
    input: Mapping[str, Any] | None = None,
    csat: str | None = None,
) -> Frame:
    """`csat`: the message asks the shopper's verdict on this scale (`yes_no`, `five`); its
    options are the answers, which the widget shows as a row of buttons."""
    frame: Frame = {
        "type": "message",
        "from": sender,
        "text": text,
        "options": [dict(o) for o in options],
        "input": dict(input) if input is not None else None,
    }
    if csat is not None:
        frame["csat"] = csat
    return frame


def from_engine(msg: m.Message) -> Frame:
    """A line the engine said (bot, system) or echoed (shopper)."""
    return message(msg.sender, msg.text, msg.options, msg.input, msg.csat)


def agent_message(agent: str, text: str) -> Frame:
    return {**message("agent", text), "agent": agent}


def handoff_queued(queue: str, position: int) -> Frame:
    return {"type": "handoff", "status": "queued", "queue": queue, "position": position}


def handoff_assigned(agent: str) -> Frame:
    return {"type": "handoff", "status": "assigned", "agent": agent}


def handoff_offline(queue: str, reason: OfflineReason) -> Frame:
    return {"type": "handoff", "status": "offline", "queue": queue, "reason": reason}


def handoff_closed(by: Literal["agent", "shopper"], agent: str | None = None) -> Frame:
    notice: Frame = {"type": "handoff", "status": "closed", "by": by}
    if agent is not None:
        notice["agent"] = agent
    return notice


def handoff_handed_back(agent: str) -> Frame:
    return {"type": "handoff", "status": "handed_back", "by": "agent", "agent": agent}


def ended(resolution: str | None) -> Frame:
    return {"type": "ended", "resolution": resolution}


def number(events: Iterable[Frame], after_seq: int, now: float) -> list[Frame]:
    """Give unnumbered transcript events their seq (after_seq + 1, + 2, ...) and time."""
    return [{**e, "seq": seq, "at": now} for seq, e in enumerate(events, start=after_seq + 1)]


def transcript(result: m.Result, before: m.State, extra: Iterable[Frame] = ()) -> list[Frame]:
    """The (unnumbered) transcript events one engine result adds: notices first, then what the
    engine said, then `ended` when this result ended the conversation, or said something
    after its end (the thanks for a rating: the conversation is still over)."""
    out = [*extra, *(from_engine(msg) for msg in result.messages)]
    if result.state.waiting == "ended" and (before.waiting != "ended" or result.messages):
        out.append(ended(result.state.resolution))
    return out


# -- the shopper socket (not stored) ------------------------------------------------------------


def session(sid: str, *, resumed: bool, expired: bool, reset: bool = False) -> Frame:
    """`reset`: the client's last_seq is past what is stored (a failover lost events it had
    shown): it forgets what it showed, and the whole transcript follows."""
    frame: Frame = {"type": "session", "session": sid, "resumed": resumed, "expired": expired}
    if reset:
        frame["reset"] = True
    return frame


BATCH_MAX = 64  # frames in one `batch` frame at most (a long replay is sent as several)


def batch(items: list[Frame]) -> Frame:
    """Several frames as one WebSocket message, for a client that asked for it in its hello
    (`"batch": true`): read as if `items` had come one by one, in order."""
    return {"type": "batch", "frames": items}


def ack(action_id: str, seq: int, *, duplicate: bool) -> Frame:
    return {"type": "ack", "id": action_id, "seq": seq, "duplicate": duplicate}


def error(code: str, message: str, frame_id: str | None = None) -> Frame:
    out: Frame = {"type": "error", "code": code, "message": message}
    if frame_id is not None:
        out["id"] = frame_id
    return out


def pong() -> Frame:
    return {"type": "pong"}


def agent_typing() -> Frame:
    """To the shopper: the person is typing."""
    return {"type": "typing", "from": "agent"}


def position(queue: str, place: int) -> Frame:
    """To a waiting shopper: their place in line changed (not stored: only the latest matters)."""
    return {"type": "position", "queue": queue, "position": place}


# -- the agent socket ---------------------------------------------------------------------------


def welcome(
    agent: Mapping[str, Any], teams: Sequence[str], canned: Sequence[Mapping[str, str]], mode: str
) -> Frame:
    return {
        "type": "welcome",
        "agent": dict(agent),
        "teams": list(teams),
        "canned": [dict(c) for c in canned],
        "mode": mode,
    }


def queue(
    waiting: list[Frame], mine: list[Frame], at: float, others: list[Frame] | None = None
) -> Frame:
    """Waiting chats of the agent's teams, the agent's own; for admins, the chats others hold."""
    out = {"type": "queue", "waiting": waiting, "mine": mine, "at": at}
    if others is not None:
        out["others"] = others
    return out


def chat(sid: str, packet: Frame, notes: list[Frame], handoff: Frame | None) -> Frame:
    return {"type": "chat", "session": sid, "packet": packet, "notes": notes, "handoff": handoff}


def event(sid: str, stored: Frame) -> Frame:
    return {"type": "event", "session": sid, "event": stored}


def shopper_typing(sid: str) -> Frame:
    """To an agent: the shopper of `sid` is typing."""
    return {"type": "typing", "session": sid, "from": "shopper"}


def note(sid: str, added: Frame) -> Frame:
    return {"type": "note", "session": sid, "note": added}


def agent_ack(action_id: str, *, duplicate: bool = False) -> Frame:
    """An agent action done; `duplicate`: it had been done before (a resend), not again."""
    out: Frame = {"type": "ack", "id": action_id}
    if duplicate:
        out["duplicate"] = True
    return out


def tickets(items: list[Frame], frame_id: str | None) -> Frame:
    """The inbox, as a list (no packets), answering `tickets`."""
    out: Frame = {"type": "tickets", "items": items}
    if frame_id is not None:
        out["id"] = frame_id
    return out


def ticket(t: Frame, frame_id: str | None = None) -> Frame:
    """One ticket with its packet (the conversation it came from), answering `frame_id`."""
    out: Frame = {"type": "ticket", "ticket": t}
    if frame_id is not None:
        out["id"] = frame_id
    return out
