"""The query API: the stored counters of a period read back as the numbers docs/insights.md
defines (`Insights.report`, `.funnel`, `.export_csv`).

Reading is pure arithmetic over `Counters`; the only I/O is the store read (and, for a funnel,
the flow's graph from the project its version compiled to).
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ..graph import flow_edges
from ..language import ir
from ..language.text import fallback_chain
from ..store import Store
from . import fold as f
from .consumer import Consumer

# The project a flow version compiled to (None: the current one); None when unknown.
Projects = Callable[[str | None], Awaitable[ir.Project | None]]

# Always listed; they add up to the hand-offs (what became of one, e.g. offline, is not a reason).
REASONS = ("asked", "action_error", "no_match", "unsolved", "flow")
HEAVIEST = 3  # steps named as the heaviest drop-offs
KEPT_TEXTS = 50  # unmatched texts listed, the most frequent first (intents.keep_unmatched)
MAX_DAYS = 3660  # a period longer than ten years is refused


class PeriodError(ValueError):
    """A period that cannot be reported (until before since, too long)."""


class FilterError(ValueError):
    """A filter (flow, locale, flow version) that is not one: the message says what to send."""


# The forms of the filters, as the dashboard's API and `flowengine report` take them: a flow id,
# a locale tag (en, pt-BR), a flow version id (hex). Anything else is a typo, said as such.
FLOW = re.compile(r"[A-Za-z0-9_.-]{1,100}")
LOCALE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")
VERSION = re.compile(r"[0-9A-Fa-f]{6,64}")


def filters(
    flow: str | None, locale: str | None, version: str | None, locales: Iterable[str] = ()
) -> tuple[str | None, str | None, str | None]:
    """The filters as the counters are keyed: a locale in lower case, as the shopper reads it
    when `locales` (the project's) are known (`cs` for `cs-CZ`), a version id in lower case.
    FilterError for one that is not of its form."""
    for name, value, pattern, what in (
        ("flow", flow, FLOW, "a flow id"),
        ("locale", locale, LOCALE, "a locale such as en or pt-BR"),
        ("version", version, VERSION, "a flow version id (hex)"),
    ):
        if value is not None and not pattern.fullmatch(value):
            raise FilterError(f"{name} must be {what}, not {value[:40]!r}")
    if locale is not None:
        chain = fallback_chain(locale, "")  # cs-CZ: ("cs-cz", "cs")
        locale = next((c for c in chain if c in set(locales)), chain[0])
    return flow, locale, version.lower() if version else None


def ran(
    report: dict[str, Any], flow: str | None, locale: str | None, version: str | None = None
) -> None:
    """FilterError unless the filters name something that ran in the report's period (for
    the CLI: a typo would otherwise print zeros)."""
    flows = sorted(row["flow"] for row in report["flows"])
    if flow is not None and flow not in flows:
        raise FilterError(
            f"no conversation ran flow {flow!r} in this period (flows that ran: "
            + (", ".join(flows) or "none")
            + ")"
        )
    locales = sorted(row["locale"] for row in report["locales"])
    if locale is not None and locale not in locales:
        raise FilterError(
            f"no conversation was in locale {locale!r} in this period (locales: "
            + (", ".join(locales) or "none")
            + ")"
        )
    versions = sorted({v for row in report["flows"] for v in row["versions"]})
    if version is not None and version not in versions:
        raise FilterError(
            f"no conversation ran flow version {version!r} in this period (versions: "
            + (", ".join(versions) or "none")
            + ")"
        )


def days(since: date, until: date) -> list[str]:
    if until < since:
        raise PeriodError(f"the period ends ({until}) before it starts ({since})")
    n = (until - since).days + 1
    if n > MAX_DAYS:
        raise PeriodError(f"a period of {n} days is too long (at most {MAX_DAYS})")
    return [(since + timedelta(days=i)).isoformat() for i in range(n)]


def previous(since: date, until: date) -> tuple[date, date]:
    """The period of the same length just before."""
    n = (until - since).days + 1
    return since - timedelta(days=n), since - timedelta(days=1)


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass(frozen=True, slots=True)
class Counters:
    """The counters of some days, parsed."""

    items: tuple[tuple[f.Key, int], ...]

    @classmethod
    def of(cls, raw: dict[str, dict[str, int]]) -> Counters:
        out = []
        for day, fields in raw.items():
            for field, value in fields.items():
                try:
                    out.append((f.Key.parse(day, field), int(value)))
                except ValueError:
                    continue  # not ours (a hand-written field): ignored
        return cls(tuple(out))

    def where(self, **match: str | None) -> Counters:
        """The counters whose named parts equal the given values (None: any)."""
        wanted = {k: v for k, v in match.items() if v is not None}
        return Counters(
            tuple(
                (k, n) for k, n in self.items if all(getattr(k, a) == v for a, v in wanted.items())
            )
        )

    def of_metric(self, metric: str) -> Iterator[tuple[f.Key, int]]:
        return ((k, n) for k, n in self.items if k.metric == metric)

    def sum(self, metric: str, **match: str) -> int:
        return sum(
            n
            for k, n in self.of_metric(metric)
            if all(getattr(k, a) == v for a, v in match.items())
        )

    def by(self, metric: str, part: str) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for k, n in self.of_metric(metric):
            out[getattr(k, part)] += n
        return dict(out)

    def histogram(self, metric: str, agent: str | None = None) -> dict[str, int]:
        """bucket label -> count (of one agent, or all)."""
        out: dict[str, int] = defaultdict(int)
        for k, n in self.of_metric(metric):
            who, _, label = k.detail.rpartition("@")
            if agent is None or who == agent:
                out[label] += n
        return dict(out)

    def scores(self, agent: str | None = None) -> tuple[int, int]:
        """(sum of 1..5 scores, how many) of the five-point CSAT (of one agent, or all)."""
        total = count = 0
        for k, n in self.of_metric(f.CSAT_AGENT):
            who, _, score = k.detail.rpartition("@")
            if agent is None or who == agent:
                total += int(score) * n
                count += n
        return total, count


def percentile(histogram: dict[str, int], q: float) -> float | None:
    """The upper bound of the bucket the q-th quantile falls in (None: no values); a value over
    the last bound reads as the last bound."""
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for label in sorted(histogram, key=f.bucket_bound):
        seen += histogram[label]
        if seen >= q * total:
            bound = f.bucket_bound(label)
            return float(f.BOUNDS[-1]) if bound == float("inf") else bound
    return float(f.BOUNDS[-1])


def headline(c: Counters) -> dict[str, Any]:
    conversations = c.sum(f.CONVERSATIONS)
    automated = c.sum(f.AUTOMATED)
    yes, no = c.sum(f.CSAT_FLOW, detail="yes"), c.sum(f.CSAT_FLOW, detail="no")
    score, scored = c.scores()
    wait = c.histogram(f.WAIT)
    return {
        "conversations": conversations,
        "automated": automated,
        "automation_rate": rate(automated, conversations),
        "handed_over": c.sum(f.HANDOFF),
        "abandoned": c.sum(f.DROPPED),
        "csat_flow": rate(yes, yes + no),
        "csat_flow_n": yes + no,
        "csat_agent": round(score / scored, 2) if scored else None,
        "csat_agent_n": scored,
        "queue_wait_p50": percentile(wait, 0.5),
        "queue_wait_p90": percentile(wait, 0.9),
        "first_reply_p50": percentile(c.histogram(f.FIRST_REPLY), 0.5),
        "handle_p50": percentile(c.histogram(f.HANDLE), 0.5),
    }


def daily(c: Counters, period: list[str]) -> list[dict[str, Any]]:
    out = []
    for day in period:
        d = c.where(day=day)
        conversations, automated = d.sum(f.CONVERSATIONS), d.sum(f.AUTOMATED)
        out.append(
            {
                "day": day,
                "conversations": conversations,
                "automated": automated,
                "automation_rate": rate(automated, conversations),
                "handed_over": d.sum(f.HANDOFF),
                "abandoned": d.sum(f.DROPPED),
            }
        )
    return out


def handoff_reasons(c: Counters) -> dict[str, int]:
    out = dict.fromkeys(REASONS, 0)
    for reason, n in c.by(f.HANDOFF, "detail").items():
        out[reason] = out.get(reason, 0) + n
    return out


def flows(c: Counters) -> list[dict[str, Any]]:
    names = {k.flow for k, _ in c.items if k.flow and k.metric != f.CONVERSATIONS}
    out: list[dict[str, Any]] = []
    for name in names:
        fc = c.where(flow=name)
        started, dropped = fc.sum(f.FLOW_STARTED), fc.sum(f.DROPPED)
        out.append(
            {
                "flow": name,
                "started": started,
                "resolved": fc.sum(f.FLOW_ENDED, detail="resolved"),
                "handed_over": fc.sum(f.HANDOFF),
                "dropped": dropped,
                "drop_rate": rate(dropped, started),
                "csat_yes": fc.sum(f.CSAT_FLOW, detail="yes"),
                "csat_no": fc.sum(f.CSAT_FLOW, detail="no"),
                "versions": sorted({k.version for k, _ in fc.items if k.version}),
            }
        )
    # Worst first: the highest drop rate, then the most drop-offs, then the most started.
    out.sort(
        key=lambda r: (
            -(r["drop_rate"] if r["drop_rate"] is not None else -1),
            -r["dropped"],
            -r["started"],
            r["flow"],
        )
    )
    return out


def locales(c: Counters) -> list[dict[str, Any]]:
    conversations = c.by(f.CONVERSATIONS, "locale")
    automated = c.by(f.AUTOMATED, "locale")
    return [
        {
            "locale": loc,
            "conversations": conversations.get(loc, 0),
            "automation_rate": rate(automated.get(loc, 0), conversations.get(loc, 0)),
        }
        for loc in sorted(
            set(conversations) | set(automated), key=lambda x: (-conversations.get(x, 0), x)
        )
    ]


def agents(c: Counters) -> list[dict[str, Any]]:
    chats = c.by(f.ASSIGNED, "detail")
    names = set(chats)
    for metric in (*f.HISTOGRAMS, f.CSAT_AGENT):
        names |= {k.detail.rpartition("@")[0] for k, _ in c.of_metric(metric)}
    names.discard("")
    out: list[dict[str, Any]] = []
    for name in names:
        score, scored = c.scores(name)
        out.append(
            {
                "agent": name,
                "chats": chats.get(name, 0),
                "first_reply_p50": percentile(c.histogram(f.FIRST_REPLY, name), 0.5),
                "handle_p50": percentile(c.histogram(f.HANDLE, name), 0.5),
                "csat": round(score / scored, 2) if scored else None,
                "csat_n": scored,
            }
        )
    out.sort(key=lambda r: (-r["chats"], r["agent"]))
    return out


def typed(c: Counters) -> dict[str, Any]:
    """Typed text: matched and unmatched per step where shoppers typed (the most unmatched
    first), what the matches led to, and the kept unmatched texts (masked; only a project with
    `intents.keep_unmatched` keeps them), the most frequent first."""
    matched: dict[tuple[str, str], int] = defaultdict(int)
    unmatched: dict[tuple[str, str], int] = defaultdict(int)
    for counts, metric in ((matched, f.MATCHED), (unmatched, f.UNMATCHED)):
        for k, n in c.of_metric(metric):
            counts[(k.flow, k.step)] += n
    where = sorted(set(matched) | set(unmatched), key=lambda fs: (-unmatched[fs], -matched[fs], fs))
    steps = [
        {
            "flow": flow,
            "step": step,
            "matched": matched[(flow, step)],
            "unmatched": unmatched[(flow, step)],
            "unmatched_rate": rate(
                unmatched[(flow, step)], matched[(flow, step)] + unmatched[(flow, step)]
            ),
        }
        for flow, step in where
    ]
    targets = sorted(c.by(f.MATCHED, "detail").items(), key=lambda kv: (-kv[1], kv[0]))
    texts: dict[tuple[str, str, str, str], int] = defaultdict(int)
    for k, n in c.of_metric(f.UNMATCHED):
        if k.detail:
            texts[(k.detail, k.locale, k.flow, k.step)] += n
    kept = sorted(texts.items(), key=lambda kv: (-kv[1], kv[0]))[:KEPT_TEXTS]
    return {
        "matched": sum(matched.values()),
        "unmatched": sum(unmatched.values()),
        "steps": steps,
        "targets": [{"target": t, "count": n} for t, n in targets],
        "unmatched_texts": [
            {"text": text, "locale": loc, "flow": flow, "step": step, "count": n}
            for (text, loc, flow, step), n in kept
        ],
    }


def tickets(inbox: Iterable[dict[str, Any]], period: list[str], offline: int) -> dict[str, int]:
    """Tickets filed in the period, by their status now."""
    first, last = period[0], period[-1]
    counts = {"open": 0, "done": 0}
    for t in inbox:
        at = t.get("created_at")
        if isinstance(at, int | float) and first <= f.day_of(at) <= last:
            status = t.get("status")
            if status in counts:
                counts[str(status)] += 1
    return {**counts, "offline_handoffs": offline}


class Insights:
    """The query API over the stored counters (docs/insights.md), and the consumer that keeps
    them (started and stopped with the server)."""

    def __init__(
        self,
        store: Store,
        projects: Projects,
        *,
        retention_days: int = 400,
        interval: float = 1.0,
        idle: float = 60.0,
        clock: Callable[[], float] = time.time,
        on_folded: Callable[[f.Increments], None] | None = None,
        keep_log: float = 24 * 3600.0,
    ) -> None:
        self.store = store
        self.projects = projects
        self.consumer = Consumer(
            store,
            retention_days=retention_days,
            interval=interval,
            idle=idle,
            clock=clock,
            on_folded=on_folded,
            keep_log=keep_log,
        )

    @property
    def retention_days(self) -> int:
        """How many days after it a day's counters are kept."""
        return self.consumer.retention_days

    def start(self) -> None:
        self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def catch_up(self) -> int:
        """Fold what the log holds now (the consumer does it every `interval` s anyway)."""
        return await self.consumer.catch_up()

    async def _counters(self, period: list[str]) -> Counters:
        return Counters.of(await self.store.insight_counts(period))

    async def report(
        self,
        since: date,
        until: date,
        *,
        flow: str | None = None,
        locale: str | None = None,
        version: str | None = None,
    ) -> dict[str, Any]:
        """Headline, daily, hand-off reasons, flows, locales, agents and tickets for the days
        `since`..`until` (inclusive, UTC), and the headline of the same length just before.
        `PeriodError` for a period that ends before it starts or is over ten years."""
        period = days(since, until)
        before_since, before_until = previous(since, until)
        before = days(before_since, before_until)
        raw = await self.store.insight_counts(before + period)
        every = Counters.of(raw).where(flow=flow, locale=locale, version=version)
        now = Counters(tuple((k, n) for k, n in every.items if k.day >= period[0]))
        then = Counters(tuple((k, n) for k, n in every.items if k.day < period[0]))
        inbox = await self.store.tickets(limit=100_000)
        return {
            "period": {"since": period[0], "until": period[-1], "days": len(period)},
            "previous": {"since": before[0], "until": before[-1]},
            "headline": headline(now),
            "headline_previous": headline(then),
            "daily": daily(now, period),
            "handoff_reasons": handoff_reasons(now),
            "flows": flows(now),
            "locales": locales(now),
            "agents": agents(now),
            "tickets": tickets(inbox, period, now.sum(f.OFFLINE)),
            "typed": typed(now),
        }

    async def funnel(
        self, flow: str, since: date, until: date, *, version: str | None = None
    ) -> dict[str, Any]:
        """One flow's steps in flow order with entries, drop-offs and where shoppers went
        next, its graph's edges with how often each was taken, and the versions that ran in
        the period. The graph is the chosen version's (else the current one's); `KeyError`
        when no version knows the flow and no shopper ran it."""
        c = (await self._counters(days(since, until))).where(flow=flow)
        versions = sorted({k.version for k, _ in c.items if k.version})
        c = c.where(version=version)
        project = await self.projects(version)
        if (project is None or flow not in project.flows) and version is not None:
            project = await self.projects(None)  # that version is gone: the current graph
        graph = project.flows.get(flow) if project is not None else None
        if graph is None and not c.items:
            raise KeyError(flow)
        entered, dropped = c.by(f.ENTERED, "step"), c.by(f.DROPPED, "step")
        handoffs = c.by(f.HANDOFF, "step")
        nexts: dict[str, dict[str, int]] = defaultdict(dict)
        for k, n in c.of_metric(f.NEXT):
            nexts[k.step][k.detail] = nexts[k.step].get(k.detail, 0) + n
        order = list(graph.steps) if graph is not None else []
        kinds = {key: s.kind for key, s in graph.steps.items()} if graph is not None else {}
        # Steps counted but not in this graph (another version had them) come last.
        order += sorted((set(entered) | set(dropped)) - set(order))
        steps: list[dict[str, Any]] = [
            {
                "step": key,
                "kind": kinds.get(key, "unknown"),
                "entered": entered.get(key, 0),
                "dropped": dropped.get(key, 0),
                "drop_rate": rate(dropped.get(key, 0), entered.get(key, 0)),
                "next": dict(sorted(nexts.get(key, {}).items())),
            }
            for key in order
        ]
        edges = _edges(graph, entered, dropped, handoffs, nexts) if graph is not None else []
        worst = sorted((s for s in steps if s["dropped"]), key=lambda s: (-s["dropped"], s["step"]))
        return {
            "flow": flow,
            "version": version,
            "versions": versions,
            "steps": steps,
            "edges": edges,
            "heaviest": [s["step"] for s in worst[:HEAVIEST]],
        }

    async def export_csv(self, since: date, until: date) -> str:
        """Every counter of the period, one row each: day, metric, flow, version, locale, step,
        detail, value (sorted)."""
        c = await self._counters(days(since, until))
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["day", "metric", "flow", "version", "locale", "step", "detail", "value"])
        for k, n in sorted(c.items, key=lambda kn: (kn[0].day, kn[0].field)):
            w.writerow([k.day, k.metric, k.flow, k.version, k.locale, k.step, _cell(k.detail), n])
        return out.getvalue()


def _cell(value: str) -> str:
    """A shopper's kept text as a spreadsheet reads it literally: one starting like a formula
    (= + - @, a tab or carriage return) gets a leading apostrophe (OWASP's CSV injection rule)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _edges(
    graph: ir.Flow,
    entered: dict[str, int],
    dropped: dict[str, int],
    handoffs: dict[str, int],
    nexts: dict[str, dict[str, int]],
) -> list[dict[str, Any]]:
    """The graph's edges with how often each was taken: to a step, as `step_entered.from` says;
    to `handoff`, the hand-offs requested at the step. The events do not name the step a flow
    ended or left for another flow at: a step with one such edge gets the entries not
    accounted for otherwise (left toward a step, handed off, dropped); several such edges, 0."""
    edges = flow_edges(graph)
    out = []
    for src, dst, label in edges:
        if dst in graph.steps:
            count = nexts.get(src, {}).get(dst, 0)
        elif dst == ir.HANDOFF:
            count = handoffs.get(src, 0)
        else:
            silent = [
                e for e in edges if e[0] == src and e[1] not in graph.steps and e[1] != ir.HANDOFF
            ]
            rest = (
                entered.get(src, 0)
                - sum(nexts.get(src, {}).values())
                - handoffs.get(src, 0)
                - dropped.get(src, 0)
            )
            count = max(rest, 0) if len(silent) == 1 else 0
        out.append({"from": src, "to": dst, "label": label, "count": count})
    return out
