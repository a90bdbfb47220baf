"""The insights dashboard (flowengine/insights/dashboard) in a real headless Chromium, against the
real app whose numbers come from the scripted conversations of tests/test_insights_routes.py
(`script`): an admin logs in and reads those numbers in the headline, the daily chart, the flows
table and the painted funnel, changes the period, downloads the CSV; an agent is refused; a
phone gets the same page. Screenshots go to test-artifacts/insights-*.png (look at them)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Locator, Page, expect

from flowengine.handoff.accounts import Account
from tests.browser import Pages
from tests.server_process import ROOT
from tests.test_insights_routes import PASSWORD, Scripted, password_hash, script

pytestmark = pytest.mark.asyncio(loop_scope="session")

ARTIFACTS = ROOT / "test-artifacts"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 360, "height": 740}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def scripted(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scripted]:
    async for s in script(tmp_path_factory.mktemp("insights-browser")):
        yield s


def _artifact(name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / f"{name}.png")


async def _log_in(page: Page, s: Scripted, username: str = "root") -> None:
    await page.goto(s.server.http + "/insights")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()


async def _dashboard(pages: Pages, s: Scripted, viewport: dict[str, int] = DESKTOP) -> Page:
    page = await pages.new(viewport)
    await _log_in(page, s)
    await expect(page.locator("#me")).to_have_text("Root (root)")
    await expect(_stat(page, "conversations")).not_to_have_text("")
    await expect(page.locator("#graph g.node").first).to_be_visible()
    return page


def _stat(page: Page, metric: str, part: str = ".value") -> Locator:
    return page.locator(f"#headline li[data-metric={metric}] {part}")


async def test_an_admin_sees_what_the_conversations_did(pages: Pages, scripted: Scripted) -> None:
    page = await _dashboard(pages, scripted)
    await expect(page.locator("#period-text")).to_have_text(
        "Sat, Nov 14, 2026 – Fri, Nov 20, 2026 (7 days, UTC), "
        "compared with Sat, Nov 7, 2026 – Fri, Nov 13, 2026"
    )
    # Headline: six conversations against one the seven days before; two resolved by the flows.
    await expect(_stat(page, "conversations")).to_have_text("6")
    await expect(_stat(page, "conversations", ".delta")).to_have_text("▲ 500%")
    await expect(_stat(page, "automation_rate")).to_have_text("33.3%")
    await expect(_stat(page, "automation_rate", ".delta")).to_have_text("▼ 66.7 pts")
    await expect(_stat(page, "automation_rate", ".delta")).to_have_class(re.compile(r"\bbad\b"))
    await expect(_stat(page, "automated")).to_have_text("2")
    await expect(_stat(page, "handed_over")).to_have_text("1")
    await expect(_stat(page, "abandoned")).to_have_text("3")
    await expect(_stat(page, "abandoned", ".delta")).to_have_text("—")  # none before
    await expect(_stat(page, "queue_wait_p50")).to_have_text("30 s")
    await expect(_stat(page, "first_reply_p50")).to_have_text("15 s")
    await expect(_stat(page, "handle_p50")).to_have_text("2 min 00 s")
    # "Did this solve it?": one yes and one no (the week before: one yes); alice rated 4 of 5.
    await expect(_stat(page, "csat_flow")).to_have_text("50%")
    await expect(_stat(page, "csat_flow", ".n")).to_have_text("from 2 answers")
    await expect(_stat(page, "csat_flow", ".delta")).to_have_text("▼ 50 pts")
    await expect(_stat(page, "csat_agent")).to_have_text("4.0 / 5")
    await expect(_stat(page, "csat_agent", ".n")).to_have_text("from 1 answer")
    await expect(_stat(page, "csat_agent", ".delta")).to_have_text("—")

    # The daily chart: a bar for every day of the period, a rate point where there were chats.
    await expect(page.locator("#chart g.day")).to_have_count(7)
    days = await page.locator("#chart g.day").evaluate_all("gs => gs.map(g => g.dataset.day)")
    assert days == [f"2026-11-{d}" for d in range(14, 21)]
    await expect(page.locator("#chart circle.point")).to_have_count(2)
    await page.locator("#chart rect.hit").nth(4).click()
    await expect(page.locator("#chart-tip")).to_have_text(
        "Wed, Nov 18, 2026: 2 conversations, 1 resolved by the flows (50%), "
        "0 handed to a person, 1 abandoned"
    )
    await page.locator("#chart svg").press("ArrowRight")
    await page.locator("#chart svg").press("ArrowRight")
    await expect(page.locator("#chart-tip")).to_contain_text("Nov 20, 2026: 4 conversations")
    # The same numbers as a table, one row a day.
    await page.get_by_text("The numbers of every day").click()
    rows = await page.locator("#daily tbody tr").all_inner_texts()
    assert [r.split("\t") for r in rows] == [
        [f"{weekday}, Nov {day}, 2026", *numbers]
        for weekday, day, numbers in [
            ("Sat", 14, ["0", "0", "—", "0", "0"]),
            ("Sun", 15, ["0", "0", "—", "0", "0"]),
            ("Mon", 16, ["0", "0", "—", "0", "0"]),
            ("Tue", 17, ["0", "0", "—", "0", "0"]),
            ("Wed", 18, ["2", "1", "50%", "0", "1"]),
            ("Thu", 19, ["0", "0", "—", "0", "0"]),
            ("Fri", 20, ["4", "1", "25%", "1", "2"]),
        ]
    ], rows

    # Flows, most drop-offs first; hand-off reasons; agents.
    first = page.locator("#flows tbody tr").first
    await expect(first.locator("th")).to_have_text("size_guide")
    cells = await first.locator("td").all_inner_texts()
    assert cells[:6] == ["5", "2", "0", "3", "60%", "1 / 1"], cells
    await expect(page.locator("#reasons tbody tr").first).to_contain_text("The shopper asked")
    await expect(page.locator("#reasons tbody tr").first.locator("td").first).to_have_text("1")
    await expect(page.locator("#queue-line")).to_have_text(
        "Wait in queue: median 30 s, p90 30 s · first reply: median 15 s · "
        "handle time: median 2 min 00 s"
    )
    agent = await page.locator("#agents tbody tr").first.locator("th, td").all_inner_texts()
    assert agent == ["alice", "1", "15 s", "2 min 00 s", "4.0 / 5 (1)"], agent
    await expect(page.locator("#locales tbody tr")).to_have_count(1)
    await page.screenshot(path=_artifact("insights-desktop"), full_page=True)


async def test_the_funnel_is_painted_on_the_flows_graph(pages: Pages, scripted: Scripted) -> None:
    page = await _dashboard(pages, scripted)
    # The worst flow is shown first: size_guide, laid out from its first step down.
    await expect(page.locator("#funnel-flow")).to_have_value("size_guide")
    category = page.locator("#graph g.node[data-step=category]")
    await expect(category).to_contain_text("5 entered")
    await expect(category).to_contain_text("2 dropped · 40%")
    await expect(category).to_have_class(re.compile(r"\bheavy\b"))
    await expect(category.locator(".badge")).to_have_text("▼ MOST DROP-OFFS")
    more = page.locator("#graph g.node[data-step=more]")
    await expect(more).to_contain_text("3 entered")
    await expect(more).to_contain_text("1 dropped · 33.3%")
    await expect(page.locator("#graph g.node[data-step=tops]")).not_to_have_class(
        re.compile(r"\bheavy\b")
    )
    label = page.locator('#graph g.edge-label[data-from=category][data-to="tops"]')
    await expect(label).to_have_text("2")
    await expect(
        page.locator('#graph g.edge-label[data-from=category][data-to="shoes"]')
    ).to_have_text("1")
    # Rows top down by breadth-first layers: category, then tops and shoes side by side.
    ys = {
        step: await page.locator(f"#graph g.node[data-step='{step}']").evaluate(
            "g => g.getBBox().y + g.transform.baseVal[0].matrix.f"
        )
        for step in ("category", "tops", "shoes", "more")
    }
    assert ys["category"] < ys["tops"] == ys["shoes"] < ys["more"], ys
    rows = await page.locator("#steps tbody tr").all_inner_texts()
    assert [r.split("\t")[:4] for r in rows] == [
        ["category", "menu", "5", "2 ▼ most drop-offs"],
        ["tops", "say", "2", "0"],
        ["shoes", "say", "1", "0"],
        ["more", "menu", "3", "1 ▼ drop-offs #2"],
        ["solved", "csat", "2", "0"],
        ["finished", "end", "2", "0"],
    ]
    # The versions that ran can be chosen; the one here gives the same numbers.
    version = scripted.server.runtime.flows.current
    assert version is not None
    options = await page.locator("#funnel-version option").evaluate_all(
        "os => os.map(o => o.value)"
    )
    assert options == ["", version.version]
    await page.locator("#funnel-version").select_option(version.version)
    await expect(page.locator("#funnel-version")).to_have_value(version.version)
    await expect(category).to_contain_text("5 entered")
    # Another flow from the flows table.
    await page.locator("#flows").get_by_role("button", name="main").click()
    await expect(page.locator("#funnel-flow")).to_have_value("main")
    await expect(page.locator("#graph g.node[data-step=menu]")).to_contain_text("6 entered")
    # Its menu starts size_guide: that node opens size_guide's funnel.
    await page.get_by_role("button", name="Show the funnel of size_guide").click()
    await expect(page.locator("#funnel-flow")).to_have_value("size_guide")
    await expect(category).to_contain_text("5 entered")
    await page.locator("#graph").screenshot(path=_artifact("insights-funnel"))


async def test_the_period_picker_and_its_empty_states(pages: Pages, scripted: Scripted) -> None:
    page = await _dashboard(pages, scripted)
    await page.get_by_label("30 days").check()
    await expect(page.locator("#chart g.day")).to_have_count(30)
    await expect(_stat(page, "conversations")).to_have_text("7")  # BEFORE is in these 30 days
    await expect(_stat(page, "conversations", ".delta")).to_have_text("—")  # nothing before
    await page.get_by_label("Custom").check()
    await page.get_by_label("From").fill("2026-11-18")
    await page.get_by_label("to", exact=True).fill("2026-11-18")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#chart g.day")).to_have_count(1)
    await expect(_stat(page, "conversations")).to_have_text("2")
    await expect(_stat(page, "automation_rate")).to_have_text("50%")
    # A week with no conversation says so everywhere, instead of drawing zeros.
    await page.get_by_label("From").fill("2026-11-01")
    await page.get_by_label("to", exact=True).fill("2026-11-07")
    await page.get_by_role("button", name="Show").click()
    await expect(_stat(page, "conversations")).to_have_text("0")
    await expect(page.locator("#chart")).to_have_text("No conversations in this period.")
    await expect(page.locator("#flows")).to_have_text("No conversations in this period.")
    await expect(page.locator("#reasons")).to_have_text("No hand-offs in this period.")
    await expect(page.locator("#agents")).to_have_text("No chats with agents in this period.")
    await expect(page.locator("#queue-line")).to_be_hidden()
    await expect(page.locator("#steps")).to_have_text("No conversations in this period.")
    await expect(page.locator("#funnel-summary")).to_have_text(
        "No conversations in this period went through size_guide."
    )
    await page.screenshot(path=_artifact("insights-empty"), full_page=True)
    # A period the server refuses is said, and what was shown stays.
    await page.get_by_label("From").fill("2026-11-10")
    await page.get_by_label("to", exact=True).fill("2026-11-09")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#error")).to_have_text("The first day is after the last day.")
    await expect(_stat(page, "conversations")).to_have_text("0")


async def test_the_csv_downloads_with_the_same_numbers(pages: Pages, scripted: Scripted) -> None:
    page = await _dashboard(pages, scripted)
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Download CSV").click()
    download = await info.value
    assert download.suggested_filename == "insights-2026-11-14-2026-11-20.csv"
    path = await download.path()
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text("utf-8"))))
    per_day: dict[str, int] = {}
    for row in rows:
        if row["metric"] == "conversations":
            per_day[row["day"]] = per_day.get(row["day"], 0) + int(row["value"])
    assert per_day == {"2026-11-18": 2, "2026-11-20": 4}
    assert sum(per_day.values()) == int(await _stat(page, "conversations").inner_text())


async def test_an_agent_without_the_admin_role_is_refused(pages: Pages, scripted: Scripted) -> None:
    page = await pages.new(DESKTOP)
    await _log_in(page, scripted, "alice")
    await expect(page.get_by_role("heading", name="Admins only")).to_be_visible()
    await expect(page.locator("#app-view")).to_be_hidden()
    await expect(page.locator("#headline li")).to_have_count(0)
    await expect(page.locator("#chart svg")).to_have_count(0)
    # They can log in as someone else.
    await page.get_by_role("button", name="Log in as someone else").click()
    await expect(page.get_by_label("Username")).to_be_visible()
    await expect(page.locator("#login-error")).to_have_text("You are logged out.")


async def test_no_token_shows_the_login_and_a_wrong_password_is_said(
    pages: Pages, scripted: Scripted
) -> None:
    page = await pages.new(DESKTOP)
    await page.goto(scripted.server.http + "/insights")
    await expect(page.get_by_label("Username")).to_be_visible()
    await expect(page.locator("#app-view")).to_be_hidden()
    await page.get_by_label("Username").fill("root")
    await page.get_by_label("Password").fill("wrong-password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#login-error")).to_have_text("wrong username or password")
    await expect(page.locator("#app-view")).to_be_hidden()


async def test_the_console_login_opens_insights_too(pages: Pages, scripted: Scripted) -> None:
    page = await pages.new(DESKTOP)
    await page.goto(scripted.server.http + "/agent")
    await page.get_by_label("Username").fill("root")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#me")).to_contain_text("Root")
    await page.goto(scripted.server.http + "/insights")  # the same tab: the same token
    await expect(_stat(page, "conversations")).to_have_text("6")
    await expect(page.get_by_label("Username")).to_be_hidden()
    # Logging out here ends the login: back on the form, and the token no longer works.
    token = await page.evaluate("sessionStorage.getItem('fe-console-token')")
    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_label("Username")).to_be_visible()
    r = await scripted.get("/insights/api/meta", token)
    assert r.status_code == 401


async def test_on_a_phone(pages: Pages, scripted: Scripted) -> None:
    page = await _dashboard(pages, scripted, PHONE)
    await expect(_stat(page, "conversations")).to_have_text("6")
    # Nothing wider than the screen but the graph, which scrolls sideways in its own box.
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    chart = await page.locator("#chart svg").bounding_box()
    assert chart is not None and chart["width"] <= PHONE["width"]
    await expect(page.locator("#chart g.day")).to_have_count(7)
    graph = page.locator("#graph")
    scroll = await graph.evaluate("g => [g.scrollWidth, g.clientWidth, g.scrollLeft]")
    assert scroll[0] > scroll[1], scroll  # wider than the phone: it scrolls
    # The first step is in view to start with.
    box = await page.locator("#graph g.node[data-step=category] > rect").bounding_box()
    frame = await graph.bounding_box()
    assert box is not None and frame is not None
    assert frame["x"] <= box["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"]
    await page.screenshot(path=_artifact("insights-phone"))
    await page.locator("#graph").scroll_into_view_if_needed()
    await page.screenshot(path=_artifact("insights-phone-funnel"))
    await page.screenshot(path=_artifact("insights-phone-full"), full_page=True)


async def test_a_login_that_ends_meanwhile_goes_back_to_the_form(
    pages: Pages, scripted: Scripted
) -> None:
    page = await _dashboard(pages, scripted)
    token = await page.evaluate("sessionStorage.getItem('fe-console-token')")
    status, _ = await scripted.server.post(
        "/agent/api/logout", {}, headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200
    await page.get_by_label("30 days").check()
    await expect(page.locator("#login-error")).to_have_text(
        "Your login is no longer valid; log in again."
    )
    await expect(page.locator("#app-view")).to_be_hidden()
    assert await page.evaluate("sessionStorage.getItem('fe-console-token')") is None


async def test_an_admin_demoted_meanwhile_sees_no_more_numbers(
    pages: Pages, scripted: Scripted
) -> None:
    accounts = scripted.server.runtime.handoffs.accounts
    admin = Account("carol", "Carol", "admin", ("general",), password_hash())
    accounts.put(admin)
    page = await pages.new(DESKTOP)
    await _log_in(page, scripted, "carol")
    await expect(_stat(page, "conversations")).to_have_text("6")
    # The funnel is read after the report: demoted before that read lands, the page already
    # shows "Admins only" and the period cannot be changed (a race this test lost once).
    await expect(page.locator("#graph svg")).to_have_count(1)
    accounts.put(replace(admin, role="agent"))
    await page.get_by_label("90 days").check()
    await expect(page.get_by_role("heading", name="Admins only")).to_be_visible()
    await expect(page.locator("#app-view")).to_be_hidden()
    await expect(page.locator("#headline li")).to_have_count(0)  # not even hidden
    await expect(page.locator("#graph svg")).to_have_count(0)
    await expect(page.locator("#flows tr")).to_have_count(0)


async def test_names_are_shown_as_text_never_as_html(pages: Pages, scripted: Scripted) -> None:
    accounts = scripted.server.runtime.handoffs.accounts
    name = '<img src=x onerror="alert(1)"><b>Dana</b>'
    accounts.put(Account("dana", name, "admin", ("general",), password_hash()))
    page = await pages.new(DESKTOP)
    await _log_in(page, scripted, "dana")
    await expect(page.locator("#me")).to_have_text(f"{name} (dana)")
    await expect(page.locator("#me img, #me b")).to_have_count(0)
    # (`pages` fails the test on any alert.)


async def test_the_flow_filter_narrows_the_numbers_and_the_funnel(
    pages: Pages, scripted: Scripted
) -> None:
    page = await _dashboard(pages, scripted)
    await page.locator("#filter-flow").select_option("main")
    await expect(page.locator("#flows tbody tr")).to_have_count(1)
    await expect(page.locator("#flows tbody th")).to_have_text("main")
    await expect(page.locator("#funnel-flow")).to_have_value("main")
    await expect(page.locator("#graph g.node[data-step=menu]")).to_contain_text("6 entered")
    await page.locator("#filter-locale").select_option("en")
    await expect(_stat(page, "conversations")).to_have_text("6")


async def test_a_server_out_of_reach_is_said_and_the_numbers_stay(
    pages: Pages, scripted: Scripted
) -> None:
    page = await _dashboard(pages, scripted)
    await page.route("**/insights/api/report*", lambda route: route.abort())
    await page.get_by_label("30 days").check()
    await expect(page.locator("#error")).to_have_text("The server cannot be reached; try again.")
    await expect(_stat(page, "conversations")).to_have_text("6")  # what was shown stays
    await expect(page.locator("#period-text")).to_contain_text("(7 days, UTC)")  # and says so
    await expect(page.locator("#chart g.day")).to_have_count(7)
    await page.unroute("**/insights/api/report*")
    await page.get_by_label("7 days").check()
    await expect(page.locator("#error")).to_be_hidden()
    await expect(_stat(page, "conversations")).to_have_text("6")


async def test_typed_texts_nobody_matched_are_listed_masked_and_as_text(
    pages: Pages, tmp_path: Path
) -> None:
    from flowengine.server.config import ServerConfig
    from tests.app_server import AppServer
    from tests.server_process import Client
    from tests.test_intents_socket import PROJECT, _flows

    flows = Path(_flows(tmp_path))
    (flows / "flowengine.yaml").write_text(PROJECT.replace("2}", "2, keep_unmatched: true}"))
    config = ServerConfig(flows_dir=str(flows), agents_file=str(tmp_path / "agents.json"))
    async with AppServer(config) as server:
        server.runtime.handoffs.accounts.put(
            Account("root", "Root", "admin", ("general",), password_hash())
        )
        shoppers = [
            ("cs", "jaké bude zítra počasí? volejte 777 123 456"),
            ("cs", "jaké bude zítra počasí? volejte 777 123 456"),
            ("th", '<img src=x onerror="alert(1)"> อากาศเป็นยังไง'),
            ("th", "ขอเงินคืนค่ะ"),
        ]
        for locale, text in shoppers:
            c = await Client.connect(server.ws_url, locale=locale)
            await c.until(lambda f: f.get("type") == "message" and f.get("options"))
            assert (await c.act({"type": "text", "text": text}))["type"] == "ack"
            await c.close()
        await server.runtime.analytics.flush()
        await server.runtime.insights.catch_up()
        page = await pages.new(DESKTOP)
        await page.goto(server.http + "/insights")
        await page.get_by_label("Username").fill("root")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await expect(page.locator("#typed-line")).to_have_text(
            "4 typed texts: 1 matched, 3 unmatched (75%)"
        )
        await expect(page.locator("#typed tbody tr")).to_have_text(
            [re.compile(r"main · menu\s*1\s*3\s*75%")]
        )
        box = page.locator("#kept-box")
        await expect(box).to_be_visible()
        await box.locator("summary").click()
        rows = page.locator("#kept tbody tr")
        await expect(rows).to_have_count(2)
        await expect(rows.nth(0)).to_contain_text(
            "jaké bude zítra počasí? volejte [number] [number] [number]"
        )
        await expect(rows.nth(0)).to_contain_text("2")
        await expect(rows.nth(1)).to_contain_text(
            '<img src=x onerror="alert([number])"> อากาศเป็นยังไง'
        )
        await expect(page.locator("#kept img")).to_have_count(0)
        assert "777" not in await page.content() and "ขอเงินคืน" not in await page.content()
        await box.scroll_into_view_if_needed()
        await page.screenshot(path=_artifact("insights-typed"), full_page=False)
