"""Which team and priority a handoff goes to, and whether anyone is working now. Pure."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from .config import DAYS, PRIORITIES, HandoffConfig


def route(
    config: HandoffConfig, flow: str, reason: str | None, queue: str, priority: str
) -> tuple[str, str]:
    """The first matching rule wins; else the queue the flow named, if it is a team."""
    for rule in config.rules:
        if rule.matches(flow, reason):
            return rule.team, rule.priority or priority
    team = queue if queue in config.teams else config.teams[0]
    return team, priority


def score(priority: str, created: float) -> float:
    """Queue order: higher priority first, then who waited longest."""
    rank = PRIORITIES.index(priority) if priority in PRIORITIES else 1
    return (len(PRIORITIES) - 1 - rank) * 1e11 + created


def is_open(config: HandoffConfig, now: float) -> bool:
    if not config.hours:
        return True
    local = datetime.fromtimestamp(now, ZoneInfo(config.timezone))
    minute = local.hour * 60 + local.minute
    return any(a <= minute < b for a, b in config.hours.get(DAYS[local.weekday()], ()))
