"""The shopper's verdict: the `csat` step of the flow language, and the 1-5 question after a chat
with a person. The engine scripted without I/O; the widget in Chromium against the real app with
an agent on the console socket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from flowengine.engine import model as m
from flowengine.engine.step import start, step
from flowengine.handoff.accounts import Account
from flowengine.handoff.passwords import hash_password
from flowengine.language import ir, load_project
from flowengine.server.config import ServerConfig
from tests.app_server import AppServer, Clock
from tests.browser import Pages, say
from tests.server_process import ROOT, Agent

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
  - id: glad
    say: Glad it helped.
    next: end
  - id: stars
    csat: five
    prompt: {en: "Rate us, 1 to 5", cs: "Ohodnoťte nás, 1 až 5"}
    on_low: sorry
  - id: thanks
    end: resolved
  - id: sorry
    say: Sorry to hear that.
    next: end
"""


def _project(root: Path, csat_after_person: bool) -> ir.Project:
    root.mkdir(parents=True, exist_ok=True)
    setting = "true" if csat_after_person else "false"
    (root / "flowengine.yaml").write_text(
        f"start: shop\nlocales: [en, cs, th]\nhandoff: {{csat: {setting}}}\n"
    )
    (root / "shop.yaml").write_text(FLOW)
    result = load_project([root])
    assert result.ok, result.render()
    assert result.project is not None
    return result.project


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> ir.Project:
    return _project(tmp_path_factory.mktemp("csat"), True)


def _given(r: m.Result) -> list[dict[str, Any]]:
    return [e for e in r.events if e["type"] == "csat_given"]


# -- the csat step ------------------------------------------------------------------------------


def test_yes_no_shows_two_buttons_with_the_default_question(shop: ir.Project) -> None:
    r = step(shop, start(shop, now=0).state, m.Choose("answer"), 1)
    question = r.messages[-1]
    assert question.text == "Did this solve it?" and question.csat == "yes_no"
    assert question.options == ({"id": "yes", "label": "Yes"}, {"id": "no", "label": "No"})
    assert r.state.waiting == "click" and r.state.step == "solved"


@pytest.mark.parametrize(
    ("locale", "question", "yes"),
    [
        ("cs", "Vyřešilo vám to, co jste potřebovali?", "Ano"),
        ("th", "ข้อมูลนี้ช่วยแก้ปัญหาของคุณได้ไหมคะ", "ใช่"),
    ],
)
def test_the_default_question_speaks_the_shoppers_language(
    shop: ir.Project, locale: str, question: str, yes: str
) -> None:
    r = step(shop, start(shop, now=0, locale=locale).state, m.Choose("answer"), 1)
    asked = r.messages[-1]
    assert asked.text == question and asked.options[0]["label"] == yes
    assert asked.locale == locale


def test_yes_goes_to_next_and_is_recorded(shop: ir.Project) -> None:
    s = step(shop, start(shop, now=0).state, m.Choose("answer"), 1).state
    r = step(shop, s, m.Choose("yes"), 2)
    assert _given(r) == [
        {
            "type": "csat_given",
            "at": 2,
            "flow": "shop",
            "step": "solved",
            "scale": "yes_no",
            "score": 1,
            "agent": None,
            "version": shop.version,
            "locale": "en",
        }
    ]
    assert [msg.text for msg in r.messages] == ["Yes", "Glad it helped."]
    assert r.state.waiting == "ended" and r.state.resolution is None
    assert ("shop", "solved", "next") in r.visited
    assert not any(e["type"] == "option_chosen" for e in r.events)  # counted once, as a verdict


def test_no_takes_its_own_exit_to_a_person_as_unsolved(shop: ir.Project) -> None:
    s = step(shop, start(shop, now=0).state, m.Choose("answer"), 1).state
    r = step(shop, s, m.Text("  NO "), 2)  # a typed answer counts as the click
    assert _given(r)[0]["score"] == 0
    (requested,) = [e for e in r.events if e["type"] == "handoff_requested"]
    assert requested["reason"] == "unsolved"
    assert r.state.waiting == "agent" and ("shop", "solved", "no") in r.visited


def test_five_with_a_prompt_and_a_low_exit(shop: ir.Project) -> None:
    s = step(shop, start(shop, now=0, locale="cs").state, m.Choose("rate"), 1).state
    assert s.options == tuple((str(n), str(n)) for n in range(1, 6))
    low = step(shop, s, m.Choose("2"), 2)
    assert _given(low)[0]["score"] == 2 and _given(low)[0]["scale"] == "five"
    assert low.messages[-1].text == "Sorry to hear that."
    high = step(shop, s, m.Choose("4"), 2)
    assert _given(high)[0]["score"] == 4 and high.state.resolution == "resolved"
    asked = step(shop, start(shop, now=0, locale="cs").state, m.Choose("rate"), 1)
    assert asked.messages[-1].text == "Ohodnoťte nás, 1 až 5"


def test_an_answer_not_offered_is_refused_and_changes_nothing(shop: ir.Project) -> None:
    s = step(shop, start(shop, now=0).state, m.Choose("rate"), 1).state
    for event, code in ((m.Choose("6"), "unknown_option"), (m.Text("great!"), "expected_choice")):
        r = step(shop, s, event, 2)
        assert r.error is not None and r.error.code == code
        assert r.state is s and r.events == ()


def test_schema_and_checks_report_a_bad_csat_step(tmp_path: Path) -> None:
    (tmp_path / "scale").mkdir()
    (tmp_path / "scale" / "f.yaml").write_text(
        "flow: f\nsteps:\n  - csat: stars\n  - end: resolved\n"
    )
    result = load_project([tmp_path / "scale"])
    assert not result.ok
    assert "f.yaml:3:11: error[E012]: 'stars' is not one of: yes_no, five" in result.render()
    (tmp_path / "exit").mkdir()
    (tmp_path / "exit" / "f.yaml").write_text(
        "flow: f\nsteps:\n  - csat: yes_no\n    on_low: done\n  - id: done\n    end: resolved\n"
    )
    result = load_project([tmp_path / "exit"])
    assert not result.ok
    rendered = result.render()
    assert "f.yaml:4:5: error[E119]: `on_low` is an exit of `csat: five`" in rendered
    assert "`csat: yes_no` has `on_yes`, `on_no`" in rendered


# -- after a chat with a person -----------------------------------------------------------------


def _closed(project: ir.Project, agent: str = "ana") -> m.Result:
    s = step(project, start(project, now=0).state, m.Choose("person"), 1).state
    s = step(project, s, m.HandoffUpdate("assigned", agent=agent), 5).state
    return step(project, s, m.HandoffUpdate("closed", agent=agent), 65)


def test_after_a_person_closes_the_shopper_is_asked_one_to_five(shop: ir.Project) -> None:
    r = _closed(shop)
    assert r.state.waiting == "ended" and r.state.resolution == "agent"
    asked = r.messages[-1]
    assert asked.csat == "five" and [o["id"] for o in asked.options] == ["1", "2", "3", "4", "5"]
    assert asked.text.startswith("How would you rate your chat with our team?")
    rated = step(shop, r.state, m.Choose("4"), 70)
    (given,) = _given(rated)
    assert given["agent"] == "ana" and given["score"] == 4 and given["scale"] == "five"
    assert rated.messages[-1].text == "Thank you for your feedback!"
    assert rated.state.rate is None and rated.state.options == ()
    again = step(shop, rated.state, m.Choose("5"), 71)  # once
    assert again.error is not None and again.error.code == "conversation_ended"


def test_a_typed_rating_counts_and_a_wrong_one_changes_nothing(shop: ir.Project) -> None:
    r = _closed(shop)
    typed = step(shop, r.state, m.Text("5"), 70)
    assert _given(typed)[0]["score"] == 5
    wrong = step(shop, r.state, m.Text("ten"), 70)
    assert wrong.error is not None and wrong.state is r.state


def test_ignoring_the_rating_loses_nothing(shop: ir.Project) -> None:
    r = _closed(shop)
    ended = [e for e in r.events if e["type"] == "conversation_ended"]
    assert ended[0]["person"] is True  # counted before the question
    fresh = step(shop, r.state, m.Restart(), 80)
    assert fresh.error is None and fresh.state.rate is None
    assert not _given(fresh) and fresh.state.waiting == "click"
    assert not any(e["type"] == "conversation_abandoned" for e in fresh.events)
    stale = step(shop, fresh.state, m.Choose("3"), 81)  # the old question no longer answers
    assert stale.error is not None and not _given(stale)


def test_the_setting_off_asks_nothing(tmp_path: Path) -> None:
    r = _closed(_project(tmp_path / "off", False))
    assert r.state.rate is None and r.state.options == ()
    assert not any(msg.csat for msg in r.messages)


# -- in the widget ---------------------------------------------------------------------------


ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "correct-horse-battery"


async def _shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


@pytest.fixture
def clock() -> Clock:
    """The app's time, which stands still until the test moves it."""
    return Clock()


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize(
    ("locale", "open_label", "track", "done", "yes", "no", "person"),
    [
        (
            "en-US",
            "Open chat",
            "Track my order",
            "That's all, thanks",
            "Yes",
            "No",
            "Talk to a person",
        ),
        ("th-TH", "เปิดแชท", "ติดตามคำสั่งซื้อ", "แค่นี้ ขอบคุณค่ะ", "ใช่", "ไม่ใช่", "คุยกับเจ้าหน้าที่"),
    ],
)
async def test_the_widget_asks_did_this_solve_it_on_a_phone(
    pages: Pages,
    locale: str,
    open_label: str,
    track: str,
    done: str,
    yes: str,
    no: str,
    person: str,
) -> None:
    async with AppServer(ServerConfig()) as server:
        page = await pages.new({"width": 360, "height": 740}, locale=locale)
        await page.goto(server.http + "/")
        await page.get_by_role("button", name=open_label).click()
        await page.get_by_role("button", name=track).click()
        await say(page, "1003")
        await say(page, "chloe.pop@example.com")
        await page.get_by_role("button", name=done).click()
        yes_button = page.get_by_role("button", name=yes, exact=True)
        no_button = page.get_by_role("button", name=no, exact=True)
        await expect(yes_button).to_be_visible()
        await expect(no_button).to_be_visible()
        # One row of two equal buttons, inside the phone's width.
        a, b = await yes_button.bounding_box(), await no_button.bounding_box()
        assert a is not None and b is not None
        assert a["y"] == b["y"] and abs(a["width"] - b["width"]) < 1 and b["x"] + b["width"] <= 360
        await _shot(page, f"widget-csat-yes-no-{locale}")
        await no_button.click()
        await expect(page.get_by_role("group").get_by_role("button", name=person)).to_be_visible()
        await _shot(page, f"widget-csat-no-{locale}")
        await server.runtime.analytics.flush()
        events = await server.runtime.store.read_events(200)
        given = [e for e in events if e["type"] == "csat_given"]
        assert [(g["scale"], g["score"], g["step"], g["agent"]) for g in given] == [
            ("yes_no", 0, "solved", None)
        ]
        assert given[0]["locale"] == locale[:2].lower()  # the flows' locale the page reads


@pytest.mark.asyncio(loop_scope="session")
async def test_after_an_agent_closes_the_widget_asks_one_to_five(
    pages: Pages, tmp_path: Path, clock: Clock
) -> None:
    config = ServerConfig(agents_file=str(tmp_path / "agents.json"))
    async with AppServer(config, clock) as server:
        server.runtime.handoffs.accounts.put(
            Account("alice", "Alice", "agent", ("general",), hash_password(PASSWORD))
        )
        agent = await Agent.login(server, "alice", PASSWORD)
        await agent.until(lambda f: f["type"] == "queue")
        page = await pages.new({"width": 360, "height": 740})
        await page.goto(server.http + "/")
        await page.get_by_role("button", name="Open chat").click()
        await page.get_by_role("button", name="Talk to a person").first.click()
        await expect(page.get_by_text("Waiting for a person…")).to_be_visible()
        waiting = await agent.until(lambda f: f["type"] == "queue" and f["waiting"])
        sid = waiting["waiting"][0]["session"]
        clock.advance(40)
        assert (await agent.act({"type": "claim", "session": sid}))["type"] == "ack"
        clock.advance(15)
        await agent.act({"type": "reply", "session": sid, "text": "Hi, how can I help?"})
        clock.advance(5)
        await agent.act({"type": "reply", "session": sid, "text": "Anything else?"})
        await expect(page.get_by_text("Anything else?")).to_be_visible()
        clock.advance(100)
        await agent.act({"type": "close", "session": sid})
        row = page.get_by_role("group").get_by_role("button")
        await expect(page.get_by_role("button", name="4", exact=True)).to_be_visible()
        boxes = [await row.nth(i).bounding_box() for i in range(5)]
        assert all(b is not None and b["y"] == boxes[0]["y"] for b in boxes)  # type: ignore[index]
        assert boxes[4] is not None and boxes[4]["x"] + boxes[4]["width"] <= 360
        await expect(
            page.get_by_role("group").get_by_role("button", name="Start over")
        ).to_be_visible()
        await _shot(page, "widget-csat-agent-en")
        await page.get_by_role("button", name="4", exact=True).click()
        await expect(page.get_by_text("Thank you for your feedback!")).to_be_visible()
        await expect(page.get_by_role("button", name="4", exact=True)).to_have_count(0)
        await expect(
            page.get_by_role("group").get_by_role("button", name="Start over")
        ).to_be_visible()
        await _shot(page, "widget-csat-agent-thanks-en")
        # Said once, and the same after a reload (the whole transcript replayed).
        for _ in range(2):
            await expect(page.get_by_text("This conversation has ended.")).to_have_count(1)
            await expect(page.get_by_text("Thank you for your feedback!")).to_be_visible()
            await expect(page.get_by_role("button", name="4", exact=True)).to_have_count(0)
            await expect(
                page.get_by_role("group").get_by_role("button", name="Start over")
            ).to_be_visible()
            await page.reload()
            await expect(page.get_by_role("dialog", name="Northwind help")).to_be_visible()
        late = await agent.act({"type": "reply", "session": sid, "text": "one more thing"})
        assert late["type"] == "error" and late["code"] == "not_yours"  # and no event for it
        await agent.close()

        await server.runtime.analytics.flush()
        events = [e for e in await server.runtime.store.read_events(200) if e["session"] == sid]
        by_type = {e["type"]: e for e in events}
        assert by_type["handoff_assigned"]["agent"] == "alice"
        assert by_type["handoff_assigned"]["waited"] == 40.0
        replied = [e for e in events if e["type"] == "agent_replied"]
        assert len(replied) == 1  # the first message only
        assert replied[0]["after"] == 15.0 and replied[0]["agent"] == "alice"
        assert replied[0]["queue"] == "general" and replied[0]["flow"] == "main"
        assert replied[0]["version"] == by_type["session_started"]["version"]
        assert by_type["handoff_closed"]["handled"] == 120.0
        assert by_type["conversation_ended"]["person"] is True
        assert by_type["csat_given"]["agent"] == "alice" and by_type["csat_given"]["score"] == 4
