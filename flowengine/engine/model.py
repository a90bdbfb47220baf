"""The engine's values: session state, the events it takes and the results it returns.

All plain, immutable and JSON-serialisable (`to_json` / `from_json`), so a store can keep a state
and any process can carry on from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

# What a session is waiting for.
Waiting = Literal["start", "click", "text", "action", "agent", "ended"]

# Options the engine adds itself when the shopper types at a menu (ids no flow option can have:
# an option id has no colon). A clarifying menu's candidates are the intents' own ids,
# `flow:<name>` or `option:<id>` (ir.FLOW_INTENT, ir.OPTION_INTENT).
SOMETHING_ELSE = "intent:else"  # in a clarifying menu: neither candidate
OFFER_PERSON = "intent:person"  # after `misses_before_person` unmatched texts in a row


@dataclass(frozen=True, slots=True)
class Handoff:
    """A handoff in progress: where the conversation goes for each outcome."""

    queue: str
    priority: str
    reason: str | None
    back: tuple[str, str] | None  # (flow, step) to continue at when the agent hands back
    offline: tuple[str, str] | None = None
    timeout: tuple[str, str] | None = None
    assigned: bool = False
    origin: tuple[str, str] | None = None  # (flow, step) that asked for the person
    # For the analytics events' `waited` and `handled` (None in states stored before them).
    requested_at: float | None = None
    assigned_at: float | None = None
    agent: str | None = None  # the username of the agent who has (or last had) the chat


@dataclass(frozen=True, slots=True)
class State:
    version: str
    locale: str
    flow: str = ""
    step: str = ""
    waiting: Waiting = "start"
    vars: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    stack: tuple[tuple[str, str], ...] = ()
    options: tuple[tuple[str, str], ...] = ()  # (id, label) of what can be clicked now
    tries: int = 0
    pending: str | None = None  # id of the action call being waited for
    counter: int = 0
    handoff: Handoff | None = None
    resolution: str | None = None
    person: bool = False  # a person was assigned to the chat in this conversation
    rate: str | None = None  # after a chat with a person: the agent the shopper may rate now
    misses: int = 0  # typed texts in a row at a menu that matched nothing
    clarify: tuple[tuple[str, float], ...] = ()  # a clarifying menu's (intent id, score)s
    # The masked text a clarifying menu answers, kept for "Something else" (keep_unmatched only).
    clarify_text: str = ""

    def to_json(self) -> dict[str, Any]:
        h = self.handoff
        return {
            "version": self.version,
            "locale": self.locale,
            "flow": self.flow,
            "step": self.step,
            "waiting": self.waiting,
            "vars": self.vars,
            "context": self.context,
            "stack": [list(f) for f in self.stack],
            "options": [list(o) for o in self.options],
            "tries": self.tries,
            "pending": self.pending,
            "counter": self.counter,
            "handoff": None
            if h is None
            else {
                "queue": h.queue,
                "priority": h.priority,
                "reason": h.reason,
                "back": _pair(h.back),
                "offline": _pair(h.offline),
                "timeout": _pair(h.timeout),
                "assigned": h.assigned,
                "origin": _pair(h.origin),
                "requested_at": h.requested_at,
                "assigned_at": h.assigned_at,
                "agent": h.agent,
            },
            "resolution": self.resolution,
            "person": self.person,
            "rate": self.rate,
            "misses": self.misses,
            "clarify": [list(c) for c in self.clarify],
            "clarify_text": self.clarify_text,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> State:
        h = d.get("handoff")
        return cls(
            version=d["version"],
            locale=d["locale"],
            flow=d["flow"],
            step=d["step"],
            waiting=d["waiting"],
            vars=dict(d.get("vars", {})),
            context=dict(d.get("context", {})),
            stack=tuple((a, b) for a, b in d.get("stack", [])),
            options=tuple((a, b) for a, b in d.get("options", [])),
            tries=d.get("tries", 0),
            pending=d.get("pending"),
            counter=d.get("counter", 0),
            handoff=None
            if h is None
            else Handoff(
                queue=h["queue"],
                priority=h["priority"],
                reason=h.get("reason"),
                back=_tuple(h.get("back")),
                offline=_tuple(h.get("offline")),
                timeout=_tuple(h.get("timeout")),
                assigned=h.get("assigned", False),
                origin=_tuple(h.get("origin")),
                requested_at=h.get("requested_at"),
                assigned_at=h.get("assigned_at"),
                agent=h.get("agent"),
            ),
            resolution=d.get("resolution"),
            person=d.get("person", False),
            rate=d.get("rate"),
            misses=d.get("misses", 0),
            clarify=tuple((a, b) for a, b in d.get("clarify", [])),
            clarify_text=d.get("clarify_text", ""),
        )


def _pair(p: tuple[str, str] | None) -> list[str] | None:
    return None if p is None else list(p)


def _tuple(p: list[str] | None) -> tuple[str, str] | None:
    return None if p is None else (p[0], p[1])


# -- events in ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Choose:
    option: str


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class AskForPerson:
    """The shopper's "talk to a person", allowed at any step."""


@dataclass(frozen=True, slots=True)
class Restart:
    pass


@dataclass(frozen=True, slots=True)
class ActionResult:
    call_id: str
    # `throttled`: the shell refused an order check (too many failed ones, actions/throttle.py).
    outcome: Literal["ok", "not_found", "error", "throttled"]
    data: Any = None


HandoffOutcome = Literal["assigned", "offline", "timeout", "closed", "handed_back"]
HANDOFF_OUTCOMES: tuple[HandoffOutcome, ...] = get_args(HandoffOutcome)


@dataclass(frozen=True, slots=True)
class HandoffUpdate:
    outcome: HandoffOutcome
    hours: str = ""  # offline: the team's opening hours in the shopper's language ("": none set)
    agent: str = ""  # assigned, closed, handed_back: the agent's username ("": not told)


@dataclass(frozen=True, slots=True)
class SetContext:
    """The page told us more (a shopper logged in, another page): replaces shopper/page/context."""

    context: dict[str, Any]


Event = Choose | Text | AskForPerson | Restart | ActionResult | HandoffUpdate | SetContext


# -- results out ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A line of the transcript (built into a wire event by `flowengine.frames`)."""

    sender: Literal["bot", "shopper", "system"]
    text: str
    options: tuple[dict[str, str], ...] = ()
    input: dict[str, Any] | None = None
    locale: str | None = None  # where the text (or a fallen-back label) was found; tests check it
    csat: str | None = None  # a verdict question: its scale (`yes_no`, `five`), shown as buttons


@dataclass(frozen=True, slots=True)
class CallAction:
    call_id: str
    action: str
    args: dict[str, Any]
    timeout: float


@dataclass(frozen=True, slots=True)
class RequestHandoff:
    queue: str
    priority: str
    reason: str | None
    flow: str  # the flow that asked (a linked flow, such as identify_order)
    step: str
    top: str = ""  # the flow the shopper chose, which routing goes by ("": `flow`)


@dataclass(frozen=True, slots=True)
class CancelHandoff:
    pass


@dataclass(frozen=True, slots=True)
class ForwardToAgent:
    text: str


Effect = CallAction | RequestHandoff | CancelHandoff | ForwardToAgent


@dataclass(frozen=True, slots=True)
class EngineError:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Result:
    state: State
    messages: tuple[Message, ...] = ()
    effects: tuple[Effect, ...] = ()
    events: tuple[dict[str, Any], ...] = ()  # analytics: step entered, option chosen, ...
    error: EngineError | None = None
    visited: tuple[tuple[str, str, str], ...] = ()  # (flow, step, edge label) taken, for coverage
