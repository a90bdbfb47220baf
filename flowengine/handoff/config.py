"""handoff.yaml: teams, routing rules, opening hours, how chats are handed out, canned responses
and webhooks.

Checked like a flow: the YAML is read with the position of every value (`language.source`),
checked against `flowengine/schema/handoff.schema.json` (which editors also use), then by the
named checks below, each with its own code (H101...; docs/handoff.md lists them). Every problem
is reported at once, at file:line:col, rendered like a flow's.

    config, diagnostics = check("handoff.yaml")   # config is None when there is an error
    config = load("handoff.yaml")                  # or HandoffConfigError, with .diagnostics
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from ..language.diagnostics import UNKNOWN_POSITION, Diagnostic, Severity, did_you_mean, sort_key
from ..language.schema import check_schema
from ..language.source import SourceMap, load_document

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PRIORITIES = ("low", "normal", "high", "urgent")
WEBHOOK_EVENTS = ("handoff.created", "handoff.assigned", "conversation.closed", "ticket.created")
DEFAULT_TEAMS = ("general",)
_SPAN = re.compile(r"^\s*(\d\d):(\d\d)\s*-\s*(\d\d):(\d\d)\s*$")


class HandoffConfigError(ValueError):
    """handoff.yaml has errors; str() is every diagnostic, rendered like a compiler's."""

    def __init__(self, diagnostics: Sequence[Diagnostic], lines: list[str] | None = None) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("\n\n".join(d.render(lines) for d in self.diagnostics))


@dataclass(frozen=True)
class Rule:
    team: str
    priority: str | None = None
    flow: str | None = None
    reason: str | None = None

    def matches(self, flow: str, reason: str | None) -> bool:
        if self.flow is not None and self.flow != flow:
            return False
        return self.reason is None or (reason or "").lower().find(self.reason.lower()) >= 0


@dataclass(frozen=True)
class Webhook:
    url: str
    events: tuple[str, ...]
    secret_env: str | None = None


@dataclass(frozen=True)
class HandoffConfig:
    teams: tuple[str, ...] = DEFAULT_TEAMS
    rules: tuple[Rule, ...] = ()
    # team -> the teams its handoffs go to, in order, when nobody in it is online
    fallback: dict[str, tuple[str, ...]] = field(default_factory=dict)
    timezone: str = "UTC"
    hours: dict[str, tuple[tuple[int, int], ...]] = field(
        default_factory=dict
    )  # empty: always open
    mode: str = "pull"  # pull: agents claim; auto: assigned to online agents under capacity
    capacity: int = 3
    queue_timeout: float = 300.0
    canned: tuple[dict[str, str], ...] = ()
    webhooks: tuple[Webhook, ...] = ()
    presence_grace: float = 120.0  # seconds before a gone agent's chats are queued again

    def chain(self, team: str) -> tuple[str, ...]:
        """`team`, then its fallbacks: where a handoff to `team` may go, in order."""
        return (team, *(t for t in self.fallback.get(team, ()) if t != team))


# -- reading ---------------------------------------------------------------------------------


def load(path: str | None) -> HandoffConfig:
    """The config at `path`; no path, or no file there: the defaults. Raises HandoffConfigError."""
    if path is None or not Path(path).is_file():
        return HandoffConfig()
    config, diagnostics, lines = _check_file(path)
    if config is None:
        raise HandoffConfigError([d for d in diagnostics if d.is_error], lines)
    return config


def check(path: str | Path) -> tuple[HandoffConfig | None, list[Diagnostic]]:
    """Every problem of the file at `path`, sorted; the config only when none is an error."""
    config, diagnostics, _ = _check_file(str(path))
    return config, diagnostics


def parse(data: Any, where: str = "handoff.yaml") -> HandoffConfig:
    """Already-parsed data (no positions: problems are placed at 1:1). Raises HandoffConfigError."""
    config, diagnostics = _check_data(data, SourceMap(file=where, lines=[]))
    if config is None:
        raise HandoffConfigError([d for d in diagnostics if d.is_error])
    return config


def _check_file(path: str) -> tuple[HandoffConfig | None, list[Diagnostic], list[str]]:
    try:
        text = Path(path).read_text("utf-8")
    except FileNotFoundError:
        return None, [Diagnostic("E002", "file not found", path)], []
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Diagnostic("E002", f"cannot read the file: {exc}", path)], []
    lines = text.splitlines()
    if all(not line.strip() or line.lstrip().startswith("#") for line in lines):
        return HandoffConfig(), [], lines  # nothing but comments: the defaults, as before
    doc, problems = load_document(text, path)
    if doc is None:
        return None, problems, lines
    config, diagnostics = _check_data(doc.data, doc.source, problems)
    return config, diagnostics, lines


def _check_data(
    data: Any, source: SourceMap, problems: Sequence[Diagnostic] = ()
) -> tuple[HandoffConfig | None, list[Diagnostic]]:
    if data is None:
        return HandoffConfig(), list(problems)
    named = [d for check in CHECKS for d in check(data, source)] if isinstance(data, dict) else []
    # A named check says better what the schema also found at the same place.
    taken = {d.position for d in named if d.is_error and d.position != UNKNOWN_POSITION}
    schema = [d for d in check_schema(data, source, "handoff") if d.position not in taken]
    diagnostics = sorted([*problems, *schema, *named], key=sort_key)
    if any(d.is_error for d in diagnostics):
        return None, diagnostics
    return _build(data), diagnostics


def _build(data: dict[str, Any]) -> HandoffConfig:
    """The config from data that passed every check."""
    schedule = data.get("schedule") or {}
    return HandoffConfig(
        teams=tuple(data.get("teams") or DEFAULT_TEAMS),
        rules=tuple(
            Rule(r["team"], r.get("priority"), r.get("flow"), r.get("reason"))
            for r in data.get("routing") or []
        ),
        fallback={
            team: tuple(dict.fromkeys(chain or ()))
            for team, chain in (data.get("fallback") or {}).items()
        },
        presence_grace=float(data.get("presence_grace", 120)),
        timezone=schedule.get("timezone", "UTC"),
        hours={
            day: tuple(_span(s) or (0, 0) for s in _day_spans(spans))
            for day, spans in (schedule.get("hours") or {}).items()
        },
        mode=data.get("mode", "pull"),
        capacity=int(data.get("capacity", 3)),
        queue_timeout=float(data.get("queue_timeout", 300)),
        canned=tuple({"title": c["title"], "text": c["text"]} for c in data.get("canned") or []),
        webhooks=tuple(
            Webhook(w["url"], tuple(w.get("events") or WEBHOOK_EVENTS), w.get("secret_env"))
            for w in data.get("webhooks") or []
        ),
    )


# -- the named checks ------------------------------------------------------------------------

Check = Callable[[dict[str, Any], SourceMap], Iterator[Diagnostic]]


def _diag(
    source: SourceMap,
    code: str,
    message: str,
    path: tuple[str | int, ...],
    hint: str | None = None,
    severity: Severity = Severity.ERROR,
) -> Diagnostic:
    return Diagnostic(code, message, source.file, source.value(path), severity, hint)


def _items(data: dict[str, Any], key: str) -> list[tuple[int, Any]]:
    """The items of a list-valued key, with their index; nothing when it is not a list."""
    value = data.get(key)
    return list(enumerate(value)) if isinstance(value, list) else []


def _shown(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else "nothing" if value is None else str(value)


def check_duplicate_teams(data: dict[str, Any], source: SourceMap) -> Iterator[Diagnostic]:
    """H101: a team listed twice."""
    first: dict[str, int] = {}
    for i, team in _items(data, "teams"):
        if not isinstance(team, str):
            continue
        if team in first:
            line = source.value(("teams", first[team])).line
            yield _diag(
                source,
                "H101",
                f"team '{team}' is listed twice",
                ("teams", i),
                hint=f"first listed at line {line}; delete one",
            )
        first.setdefault(team, i)


def check_rule_teams(data: dict[str, Any], source: SourceMap) -> Iterator[Diagnostic]:
    """H102: a routing rule sends handoffs to a team that is not in `teams`."""
    if data.get("teams") is not None and not isinstance(data.get("teams"), list):
        return  # the schema reports `teams`; every rule would follow it
    named = [t for _, t in _items(data, "teams") if isinstance(t, str)]
    teams = list(dict.fromkeys(named)) or list(DEFAULT_TEAMS)
    for i, rule in _items(data, "routing"):
        team = rule.get("team") if isinstance(rule, dict) else None
        if isinstance(team, str) and team not in teams:
            yield _diag(
                source,
                "H102",
                f"routing to unknown team '{team}'",
                ("routing", i, "team"),
                hint=did_you_mean(team, teams)
                or f"teams: {', '.join(teams)}; add '{team}' to `teams`, or route to one of them",
            )


def check_fallback_teams(data: dict[str, Any], source: SourceMap) -> Iterator[Diagnostic]:
    """H111: a fallback names a team that is not in `teams`."""
    fallback = data.get("fallback")
    if not isinstance(fallback, dict) or (
        data.get("teams") is not None and not isinstance(data.get("teams"), list)
    ):
        return
    named = [t for _, t in _items(data, "teams") if isinstance(t, str)]
    teams = list(dict.fromkeys(named)) or list(DEFAULT_TEAMS)
    for team, chain in fallback.items():
        if team not in teams:
            yield _diag(
                source,
                "H111",
                f"fallback for unknown team '{team}'",
                ("fallback", team),
                hint=did_you_mean(team, teams) or f"teams: {', '.join(teams)}",
            )
        for i, other in enumerate(chain if isinstance(chain, list) else []):
            if isinstance(other, str) and other not in teams:
                yield _diag(
                    source,
                    "H111",
                    f"'{team}' falls back to unknown team '{other}'",
                    ("fallback", team, i),
                    hint=did_you_mean(other, teams) or f"teams: {', '.join(teams)}",
                )


def _covers(earlier: dict[str, Any], later: dict[str, Any]) -> bool:
    """Whether every handoff `later` matches is matched by `earlier` first (see Rule.matches)."""
    e_flow, l_flow = earlier.get("flow"), later.get("flow")
    e_reason, l_reason = earlier.get("reason"), later.get("reason")
    if not all(isinstance(v, str | None) for v in (e_flow, l_flow, e_reason, l_reason)):
        return False
    if e_flow is not None and e_flow != l_flow:
        return False
    if not e_reason:  # no reason (or an empty one) matches every reason
        return True
    return l_reason is not None and e_reason.lower() in l_reason.lower()


def check_shadowed_rules(data: dict[str, Any], source: SourceMap) -> Iterator[Diagnostic]:
    """H103 (warning): a routing rule that an earlier rule always matches first."""
    rules = [(i, r) for i, r in _items(data, "routing") if isinstance(r, dict)]
    for n, (i, rule) in enumerate(rules):
        earlier = next((j for j, e in rules[:n] if _covers(e, rule)), None)
        if earlier is not None:
            line = source.value(("routing", earlier)).line
            yield _diag(
                source,
                "H103",
                "this routing rule can never match",
                ("routing", i),
                hint=f"the rule at line {line} matches every handoff this one would, and the "
                "first match wins; move this rule above it, or delete it",
                severity=Severity.WARNING,
            )


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_timezone(data: dict[str, Any], source: SourceMap) -> Iterator[Diagnostic]:
    """H104: schedule.timezone is not a time zone."""
    schedule = data.get("schedule")
    tz = schedule.get("timezone") if isinstance(schedule, dict) else None
    if not isinstance(tz, str):
        return  # absent (UTC) or not text (the schema says so)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        yield _diag(
            source,
            "H104",
            f"'{tz}' is not a time zone",
            ("schedule", "timezone"),
            hint=did_you_mean(tz, _time_zones())
            or "use an IANA name such as Europe/Prague, America/New_York or UTC",
        )


def _span(text: str) -> tuple[int, int] | None:
    """'08:00-18:00' -> (480, 1080), minutes since midnight; None when it is not HH:MM-HH:MM."""
    m = _SPAN.match(text)
    if not m:
        return None
    h1, m1, h2, m2 = map(int, m.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 > 0):
        return None
    return h1 * 60 + m1, h2 * 60 + m2


def _day_spans(spans: Any) -> list[Any]:
    return [spans] if isinstance(spans, str) else spans if isinstance(spans, list) else []


def check_hours(data: dict[str, Any], source: SourceMap) -> Iterator[Diagnostic]:
    """H105: opening hours not written HH:MM-HH:MM. H106: a span that ends before it starts."""
    schedule = data.get("schedule")
    hours = schedule.get("hours") if isinstance(schedule, dict) else None
    if not isinstance(hours, dict):
        return
    example = (
        'write HH:MM-HH:MM in quotes, e.g. mon: "08:00-18:00"; '
        'a day with a break takes a list: sat: ["09:00-12:00", "13:00-15:00"]'
    )
    for day, spans in hours.items():
        if spans is not None and not isinstance(spans, str | list):
            yield _diag(
                source,
                "H105",
                f"opening hours of '{day}' must be HH:MM-HH:MM or a list of them",
                ("schedule", "hours", day),
                hint=example,
            )
            continue
        for i, text in enumerate(_day_spans(spans)):
            path = ("schedule", "hours", day, *((i,) if isinstance(spans, list) else ()))
            span = _span(text) if isinstance(text, str) else None
            if span is None:
                yield _diag(
                    source,
                    "H105",
                    f"opening hours {_shown(text)} are not HH:MM-HH:MM (00:00 to 24:00)",
                    path,
                    hint=example,
                )
            elif span[1] <= span[0]:
                yield _diag(
                    source,
                    "H106",
                    f"opening hours '{text.strip()}' "
                    + ("are empty" if span[1] == span[0] else "end before they start"),
                    path,
                    hint="a span cannot cross midnight: split it, "
                    'e.g. fri: "18:00-24:00" and sat: "00:00-02:00"',
                )


def check_capacity(data: dict[str, Any], source: SourceMap) -> Iterator[Diagnostic]:
    """H107: capacity is not a positive whole number."""
    if "capacity" not in data:
        return
    value = data["capacity"]
    whole = isinstance(value, int | float) and not isinstance(value, bool)
    if not (whole and math.isfinite(value) and value == int(value) and value >= 1):
        yield _diag(
            source,
            "H107",
            f"capacity must be a positive whole number, found {_shown(value)}",
            ("capacity",),
            hint="how many chats one agent takes at once in auto mode, e.g. `capacity: 3`",
        )


def check_queue_timeout(data: dict[str, Any], source: SourceMap) -> Iterator[Diagnostic]:
    """H108: queue_timeout is not a positive number of seconds."""
    if "queue_timeout" not in data:
        return
    value = data["queue_timeout"]
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and value > 0):
        yield _diag(
            source,
            "H108",
            f"queue_timeout must be a positive number of seconds, found {_shown(value)}",
            ("queue_timeout",),
            hint="how long a chat waits before the shopper is offered to leave a message, "
            "in seconds: `queue_timeout: 300` is five minutes",
        )


def check_webhook_urls(data: dict[str, Any], source: SourceMap) -> Iterator[Diagnostic]:
    """H109: a webhook's url is not an http(s) address."""
    for i, hook in _items(data, "webhooks"):
        if not isinstance(hook, dict) or "url" not in hook:
            continue  # not a mapping, or no url: the schema says so
        url = hook["url"]
        if not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            yield _diag(
                source,
                "H109",
                f"webhook url {_shown(url)} is not an http(s) address",
                ("webhooks", i, "url"),
                hint="e.g. https://helpdesk.example/hooks/flowengine",
            )


def check_webhook_events(data: dict[str, Any], source: SourceMap) -> Iterator[Diagnostic]:
    """H110: a webhook subscribes to an event that does not exist."""
    known = ", ".join(WEBHOOK_EVENTS)
    for i, hook in _items(data, "webhooks"):
        if not isinstance(hook, dict):
            continue
        for j, event in _items(hook, "events"):
            if event not in WEBHOOK_EVENTS:
                guess = did_you_mean(event, WEBHOOK_EVENTS) if isinstance(event, str) else None
                yield _diag(
                    source,
                    "H110",
                    f"unknown webhook event {_shown(event)}",
                    ("webhooks", i, "events", j),
                    hint=f"{guess} events: {known}" if guess else f"events: {known}",
                )


CHECKS: tuple[Check, ...] = (
    check_duplicate_teams,
    check_rule_teams,
    check_fallback_teams,
    check_shadowed_rules,
    check_timezone,
    check_hours,
    check_capacity,
    check_queue_timeout,
    check_webhook_urls,
    check_webhook_events,
)
