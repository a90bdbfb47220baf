"""handoff.yaml: teams, routing rules, opening hours, how chats are handed out, canned responses
and webhooks. Checked when the server starts; a mistake stops it with the file and the key."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PRIORITIES = ("low", "normal", "high", "urgent")
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class HandoffConfigError(ValueError):
    pass


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
    teams: tuple[str, ...] = ("general",)
    rules: tuple[Rule, ...] = ()
    timezone: str = "UTC"
    hours: dict[str, tuple[tuple[int, int], ...]] = field(
        default_factory=dict
    )  # empty: always open
    mode: str = "pull"  # pull: agents claim; auto: assigned to online agents under capacity
    capacity: int = 3
    queue_timeout: float = 300.0
    canned: tuple[dict[str, str], ...] = ()
    webhooks: tuple[Webhook, ...] = ()


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def parse(data: Any, where: str = "handoff.yaml") -> HandoffConfig:
    if data is None:
        return HandoffConfig()
    if not isinstance(data, dict):
        raise HandoffConfigError(f"{where}: expected a mapping")
    known = {
        "teams",
        "routing",
        "schedule",
        "mode",
        "capacity",
        "queue_timeout",
        "canned",
        "webhooks",
    }
    for key in data:
        if key not in known:
            raise HandoffConfigError(
                f"{where}: unknown key '{key}' (known: {', '.join(sorted(known))})"
            )
    teams = tuple(data.get("teams") or ("general",))
    rules = []
    for i, r in enumerate(data.get("routing") or []):
        if not isinstance(r, dict) or "team" not in r:
            raise HandoffConfigError(f"{where}: routing[{i}] needs a team")
        if r["team"] not in teams:
            raise HandoffConfigError(f"{where}: routing[{i}]: unknown team '{r['team']}'")
        if r.get("priority") is not None and r["priority"] not in PRIORITIES:
            raise HandoffConfigError(f"{where}: routing[{i}]: priority is one of {PRIORITIES}")
        rules.append(Rule(r["team"], r.get("priority"), r.get("flow"), r.get("reason")))
    schedule = data.get("schedule") or {}
    tz = schedule.get("timezone", "UTC")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise HandoffConfigError(f"{where}: schedule.timezone '{tz}' is not a time zone") from None
    hours: dict[str, tuple[tuple[int, int], ...]] = {}
    for day, spans in (schedule.get("hours") or {}).items():
        if day not in DAYS:
            raise HandoffConfigError(f"{where}: schedule.hours: '{day}' is not one of {DAYS}")
        out = []
        for span in [spans] if isinstance(spans, str) else spans or []:
            m = _HOURS.match(str(span).replace(" ", ""))
            if not m:
                raise HandoffConfigError(
                    f"{where}: schedule.hours.{day}: '{span}' is not HH:MM-HH:MM"
                )
            a, b = str(span).replace(" ", "").split("-")
            out.append((_minutes(a), _minutes(b)))
        hours[day] = tuple(out)
    mode = data.get("mode", "pull")
    if mode not in ("pull", "auto"):
        raise HandoffConfigError(f"{where}: mode is pull or auto")
    webhooks = []
    for i, w in enumerate(data.get("webhooks") or []):
        if not isinstance(w, dict) or not str(w.get("url", "")).startswith(("http://", "https://")):
            raise HandoffConfigError(f"{where}: webhooks[{i}] needs an http(s) url")
        webhooks.append(
            Webhook(w["url"], tuple(w.get("events") or WEBHOOK_EVENTS), w.get("secret_env"))
        )
    canned = tuple(
        {"title": str(c.get("title", "")), "text": str(c.get("text", ""))}
        for c in data.get("canned") or []
        if isinstance(c, dict)
    )
    return HandoffConfig(
        teams,
        tuple(rules),
        tz,
        hours,
        mode,
        int(data.get("capacity", 3)),
        float(data.get("queue_timeout", 300)),
        canned,
        tuple(webhooks),
    )


WEBHOOK_EVENTS = ("handoff.created", "handoff.assigned", "conversation.closed", "ticket.created")


def load(path: str | None) -> HandoffConfig:
    if path is None or not Path(path).is_file():
        return HandoffConfig()
    try:
        data = yaml.safe_load(Path(path).read_text("utf-8"))
    except yaml.YAMLError as exc:
        raise HandoffConfigError(f"{path}: {exc}") from None
    return parse(data, path)
