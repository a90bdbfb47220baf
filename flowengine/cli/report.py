"""`flowengine report` and `flowengine graph FLOW --stats`: the insights of a period, read from
the store the server uses (docs/insights.md, docs/cli.md).

They only read: the server's consumer keeps the counters (on SQLite the file is opened
read-only beside the running server; on Redis nothing is consumed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..insights import Insights, PeriodError
from ..insights.query import FilterError, days, filters, ran
from ..language import ir
from ..store import Store, StoreUnavailable

RELATIVE = re.compile(r"^(\d{1,4})d$")


class UsageError(ValueError):
    """A command-line value that cannot be used; the message says what to give."""


def today() -> date:
    return datetime.now(UTC).date()


def parse_day(value: str, option: str, *, until: date) -> date:
    """`7d` (the last 7 days up to `until`, inclusive) or a date `YYYY-MM-DD`."""
    if m := RELATIVE.match(value.strip()):
        n = int(m.group(1))
        if n < 1:
            raise UsageError(f"{option} {value}: give at least 1d")
        return until - timedelta(days=n - 1)
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(
            f"{option} {value!r}: give a number of days such as 7d, or a date such as 2026-11-01"
        ) from None


def period(args: argparse.Namespace) -> tuple[date, date]:
    until = parse_day(args.until, "--until", until=today()) if args.until else today()
    since = parse_day(args.since, "--since", until=until)
    if since > until:
        raise UsageError(f"--since {since} is after --until {until}")
    return since, until


def open_store(args: argparse.Namespace) -> Store:
    """The store the server uses: Redis with --redis-url (or FLOWENGINE_REDIS_URL), else the
    embedded store's file in --data-dir (default ./data), read-only."""
    redis_url = args.redis_url or os.environ.get("FLOWENGINE_REDIS_URL") or None
    if redis_url:
        from ..store.redis import RedisStore
        from ..store.redis_topology import read_password

        try:
            password = read_password(args.redis_password_file)
        except OSError as e:
            raise UsageError(f"--redis-password-file: {e.strerror}: {e.filename}") from None
        try:
            return RedisStore(redis_url, password=password, max_connections=4)
        except ValueError as e:
            raise UsageError(f"--redis-url: {e}") from None
    from ..store.sqlite import DataDirError, SqliteStore

    try:
        return SqliteStore(args.data_dir or "data", read_only=True)
    except DataDirError as e:
        raise UsageError(f"--data-dir: {e}") from None


async def _read(args: argparse.Namespace, project: ir.Project | None, what: str) -> Any:
    since, until = period(args)
    days(since, until)  # a period that cannot be reported is refused before the store is opened
    store = open_store(args)

    async def projects(version: str | None) -> ir.Project | None:
        return project

    try:
        insights = Insights(store, projects)
        if what != "report":
            _, _, version = filters(args.flow, None, args.flow_version)
            return await insights.funnel(args.flow, since, until, version=version)
        if args.format == "csv":
            return await insights.export_csv(since, until)
        everything = await insights.report(since, until)
        ran_in = [row["locale"] for row in everything["locales"]]
        flow, locale, version = filters(args.flow, args.locale, args.flow_version, ran_in)
        if flow is None and locale is None and version is None:
            return everything
        ran(everything, flow, locale, version)  # a typo would print zeros
        return await insights.report(since, until, flow=flow, locale=locale, version=version)
    finally:
        await store.close()


def run(args: argparse.Namespace, project: ir.Project | None, what: str) -> Any:
    """The report or the funnel; UsageError (a bad value, a store that cannot be read)."""
    try:
        return asyncio.run(_read(args, project, what))
    except (PeriodError, FilterError) as e:
        raise UsageError(str(e)) from None
    except StoreUnavailable as e:
        raise UsageError(f"cannot read the store: {e}") from None


def cmd_report(args: argparse.Namespace) -> int:
    try:
        report = run(args, None, "report")
    except UsageError as e:
        print(f"flowengine report: {e}", file=sys.stderr)
        return 2
    if args.format == "csv":
        sys.stdout.write(report)
    elif args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print(render_table(report))
    return 0


# -- the table -----------------------------------------------------------------------------------


def _num(value: Any, kind: str = "") -> str:
    if value is None:
        return "-"
    if kind == "%":
        return f"{value * 100:.1f}%"
    if kind == "s":
        return f"{value:g}s"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _change(now: Any, then: Any, kind: str) -> str:
    if now is None or then is None:
        return ""
    diff = now - then
    if kind == "%":
        return f"{diff * 100:+.1f} pt"
    return f"{diff:+g}" + ("s" if kind == "s" else "")


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in
              enumerate(headers)]  # fmt: skip
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line.rstrip()]
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return out


HEADLINE = [
    ("conversations", "conversations", ""),
    ("automated", "automated", ""),
    ("automation rate", "automation_rate", "%"),
    ("handed over", "handed_over", ""),
    ("abandoned", "abandoned", ""),
    ("CSAT yes/no (yes)", "csat_flow", "%"),
    ("  answers", "csat_flow_n", ""),
    ("CSAT 1-5 (mean)", "csat_agent", ""),
    ("  answers", "csat_agent_n", ""),
    ("queue wait p50", "queue_wait_p50", "s"),
    ("queue wait p90", "queue_wait_p90", "s"),
    ("first reply p50", "first_reply_p50", "s"),
    ("handle time p50", "handle_p50", "s"),
]


def render_table(r: dict[str, Any]) -> str:
    p, prev = r["period"], r["previous"]
    out = [
        f"Insights {p['since']} .. {p['until']} ({p['days']} day{'s' if p['days'] != 1 else ''}), "
        f"against {prev['since']} .. {prev['until']}",
        "",
    ]
    h, hp = r["headline"], r["headline_previous"]
    out += _table(
        ["", "this period", "previous", "change"],
        [
            [name, _num(h[k], kind), _num(hp[k], kind), _change(h[k], hp[k], kind)]
            for name, k, kind in HEADLINE
        ],
    )
    out += ["", "Handed over, by reason"]
    out += _table(["reason", "count"], [[k, str(v)] for k, v in r["handoff_reasons"].items()])
    out += ["", "Flows, worst drop-off first"]
    out += _table(
        ["flow", "started", "resolved", "handed over", "dropped", "drop rate", "csat yes/no"],
        [
            [f["flow"], str(f["started"]), str(f["resolved"]), str(f["handed_over"]),
             str(f["dropped"]), _num(f["drop_rate"], "%"), f"{f['csat_yes']}/{f['csat_no']}"]
            for f in r["flows"]
        ],
    )  # fmt: skip
    out += ["", "Days"]
    out += _table(
        ["day", "conversations", "automated", "rate", "handed over", "abandoned"],
        [
            [d["day"], str(d["conversations"]), str(d["automated"]),
             _num(d["automation_rate"], "%"), str(d["handed_over"]), str(d["abandoned"])]
            for d in r["daily"]
        ],
    )  # fmt: skip
    if r["locales"]:
        out += ["", "Locales"]
        out += _table(
            ["locale", "conversations", "automation rate"],
            [
                [x["locale"], str(x["conversations"]), _num(x["automation_rate"], "%")]
                for x in r["locales"]
            ],
        )
    if r["agents"]:
        out += ["", "Agents"]
        out += _table(
            ["agent", "chats", "first reply p50", "handle p50", "csat", "answers"],
            [
                [a["agent"], str(a["chats"]), _num(a["first_reply_p50"], "s"),
                 _num(a["handle_p50"], "s"), _num(a["csat"]), str(a["csat_n"])]
                for a in r["agents"]
            ],
        )  # fmt: skip
    out += _typed_table(r["typed"])
    t = r["tickets"]
    out += [
        "",
        f"Tickets filed in the period: {t['open']} open, {t['done']} done; "
        f"offline hand-offs: {t['offline_handoffs']}",
    ]
    return "\n".join(out)


def _typed_table(t: dict[str, Any]) -> list[str]:
    if not t["steps"]:
        return []
    out = ["", f"Typed text: {t['matched']} matched, {t['unmatched']} unmatched, by step"]
    out += _table(
        ["flow", "step", "matched", "unmatched", "unmatched rate"],
        [[s["flow"], s["step"], str(s["matched"]), str(s["unmatched"]),
          _num(s["unmatched_rate"], "%")] for s in t["steps"]],
    )  # fmt: skip
    if t["unmatched_texts"]:
        out += ["", "Typed text nobody matched (kept, masked), most frequent first"]
        out += _table(
            ["count", "locale", "flow", "step", "text"],
            [[str(x["count"]), x["locale"], x["flow"], x["step"], x["text"]]
             for x in t["unmatched_texts"]],
        )  # fmt: skip
    return out


def add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--since",
        default="7d",
        help="first day: Nd (the last N days, up to --until) or YYYY-MM-DD (default 7d)",
    )
    p.add_argument("--until", default=None, help="last day, YYYY-MM-DD (default: today, UTC)")
    p.add_argument(
        "--flow-version",
        default=None,
        metavar="VERSION",
        help="count only sessions on this flow version",
    )
    p.add_argument(
        "--redis-url",
        default=None,
        help="the Redis the server uses (env FLOWENGINE_REDIS_URL); none: the embedded store",
    )
    p.add_argument(
        "--redis-password-file",
        default=None,
        metavar="PATH",
        help="the Redis password (else env FLOWENGINE_REDIS_PASSWORD, else the URL's)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="the embedded store's directory, as `serve` was given it (default: ./data)",
    )
