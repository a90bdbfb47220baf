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


# Day names and how a span is written, per shipped locale (others fall back to English).
_DAY_NAMES = {
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
    "cs": ("po", "út", "st", "čt", "pá", "so", "ne"),
    "th": ("จ.", "อ.", "พ.", "พฤ.", "ศ.", "ส.", "อา."),
    "id": ("Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu"),
    "ro": ("lun.", "mar.", "mie.", "joi", "vin.", "sâm.", "dum."),
}
_AND = {"en": " and ", "cs": " a ", "th": " และ ", "id": " dan ", "ro": " și "}


def _clock(minute: int, locale: str) -> str:
    h, mm = divmod(minute, 60)
    if locale == "id":
        return f"{h:02d}.{mm:02d}"  # Indonesian writes 08.00
    return f"{h}:{mm:02d}"


def opening_hours(config: HandoffConfig, locale: str, now: float) -> str:
    """The schedule as a shopper reads it, e.g. "Mon-Fri 8:00-18:00, Sat 9:00-12:00 (CET)"
    (with en dashes); "" when no hours are set (always open). Consecutive days with the same
    hours are joined."""
    if not config.hours:
        return ""
    lang = locale.split("-")[0].lower()
    names = _DAY_NAMES.get(lang, _DAY_NAMES["en"])
    spans = [config.hours.get(day, ()) for day in DAYS]
    groups: list[tuple[int, int]] = []  # (first day, last day) with the same, non-empty hours
    for i, day_spans in enumerate(spans):
        if not day_spans:
            continue
        if groups and groups[-1][1] == i - 1 and spans[groups[-1][0]] == day_spans:
            groups[-1] = (groups[-1][0], i)
        else:
            groups.append((i, i))
    parts = []
    for first, last in groups:
        days = names[first] if first == last else f"{names[first]}–{names[last]}"
        times = _AND.get(lang, _AND["en"]).join(
            f"{_clock(a, lang)}–{_clock(b, lang)}" for a, b in spans[first]
        )
        parts.append(f"{days} {times}")
    zone = datetime.fromtimestamp(now, ZoneInfo(config.timezone)).tzname() or config.timezone
    if not zone.isalpha():
        zone = config.timezone  # "+07" says less than "Asia/Bangkok"
    return f"{', '.join(parts)} ({zone})"
