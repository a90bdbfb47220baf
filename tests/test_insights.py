"""Insights end to end: scripted conversations through the real app (shopper sockets, an agent
console) on each store — memory, SQLite, a real redis-server — produce exactly the expected
report, funnel, CSV and Prometheus counters; and the pure fold and percentiles on their own."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowengine.handoff.accounts import Account
from flowengine.handoff.passwords import hash_password
from flowengine.insights import Insights, PeriodError
from flowengine.insights import fold as f
from flowengine.insights.query import percentile
from flowengine.server.config import ServerConfig
from tests.app_server import AppServer, Clock
from tests.server_process import Agent, Client, eventually

FLOW = """\
flow: shop
steps:
  - id: menu
    menu: Hi
    options:
      - {id: answer, label: An answer, goto: answer}
      - {id: rate, label: Rate us, goto: stars}
      - {id: person, label: A person, handoff: {reason: help}}
  - id: answer
    say: Here is the answer.
  - id: solved
    csat: yes_no
    on_no: handoff
  - id: done
    end: resolved
  - id: stars
    csat: five
    on_low: sorry
  - id: thanks
    end: resolved
  - id: sorry
    say: Sorry to hear that.
    next: end
"""

PASSWORD = "correct-horse-battery"
NOON = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
TODAY = NOON.date()


def _flows(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "flowengine.yaml").write_text("start: shop\nlocales: [en, cs]\nhandoff: {csat: true}\n")
    (root / "shop.yaml").write_text(FLOW)
    return root


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AppServer]:
    redis_url = data_dir = None
    if request.param == "redis":
        redis = request.getfixturevalue("redis_server")
        redis.flush()
        redis_url = redis.url
    elif request.param == "sqlite":
        data_dir = str(tmp_path / "data")
    config = ServerConfig(
        flows_dir=str(_flows(tmp_path / "flows")),
        redis_url=redis_url,
        data_dir=data_dir,
        agents_file=str(tmp_path / "agents.json"),
        insights_interval=3600,  # the test folds when it wants (catch_up), not on a timer
    )
    async with AppServer(config, Clock(NOON.timestamp())) as s:
        s.runtime.handoffs.accounts.put(
            Account("ana", "Ana", "agent", ("general",), hash_password(PASSWORD))
        )
        yield s


async def _script(server: AppServer) -> None:
    """Four conversations: resolved by the flow (and "yes, it solved it"); handed to a person
    who takes 40 s to come, answers after 15 s, closes after 120 s, and gets a 4 of 5; dropped
    at `stars`; restarted at `solved` (a drop-off there) then resolved with a 5 of 5."""
    clock = server.runtime.clock
    assert isinstance(clock, Clock)
    agent = await Agent.login(server, "ana", PASSWORD)
    await agent.until(lambda fr: fr["type"] == "queue")

    a = await Client.connect(server.ws_url)
    await a.act({"type": "choose", "option": "answer"})
    await a.act({"type": "choose", "option": "yes"})

    b = await Client.connect(server.ws_url, locale="cs")
    await b.act({"type": "choose", "option": "person"})
    waiting = await agent.until(lambda fr: fr["type"] == "queue" and fr["waiting"])
    sid = waiting["waiting"][0]["session"]
    clock.advance(40)
    assert (await agent.act({"type": "claim", "session": sid}))["type"] == "ack"
    clock.advance(15)
    await agent.act({"type": "reply", "session": sid, "text": "Hi, how can I help?"})
    clock.advance(105)
    await agent.act({"type": "close", "session": sid})
    await b.until(lambda fr: fr.get("csat") == "five")
    await b.act({"type": "choose", "option": "4"})

    c = await Client.connect(server.ws_url)
    await c.act({"type": "choose", "option": "rate"})
    await c.close()  # gone at `stars`

    d = await Client.connect(server.ws_url)
    await d.act({"type": "choose", "option": "answer"})
    await d.act({"type": "restart"})
    await d.act({"type": "choose", "option": "rate"})
    await d.act({"type": "choose", "option": "5"})

    for s in (a, b, d):
        await s.close()
    await agent.close()

    async def abandoned() -> bool:
        await server.runtime.analytics.flush()
        events = await server.runtime.store.read_events(1000)
        return any(e["type"] == "session_abandoned" for e in events)

    await eventually(abandoned)
    await server.runtime.insights.catch_up()


HEADLINE = {
    "conversations": 5,  # a, b, c, and d twice (a restart begins a conversation)
    "automated": 2,  # a, and d's second
    "automation_rate": 0.4,
    "handed_over": 1,
    "abandoned": 2,  # c closed its tab at `stars`; d restarted at `solved`
    "csat_flow": 1.0,
    "csat_flow_n": 1,
    "csat_agent": 4.5,  # b's 4 for ana, d's 5 for the flow
    "csat_agent_n": 2,
    "queue_wait_p50": 45.0,  # 40 s, in the bucket up to 45
    "queue_wait_p90": 45.0,
    "first_reply_p50": 15.0,  # 15 s, in the bucket up to 15
    "handle_p50": 120.0,  # 15 + 105 s
}
EMPTY = {
    **dict.fromkeys(HEADLINE, 0),
    **dict.fromkeys(
        [
            *("automation_rate", "csat_flow", "csat_agent"),
            *("queue_wait_p50", "queue_wait_p90", "first_reply_p50", "handle_p50"),
        ],
        None,
    ),
}


async def test_scripted_conversations_give_exactly_the_expected_numbers(
    server: AppServer,
) -> None:
    await _script(server)
    insights: Insights = server.runtime.insights
    week = TODAY - timedelta(days=6)
    report = await insights.report(week, TODAY)
    assert report["period"] == {"since": week.isoformat(), "until": TODAY.isoformat(), "days": 7}
    assert report["previous"] == {
        "since": (week - timedelta(days=7)).isoformat(),
        "until": (week - timedelta(days=1)).isoformat(),
    }
    assert report["headline"] == HEADLINE
    assert report["headline_previous"] == EMPTY
    assert [d["day"] for d in report["daily"]] == [
        (week + timedelta(days=i)).isoformat() for i in range(7)
    ]
    assert report["daily"][-1] == {
        "day": TODAY.isoformat(),
        "conversations": 5,
        "automated": 2,
        "automation_rate": 0.4,
        "handed_over": 1,
        "abandoned": 2,
    }
    assert all(d["conversations"] == 0 for d in report["daily"][:-1])
    assert report["handoff_reasons"] == {
        "asked": 1, "action_error": 0, "no_match": 0, "unsolved": 0, "flow": 0,
    }  # fmt: skip
    version = server.runtime.flows.current.version  # type: ignore[union-attr]
    assert report["flows"] == [
        {
            "flow": "shop",
            "started": 5,
            "resolved": 2,
            "handed_over": 1,
            "dropped": 2,
            "drop_rate": 0.4,
            "csat_yes": 1,
            "csat_no": 0,
            "versions": [version],
        }
    ]
    assert report["locales"] == [
        {"locale": "en", "conversations": 4, "automation_rate": 0.5},
        {"locale": "cs", "conversations": 1, "automation_rate": 0.0},
    ]
    assert report["agents"] == [
        {
            "agent": "ana",
            "chats": 1,
            "first_reply_p50": 15.0,
            "handle_p50": 120.0,
            "csat": 4.0,
            "csat_n": 1,
        }
    ]
    assert report["tickets"] == {"open": 0, "done": 0, "offline_handoffs": 0}

    # Filters: one locale, a flow nobody ran, a version that never ran.
    cs = await insights.report(TODAY, TODAY, locale="cs")
    assert cs["headline"]["conversations"] == 1 and cs["headline"]["handed_over"] == 1
    assert (await insights.report(TODAY, TODAY, flow="nope"))["headline"] == EMPTY
    assert (await insights.report(TODAY, TODAY, version="v0"))["flows"] == []

    funnel = await insights.funnel("shop", TODAY, TODAY)
    assert funnel["versions"] == [version] and funnel["version"] is None
    steps = {s["step"]: s for s in funnel["steps"]}
    assert [s["step"] for s in funnel["steps"]][:2] == ["menu", "answer"]
    assert {k: (s["kind"], s["entered"], s["dropped"]) for k, s in steps.items()} == {
        "menu": ("menu", 5, 0),
        "answer": ("say", 2, 0),
        "solved": ("csat", 2, 1),
        "done": ("end", 1, 0),
        "stars": ("csat", 2, 1),
        "thanks": ("end", 1, 0),
        "sorry": ("say", 0, 0),
    }
    assert steps["menu"]["next"] == {"answer": 2, "stars": 2}
    assert steps["solved"]["next"] == {"done": 1} and steps["solved"]["drop_rate"] == 0.5
    assert steps["stars"]["next"] == {"thanks": 1}
    edges = {(e["from"], e["to"], e["label"]): e["count"] for e in funnel["edges"]}
    assert edges[("menu", "answer", "option:answer")] == 2
    assert edges[("menu", "handoff", "option:person")] == 1
    assert edges[("stars", "sorry", "low")] == 0
    assert funnel["heaviest"] == ["solved", "stars"]
    pinned = await insights.funnel("shop", TODAY, TODAY, version=version)
    assert pinned["steps"] == funnel["steps"]
    with pytest.raises(KeyError):
        await insights.funnel("nope", TODAY, TODAY)

    rows = list(csv.DictReader(io.StringIO(await insights.export_csv(TODAY, TODAY))))
    conversations = [r for r in rows if r["metric"] == "conversations"]
    assert sum(int(r["value"]) for r in conversations) == 5
    assert {(r["locale"], r["value"]) for r in conversations} == {("en", "4"), ("cs", "1")}
    assert all(r["day"] == TODAY.isoformat() and r["version"] == version for r in rows)

    status, text = await server.get("/metrics")
    assert status == 200
    for line in (
        "flowengine_conversations_total 5.0",
        "flowengine_conversations_automated_total 2.0",
        "flowengine_conversations_abandoned_total 2.0",
        'flowengine_handoffs_total{reason="asked"} 1.0',
        'flowengine_csat_answers_total{answer="yes",scale="yes_no"} 1.0',
        'flowengine_csat_answers_total{answer="4",scale="five"} 1.0',
        'flowengine_csat_answers_total{answer="5",scale="five"} 1.0',
    ):
        assert line in text.splitlines(), line

    # Nothing is counted twice by folding again, and no shopper text is kept.
    assert await server.runtime.insights.catch_up() == 0
    assert (await insights.report(TODAY, TODAY))["headline"] == HEADLINE
    assert "how can I help" not in await insights.export_csv(TODAY, TODAY)


async def test_a_period_that_cannot_be_reported_is_refused(server: AppServer) -> None:
    insights = server.runtime.insights
    with pytest.raises(PeriodError, match=r"ends .* before it starts"):
        await insights.report(TODAY, TODAY - timedelta(days=1))
    with pytest.raises(PeriodError, match="too long"):
        await insights.report(date(2000, 1, 1), TODAY)


async def test_the_consumer_runs_by_itself_off_the_click(tmp_path: Path) -> None:
    config = ServerConfig(flows_dir=str(_flows(tmp_path / "flows")), insights_interval=0.05)
    async with AppServer(config) as s:
        c = await Client.connect(s.ws_url)
        await c.act({"type": "choose", "option": "answer"})
        await c.act({"type": "choose", "option": "yes"})
        today = datetime.now(UTC).date()

        async def counted() -> bool:
            report = await s.runtime.insights.report(today, today)
            return bool(report["headline"]["automated"] == 1)

        await eventually(counted)
        await c.close()


# -- the fold and percentiles, pure ----------------------------------------------------------


def _event(kind: str, **fields: Any) -> dict[str, Any]:
    at = datetime(2026, 11, 2, 23, 59, 59, tzinfo=UTC).timestamp()
    return {"type": kind, "at": at, "session": "s", "version": "v1", "locale": "en", **fields}


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (_event("conversation_started", flow="main"), [("conversations", "", "")]),
        (
            _event("conversation_ended", flow="main", resolution="resolved", person=False),
            [("ended", "", "resolved"), ("automated", "", "")],
        ),
        (
            _event("conversation_ended", flow="main", resolution="resolved", person=True),
            [("ended", "", "resolved")],
        ),
        (
            _event("step_entered", flow="main", step="b", **{"from": "a"}),
            [("entered", "b", ""), ("next", "a", "b")],
        ),
        (_event("step_entered", flow="main", step="a", **{"from": None}), [("entered", "a", "")]),
        (_event("session_abandoned", flow="main", step="a"), [("dropped", "a", "session")]),
        (_event("conversation_abandoned", flow="main", step="a"), [("dropped", "a", "restart")]),
        (
            _event("handoff_requested", flow="main", step="a", reason="no_match", queue="g"),
            [("handoff", "a", "no_match")],
        ),
        (_event("handoff_offline", flow="main", queue="g", waited=0), [("offline", "", "g")]),
        (
            _event("handoff_assigned", flow="main", queue="g", agent="ann", waited=3600.5),
            [("assigned", "", "ann"), ("wait", "", "ann@7200")],
        ),
        (
            _event("handoff_closed", flow="main", queue="g", agent="ann", handled=99999),
            [("closed", "", "ann"), ("handle", "", "ann@inf")],
        ),
        (
            _event("agent_replied", flow="main", queue="g", agent="ann", after=0),
            [("first_reply", "", "ann@1")],
        ),
        (
            _event("csat_given", flow="main", step="s", scale="yes_no", score=0, agent=None),
            [("csat_flow", "s", "no")],
        ),
        (
            _event("csat_given", flow="main", step="s", scale="five", score=3, agent="ann"),
            [("csat_agent", "s", "ann@3")],
        ),
        (_event("csat_given", flow="main", step="s", scale="five", score=True), []),
        (_event("option_chosen", flow="main", step="a", option="x"), []),
    ],
)
def test_each_event_adds_to_its_counters(event: dict[str, Any], expected: list[Any]) -> None:
    keys = f.keys(event)
    assert [(k.metric, k.step, k.detail) for k in keys] == expected
    assert all(k.day == "2026-11-02" and k.version == "v1" and k.locale == "en" for k in keys)
    assert all(f.Key.parse(k.day, k.field) == k for k in keys)
    assert f.fold([event, event]) == {(k.day, k.field): 2 for k in keys}


def test_a_name_cannot_break_the_counter_key() -> None:
    (key,) = f.keys(_event("conversation_started", flow="a\x1fb"))
    assert f.Key.parse(key.day, key.field).flow == "a b"


def test_percentiles_are_the_upper_bound_of_their_bucket() -> None:
    values = [0.5, 3, 3, 8, 40, 40, 40, 40, 70, 5000]
    histogram: dict[str, int] = {}
    for v in values:
        histogram[f.bucket(v)] = histogram.get(f.bucket(v), 0) + 1
    assert percentile(histogram, 0.5) == 45.0  # the 5th value, 40, is in (30, 45]
    assert percentile(histogram, 0.9) == 90.0  # the 9th, 70, is in (60, 90]
    assert percentile(histogram, 1.0) == 7200.0
    assert percentile({"inf": 1}, 0.5) == 14400.0  # beyond the last bound: the last bound
    assert percentile({}, 0.5) is None


async def test_the_insights_loop_keeps_going_when_the_store_fails(tmp_path: Path) -> None:
    from flowengine.insights.consumer import Consumer
    from flowengine.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "data")
    consumer = Consumer(store, interval=0.01)
    await store.append_events([_event("conversation_started", flow="main")])
    await store.close()  # the store is gone: every round fails
    consumer.start()
    await eventually(lambda: consumer.failures >= 3)
    await consumer.stop()
    assert consumer.consumed == 0
    await asyncio.sleep(0)
