"""The insights API (flowengine/insights/routes.py) over real HTTP against the real app, whose
numbers come from scripted conversations: shoppers are socket clients clicking through a small
project of flows over several days of a clock the test moves, an agent takes a chat on the
console socket. Who may read (nobody, an agent, an admin), what a bad parameter gets, and that
the report, the funnel and the CSV say exactly what the conversations did, on the embedded store
and on a real redis-server.

`scripted` (the server with those conversations) is used by tests/test_insights_browser.py too.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from flowengine.handoff.accounts import Account
from flowengine.handoff.passwords import hash_password
from flowengine.server.config import ServerConfig
from tests.app_server import AppServer, Clock
from tests.redis_server import RedisServer
from tests.server_process import Agent, Client, eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSWORD = "correct-horse-battery"
PROJECT = "start: main\nlocales: [en]\nhandoff: {queue: general, csat: true}\n"
MAIN = """\
flow: main
steps:
  - id: menu
    menu: How can I help?
    options:
      - {id: sizes, label: Size guide, flow: size_guide}
"""
SIZE_GUIDE = """\
flow: size_guide
steps:
  - id: category
    menu: What are you shopping for?
    options:
      - {id: tops, label: Tops, goto: tops}
      - {id: shoes, label: Shoes, goto: shoes}
  - id: tops
    say: "Tops: S 88-94, M 95-101."
    next: more
  - id: shoes
    say: "Shoes: 38 is 24 cm."
    next: more
  - id: more
    menu: Anything else?
    options:
      - {id: done, label: "That's all", goto: solved}
      - {id: another, label: Another category, goto: category}
  - id: solved
    csat: yes_no
  - id: finished
    end: resolved
"""
HANDOFF = "teams: [general]\n"

# The day the embedded store's script ends on (UTC); the report's period is the seven days to
# it. (On Redis, key expiry is Redis's own clock: that script ends on the real today.)
TODAY = date(2026, 11, 20)
SINCE = TODAY - timedelta(days=6)
# What the agent's chat took: in the queue, to the first reply, assigned to closed (seconds).
WAITED, FIRST_REPLY, HANDLED = 25, 12, 112


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)  # scrypt is slow on purpose: once for every account


@dataclass
class Scripted:
    """The running app, its clock, the last day of its conversations, and a token for each kind
    of caller."""

    server: AppServer
    clock: Clock
    today: date
    admin: str  # a token of an account with the admin role
    agent: str  # a token of an agent without it

    @property
    def since(self) -> date:
        return self.today - timedelta(days=6)

    @property
    def before(self) -> date:
        """A day of the seven before `since`."""
        return self.today - timedelta(days=8)

    def day(self, back: int) -> str:
        return (self.today - timedelta(days=back)).isoformat()

    @property
    def period(self) -> str:
        return _period(self.since, self.today)

    async def relogin(self) -> None:
        """Fresh tokens: a token lives 12 hours of the clock, which moves by days here."""
        self.admin = await _login(self.server, "root")
        self.agent = await _login(self.server, "alice")

    async def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient() as http:
            return await http.get(self.server.http + path, headers=headers, timeout=10)

    async def report(self, since: date | None = None, until: date | None = None) -> dict[str, Any]:
        query = _period(since or self.since, until or self.today)
        r = await self.get(f"/insights/api/report?{query}", self.admin)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


def _flows(root: Path) -> Path:
    flows = root / "flows"
    flows.mkdir()
    (flows / "flowengine.yaml").write_text(PROJECT)
    (flows / "main.yaml").write_text(MAIN)
    (flows / "size_guide.yaml").write_text(SIZE_GUIDE)
    return flows


def _at(day: date, hour: int = 10) -> float:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()


async def _login(server: AppServer, username: str) -> str:
    status, body = await server.post(
        "/agent/api/login", {"username": username, "password": PASSWORD}
    )
    assert status == 200, body
    token: str = body["token"]
    return token


async def _shopper(server: AppServer, clicks: list[str], *, leave: bool = False) -> Client:
    """A shopper who clicks `clicks` from the main menu; `leave`: then closes the chat (the
    conversation is dropped at the step they were on)."""
    c = await Client.connect(server.ws_url)
    await c.until(lambda f: f.get("type") == "message")
    for option in clicks:
        ack = await c.act({"type": "choose", "option": option})
        assert ack["type"] == "ack", ack
    if leave:
        await c.close()
    return c


async def _counted(s: Scripted, day: date, conversations: int, abandoned: int) -> None:
    """Wait until the insights consumer has counted `day` (a dropped chat is counted when the
    server sees its socket close): only then may the clock move on to another day."""

    async def done() -> bool:
        # Every event of an acknowledged click is in the analytics buffer already: written and
        # folded now, so nothing of it can land after the check.
        await s.server.runtime.analytics.flush()
        await s.server.runtime.insights.catch_up()
        daily = {d["day"]: d for d in (await s.report(day, day))["daily"]}
        d = daily[day.isoformat()]
        return bool(d["conversations"] == conversations and d["abandoned"] == abandoned)

    await eventually(done, timeout=10)


async def script(tmp_path: Path, today: date = TODAY) -> AsyncIterator[Scripted]:
    """The app with these conversations in it (all in locale en):

    today-8   one shopper resolved (tops; "did this solve it?" yes)
    today-2   one resolved (tops; yes); one left at `more` (after shoes)
    today     two left at `category`; one asked for a person, whom the agent alice took after
              WAITED s, answered after FIRST_REPLY s and closed HANDLED s after taking it,
              and rated her 4 of 5; one resolved (tops; no)
    """
    async with _app(tmp_path, Clock(_at(today - timedelta(days=8)))) as server:
        yield await _converse(server, today)


@contextlib.asynccontextmanager
async def _app(
    tmp_path: Path, clock: Clock, redis_url: str | None = None
) -> AsyncIterator[AppServer]:
    (tmp_path / "handoff.yaml").write_text(HANDOFF)
    config = ServerConfig(
        flows_dir=str(_flows(tmp_path)),
        redis_url=redis_url,
        handoff_config=str(tmp_path / "handoff.yaml"),
        agents_file=str(tmp_path / "agents.json"),
        insights_interval=0.05,
        new_sessions_per_minute=100_000,
    )
    async with AppServer(config, clock) as server:
        accounts = server.runtime.handoffs.accounts
        for username, role in (("root", "admin"), ("alice", "agent")):
            accounts.put(Account(username, username.title(), role, ("general",), password_hash()))
        yield server


async def _converse(server: AppServer, today: date) -> Scripted:
    """`script`'s conversations, on `server` whose clock stands at 10:00 of today-8."""
    assert isinstance(server.runtime.clock, Clock)
    clock = server.runtime.clock
    admin, agent = await _login(server, "root"), await _login(server, "alice")
    s = Scripted(server, clock, today, admin, agent)

    await _shopper(server, ["sizes", "tops", "done", "yes"])
    await _counted(s, s.before, conversations=1, abandoned=0)

    clock.now = _at(today - timedelta(days=2))
    await s.relogin()
    await _shopper(server, ["sizes", "tops", "done", "yes"])
    await _shopper(server, ["sizes", "shoes"], leave=True)
    await _counted(s, today - timedelta(days=2), conversations=2, abandoned=1)

    clock.now = _at(today)
    await s.relogin()
    for _ in range(2):
        await _shopper(server, ["sizes"], leave=True)
    alice = await Agent.connect(server, s.agent)
    await alice.until(lambda f: f["type"] == "queue")  # her console's first beat: online
    asking = await _shopper(server, [])
    await asking.act({"type": "handoff"})
    assert (await asking.until(lambda f: f.get("type") == "handoff"))["status"] == "queued"
    clock.advance(WAITED)
    assert (await alice.act({"type": "claim", "session": asking.session}))["type"] == "ack"
    clock.advance(FIRST_REPLY)
    reply = {"type": "reply", "session": asking.session, "text": "Hi, I can help."}
    assert (await alice.act(reply))["type"] == "ack"
    clock.advance(HANDLED - FIRST_REPLY)
    assert (await alice.act({"type": "close", "session": asking.session}))["type"] == "ack"
    # The conversation has ended (counted so); the shopper is asked to rate the person.
    rating = await asking.until(lambda f: f.get("type") == "message" and f.get("options"))
    assert [o["id"] for o in rating["options"]] == ["1", "2", "3", "4", "5"]
    assert (await asking.act({"type": "choose", "option": "4"}))["type"] == "ack"
    await _shopper(server, ["sizes", "tops", "done", "no"])
    await alice.close()
    await _counted(s, today, conversations=4, abandoned=2)
    return s


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def scripted(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scripted]:
    """On the embedded store (in memory), ending on TODAY."""
    async for s in script(tmp_path_factory.mktemp("insights")):
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def on_redis(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scripted]:
    """On a redis-server of its own (no other test flushes it meanwhile), ending on the real
    today: Redis expires the counters of days past the retention by its own clock."""
    root = tmp_path_factory.mktemp("insights-redis")
    redis = RedisServer(root)
    redis.start()
    try:
        today = datetime.now(UTC).date()
        async with _app(root, Clock(_at(today - timedelta(days=8))), redis.url) as server:
            assert server.runtime.store.kind == "redis"
            yield await _converse(server, today)
    finally:
        redis.stop()


@pytest.fixture(params=["embedded", "redis"])
def stored(request: pytest.FixtureRequest) -> Scripted:
    """The same conversations on each store."""
    s: Scripted = request.getfixturevalue("scripted" if request.param == "embedded" else "on_redis")
    return s


def _period(since: date = SINCE, until: date = TODAY) -> str:
    return f"since={since}&until={until}"


# -- who may read ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"/insights/api/report?{_period()}",
        f"/insights/api/funnel?flow=size_guide&{_period()}",
        f"/insights/export.csv?{_period()}",
        "/insights/api/meta",
    ],
)
async def test_only_an_admin_reads_numbers(scripted: Scripted, path: str) -> None:
    nobody = await scripted.get(path)
    assert nobody.status_code == 401, nobody.text
    assert "log in" in nobody.json()["error"]
    forged = await scripted.get(path, "x" * 43)
    assert forged.status_code == 401, forged.text
    agent = await scripted.get(path, scripted.agent)
    assert agent.status_code == 403, agent.text
    assert agent.json() == {"error": "admins only: insights need an account with the admin role"}
    admin = await scripted.get(path, scripted.admin)
    assert admin.status_code == 200, admin.text
    assert admin.headers["cache-control"] == "no-store"


async def test_a_logged_out_token_reads_nothing(scripted: Scripted) -> None:
    token = await _login(scripted.server, "root")
    assert (await scripted.get(f"/insights/api/report?{_period()}", token)).status_code == 200
    status, _ = await scripted.server.post(
        "/agent/api/logout", {}, headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200
    assert (await scripted.get(f"/insights/api/report?{_period()}", token)).status_code == 401


async def test_the_page_and_its_files_carry_the_console_headers(scripted: Scripted) -> None:
    for path, kind in (
        ("/insights", "text/html"),
        ("/insights/insights.js", "application/javascript"),
        ("/insights/insights.css", "text/css"),
    ):
        r = await scripted.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith(kind)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
    page = (await scripted.get("/insights")).text
    assert page.count("<script") == page.count('<script src="/insights/') == 1  # nothing inline


# -- bad parameters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("until=2026-11-20", "since is required (a day, YYYY-MM-DD)"),
        ("since=2026-11-14", "until is required (a day, YYYY-MM-DD)"),
        ("since=14.11.2026&until=2026-11-20", "since must be a day as YYYY-MM-DD"),
        ("since=2026-11-14&until=20261120", "until must be a day as YYYY-MM-DD"),
        ("since=2026-11-14%0A&until=2026-11-20", "since must be a day as YYYY-MM-DD"),
        ("since=2026-02-30&until=2026-11-20", "since is not a day of the calendar"),
        ("since=2026-11-20&until=2026-11-14", "since (2026-11-20) is after until (2026-11-14)"),
        ("since=2025-10-16&until=2026-11-20", "since (2025-10-16) is before the oldest day kept"),
        (
            "since=2026-11-20&until=2027-12-25",
            "a period of 401 days is longer than the 400 days kept",
        ),
        ("since=2026-11-14&until=2026-11-20&flow=nope", "unknown flow 'nope'"),
        ("since=2026-11-14&until=2026-11-20&flow=a%20b", "unknown flow 'a b'"),
        ("since=2026-11-14&until=2026-11-20&locale=english!", "locale must be a locale"),
        ("since=2026-11-14&until=2026-11-20&locale=en%0A", "locale must be a locale"),
        ("since=2026-11-14&until=2026-11-20&version=latest", "version must be a flow version"),
    ],
)
async def test_a_bad_report_query_says_what_is_wrong(
    scripted: Scripted, query: str, message: str
) -> None:
    r = await scripted.get(f"/insights/api/report?{query}", scripted.admin)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(message), r.json()


async def test_the_oldest_day_kept_is_the_retention_before_today(scripted: Scripted) -> None:
    kept = scripted.server.runtime.config.insights_retention_days
    assert kept == 400  # the default
    oldest = TODAY - timedelta(days=kept - 1)
    ok = await scripted.get(f"/insights/api/report?{_period(oldest, TODAY)}", scripted.admin)
    assert ok.status_code == 200
    assert ok.json()["period"]["days"] == kept
    r = await scripted.get(
        f"/insights/api/report?{_period(oldest - timedelta(days=1), TODAY)}", scripted.admin
    )
    assert r.status_code == 400
    assert r.json()["error"] == (
        f"since ({oldest - timedelta(days=1)}) is before the oldest day kept ({oldest}): "
        "numbers are kept for 400 days"
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (f"/insights/api/funnel?{_period()}", "flow is required (one of: main, size_guide)"),
        (f"/insights/api/funnel?flow=sizes&{_period()}", "unknown flow 'sizes'"),
        ("/insights/api/funnel?flow=main&since=yesterday&until=2026-11-20", "since must be"),
        (f"/insights/api/funnel?flow=main&version=v1&{_period()}", "version must be"),
        ("/insights/export.csv?since=2026-11-20", "until is required"),
        ("/insights/export.csv?since=2026-11-21&until=2026-11-20", "since (2026-11-21) is after"),
    ],
)
async def test_bad_funnel_and_export_queries(scripted: Scripted, path: str, message: str) -> None:
    r = await scripted.get(path, scripted.admin)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(message), r.json()


# -- the numbers the conversations made ------------------------------------------------------


async def test_meta_tells_the_page_the_servers_day_and_what_to_pick(scripted: Scripted) -> None:
    r = await scripted.get("/insights/api/meta", scripted.admin)
    assert r.json() == {
        "agent": {"username": "root", "name": "Root", "role": "admin", "teams": ["general"]},
        "today": "2026-11-20",
        "retention_days": 400,
        "flows": ["main", "size_guide"],
        "locales": ["en"],
    }


async def test_the_report_counts_what_the_conversations_did(stored: Scripted) -> None:
    s = stored
    report = await s.report()
    assert report["period"] == {"since": s.day(6), "until": s.day(0), "days": 7}
    assert report["previous"] == {"since": s.day(13), "until": s.day(7)}
    head = report["headline"]
    assert (head["conversations"], head["automated"], head["handed_over"], head["abandoned"]) == (
        6,
        2,
        1,
        3,
    )
    assert head["automation_rate"] == pytest.approx(2 / 6, abs=1e-4)
    # Latencies are read from fixed buckets: each figure is the upper bound of its bucket.
    assert head["queue_wait_p50"] == 30  # WAITED = 25 s
    assert head["first_reply_p50"] == 15  # FIRST_REPLY = 12 s
    assert head["handle_p50"] == 120  # HANDLED = 112 s
    assert (head["csat_flow"], head["csat_flow_n"]) == (0.5, 2)  # one yes, one no
    assert (head["csat_agent"], head["csat_agent_n"]) == (4, 1)
    before = report["headline_previous"]
    assert (before["conversations"], before["automated"], before["automation_rate"]) == (1, 1, 1)
    assert [
        (d["day"], d["conversations"], d["automated"], d["abandoned"]) for d in report["daily"]
    ] == [
        (s.day(6), 0, 0, 0),
        (s.day(5), 0, 0, 0),
        (s.day(4), 0, 0, 0),
        (s.day(3), 0, 0, 0),
        (s.day(2), 2, 1, 1),
        (s.day(1), 0, 0, 0),
        (s.day(0), 4, 1, 2),
    ]
    assert report["handoff_reasons"]["asked"] == 1
    size_guide = next(f for f in report["flows"] if f["flow"] == "size_guide")
    assert (size_guide["started"], size_guide["resolved"], size_guide["dropped"]) == (5, 2, 3)
    assert report["flows"][0]["flow"] == "size_guide"  # the most drop-offs come first
    assert (size_guide["csat_yes"], size_guide["csat_no"]) == (1, 1)
    [agent] = report["agents"]
    assert (agent["agent"], agent["chats"], agent["csat"], agent["csat_n"]) == ("alice", 1, 4, 1)
    assert (agent["first_reply_p50"], agent["handle_p50"]) == (15, 120)
    assert report["locales"] == [
        {"locale": "en", "conversations": 6, "automation_rate": pytest.approx(2 / 6, abs=1e-4)}
    ]


async def test_a_filtered_report_counts_only_that_flow(stored: Scripted) -> None:
    r = await stored.get(f"/insights/api/report?{stored.period}&flow=size_guide", stored.admin)
    assert r.status_code == 200, r.text
    assert [f["flow"] for f in r.json()["flows"]] == ["size_guide"]
    empty = await stored.get(f"/insights/api/report?{stored.period}&locale=cs", stored.admin)
    assert empty.status_code == 200, empty.text
    assert empty.json()["headline"]["conversations"] == 0
    assert empty.json()["flows"] == []
    # A locale as the page gives it, a version id in capitals: counted as stored.
    version = stored.server.runtime.flows.current
    assert version is not None
    query = f"{stored.period}&locale=EN-us&version={version.version.upper()}"
    same = await stored.get(f"/insights/api/report?{query}", stored.admin)
    assert same.status_code == 200, same.text
    assert same.json()["headline"]["conversations"] == 6


async def test_the_funnel_shows_where_shoppers_dropped_off(stored: Scripted) -> None:
    r = await stored.get(f"/insights/api/funnel?flow=size_guide&{stored.period}", stored.admin)
    assert r.status_code == 200, r.text
    funnel = r.json()
    assert funnel["flow"] == "size_guide"
    version = stored.server.runtime.flows.current
    assert version is not None
    assert funnel["versions"] == [version.version]  # the project version sessions ran on
    steps = [(s["step"], s["kind"], s["entered"], s["dropped"]) for s in funnel["steps"]]
    assert steps == [  # in flow order
        ("category", "menu", 5, 2),
        ("tops", "say", 2, 0),
        ("shoes", "say", 1, 0),
        ("more", "menu", 3, 1),
        ("solved", "csat", 2, 0),
        ("finished", "end", 2, 0),
    ]
    assert funnel["heaviest"] == ["category", "more"]
    edges = {(e["from"], e["to"]): e["count"] for e in funnel["edges"]}
    assert edges[("category", "tops")] == 2
    assert edges[("category", "shoes")] == 1
    assert edges[("shoes", "more")] == 1
    assert edges[("more", "category")] == 0
    assert edges[("more", "solved")] == 2
    # The version that ran can be chosen; its numbers are the same.
    one = await stored.get(
        f"/insights/api/funnel?flow=size_guide&version={funnel['versions'][0]}&{stored.period}",
        stored.admin,
    )
    assert [s["entered"] for s in one.json()["steps"]] == [5, 2, 1, 3, 2, 2]


async def test_the_csv_holds_the_same_counts(stored: Scripted) -> None:
    s = stored
    r = await s.get(f"/insights/export.csv?{s.period}", s.admin)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == (
        f'attachment; filename="insights-{s.day(6)}-{s.day(0)}.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(r.text)))
    conversations: dict[str, int] = {}
    for row in rows:
        if row["metric"] == "conversations":
            conversations[row["day"]] = conversations.get(row["day"], 0) + int(row["value"])
    assert conversations == {s.day(2): 2, s.day(0): 4}
    # Only the period: the conversation of the week before is not in it.
    assert all(s.day(6) <= row["day"] <= s.day(0) for row in rows)
