"""The fold: analytics events → increments of the insight counters. Pure: no I/O, no clock, no
per-session state (every event carries what it is counted by: docs/events.md).

A counter is keyed by (day UTC, metric, flow, version, locale, step, detail) and holds an
integer. Latencies are histograms: one counter per fixed bucket (`BOUNDS`), the bucket's upper
bound in `detail` after the agent (`"<agent>@<bound>"`), so percentiles are read back from counts.
The metrics and their formulas are in docs/insights.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from datetime import date
from functools import lru_cache
from typing import Any, NamedTuple

log = logging.getLogger("flowengine.insights")

# Upper bounds (seconds) of the latency buckets; a value over the last falls in "inf".
BOUNDS: tuple[float, ...] = (
    1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800, 3600, 7200, 14400,
)  # fmt: skip
INF = "inf"

SEP = "\x1f"  # between the parts of a counter's field: never in a flow, step or agent name

# The metrics the fold writes (docs/insights.md says what each counts).
CONVERSATIONS = "conversations"
ENDED = "ended"  # detail: the resolution
AUTOMATED = "automated"
FLOW_STARTED = "flow_started"
FLOW_ENDED = "flow_ended"  # detail: the resolution, "none" when left without an end
HANDOFF = "handoff"  # step: where; detail: the reason
OFFLINE = "offline"  # detail: the queue
TIMEOUT = "timeout"  # detail: the queue
ASSIGNED = "assigned"  # detail: the agent
CLOSED = "closed"  # detail: the agent
ENTERED = "entered"  # step
NEXT = "next"  # step: the step left; detail: the step entered
DROPPED = "dropped"  # step: the drop-off step; detail: "session" (left) or "restart"
MATCHED = "matched"  # step: where the shopper typed; detail: "<kind>:<target>" (flow:x, option:y)
# step: where typed text matched nothing (or "Something else"); detail: the masked text when the
# project keeps them (intents.keep_unmatched), else ""
UNMATCHED = "unmatched"
CSAT_FLOW = "csat_flow"  # step; detail: "yes" or "no"
CSAT_AGENT = "csat_agent"  # step; detail: "<agent>@<score 1..5>" ("" for no agent)
WAIT = "wait"  # histogram: seconds in the queue before a person took the chat
FIRST_REPLY = "first_reply"  # histogram: seconds from assigned to the agent's first message
HANDLE = "handle"  # histogram: seconds from assigned to closed
HISTOGRAMS = (WAIT, FIRST_REPLY, HANDLE)

Increments = dict[tuple[str, str], int]  # (day, field) -> how much to add


class Key(NamedTuple):  # a tuple: cheap to make, hash and compare
    day: str
    metric: str
    flow: str = ""
    version: str = ""
    locale: str = ""
    step: str = ""
    detail: str = ""

    @property
    def field(self) -> str:
        return SEP.join((self.metric, self.flow, self.version, self.locale, self.step, self.detail))

    @classmethod
    def parse(cls, day: str, field: str) -> Key:
        parts = field.split(SEP)
        if len(parts) != 6:
            raise ValueError(f"not an insight counter: {field!r}")
        return cls(day, *parts)


def bucket(seconds: float) -> str:
    """The label of the bucket a latency falls in (its upper bound)."""
    for bound in BOUNDS:
        if seconds <= bound:
            return _label(bound)
    return INF


def _label(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def bucket_bound(label: str) -> float:
    return math.inf if label == INF else float(label)


_EPOCH = date(1970, 1, 1).toordinal()


def day_of(at: float) -> str:
    """The UTC day of a Unix time, "YYYY-MM-DD"."""
    return _day(int(at // 86400))


@lru_cache(maxsize=64)
def _day(n: int) -> str:
    return date.fromordinal(_EPOCH + n).isoformat()


def _text(value: Any) -> str:
    """A name as counted: "" for none; the separator can never sneak in."""
    if value is None:
        return ""
    if type(value) is str and len(value) <= 200 and SEP not in value:
        return value
    return str(value).replace(SEP, " ")[:200]


# The events that count for something (the others are skipped before any work).
COUNTED = frozenset(
    [
        "conversation_started",
        "conversation_ended",
        "flow_started",
        "flow_ended",
        "step_entered",
        "session_abandoned",
        "conversation_abandoned",
        "handoff_requested",
        "handoff_offline",
        "handoff_timeout",
        "handoff_assigned",
        "handoff_closed",
        "agent_replied",
        "csat_given",
        "text_matched",
        "text_unmatched",
    ]
)


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


Part = tuple[str, str, str]  # (metric, step, detail) of one counter an event adds 1 to


def _parts(event: dict[str, Any]) -> tuple[str, list[Part]]:
    """The event's day and the (metric, step, detail) of each counter it adds 1 to (none for
    an event that counts nothing, or that is not an event: no `type`, no usable `at`)."""
    kind = event.get("type")
    if kind not in COUNTED:
        return "", []
    at = event.get("at")
    if isinstance(at, bool) or not isinstance(at, int | float):
        return "", []
    if not math.isfinite(at) or at < 0 or at > 253_402_300_799:  # up to year 9999
        return "", []
    step = _text(event.get("step"))
    match kind:
        case "conversation_started":
            parts = [(CONVERSATIONS, "", "")]
        case "conversation_ended":
            resolution = _text(event.get("resolution")) or "none"
            parts = [(ENDED, "", resolution)]
            if resolution == "resolved" and event.get("person") is False:
                parts.append((AUTOMATED, "", ""))
        case "flow_started":
            parts = [(FLOW_STARTED, "", "")]
        case "flow_ended":
            parts = [(FLOW_ENDED, "", _text(event.get("resolution")) or "none")]
        case "step_entered":
            parts = [(ENTERED, step, "")]
            if event.get("from") is not None:
                parts.append((NEXT, _text(event.get("from")), step))
        case "session_abandoned":
            parts = [(DROPPED, step, "session")]
        case "conversation_abandoned":
            parts = [(DROPPED, step, "restart")]
        case "handoff_requested":
            parts = [(HANDOFF, step, _text(event.get("reason")) or "unknown")]
        case "handoff_offline":
            parts = [(OFFLINE, "", _text(event.get("queue")))]
        case "handoff_timeout":
            parts = [(TIMEOUT, "", _text(event.get("queue")))]
        case "handoff_assigned":
            parts = [(ASSIGNED, "", _text(event.get("agent"))), *_latency(WAIT, event, "waited")]
        case "handoff_closed":
            parts = [(CLOSED, "", _text(event.get("agent"))), *_latency(HANDLE, event, "handled")]
        case "agent_replied":
            parts = _latency(FIRST_REPLY, event, "after")
        case "text_matched":
            target = f"{_text(event.get('kind'))}:{_text(event.get('target'))}"
            parts = [(MATCHED, step, target)]
        case "text_unmatched":
            parts = [(UNMATCHED, step, _text(event.get("text")))]
        case _:  # csat_given
            parts = _csat(event, step)
    return day_of(at), parts


def _latency(metric: str, event: dict[str, Any], field: str) -> list[Part]:
    s = _seconds(event.get(field))
    return [] if s is None else [(metric, "", f"{_text(event.get('agent'))}@{bucket(s)}")]


def _csat(event: dict[str, Any], step: str) -> list[Part]:
    scale, score = event.get("scale"), event.get("score")
    if isinstance(score, bool) or not isinstance(score, int):
        return []
    if scale == "yes_no" and score in (0, 1):
        return [(CSAT_FLOW, step, "yes" if score == 1 else "no")]
    if scale == "five" and 1 <= score <= 5:
        return [(CSAT_AGENT, step, f"{_text(event.get('agent'))}@{score}")]
    return []


def keys(event: dict[str, Any]) -> list[Key]:
    """The counters one event adds 1 to."""
    day, parts = _parts(event)
    flow, version, locale = (_text(event.get(k)) for k in ("flow", "version", "locale"))
    return [Key(day, metric, flow, version, locale, step, d) for metric, step, d in parts]


def fold(events: Iterable[Any]) -> Increments:
    """The increments of a batch of events; anything that is not an event dict counts nothing
    (logged: a writer's bug must not stop the consumer)."""
    out: Increments = {}
    for event in events:
        if not isinstance(event, dict):
            log.warning("insights: skipped a log entry that is not an event: %.80r", event)
            continue
        day, parts = _parts(event)
        if not parts:
            continue
        names = SEP.join((_text(event.get("flow")), _text(event.get("version")),
                          _text(event.get("locale"))))  # fmt: skip
        for metric, step, detail in parts:
            # The field as Key.field writes it (a test holds them equal), without the Key.
            f = (day, f"{metric}{SEP}{names}{SEP}{step}{SEP}{detail}")
            out[f] = out.get(f, 0) + 1
    return out
