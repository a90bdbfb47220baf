"""The widget around a person, in real Chromium against the real app over real sockets, with a
test playing the agent (tests/server_process.py `Agent`): what the shopper sees in each handoff
state (never a raw status name), the "Talk to a person" button (hidden while a person is on the
way or there, also after a reload), the place in line updated where it stands, the server's
errors in the shopper's language, and screenshots of a queued chat in Czech and Thai, light and
dark, on a phone (test-artifacts/widget-queued-*.png: look at them)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Locator, Page, expect

from flowengine.handoff.accounts import Account
from flowengine.handoff.passwords import hash_password
from flowengine.server.config import ServerConfig
from tests.app_server import AppServer, Clock
from tests.browser import Pages
from tests.server_process import ROOT, Agent

pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSWORD = "pw-for-tests"
ARTIFACTS = ROOT / "test-artifacts"
# What the widget must never show as a line of its own.
RAW = {"queued", "assigned", "offline", "closed", "handed_back", "no_agent", "timeout"}


@contextlib.asynccontextmanager
async def _staffed(
    tmp_path: Path,
    clock: Callable[[], float] = time.time,
    handoff: str | None = None,
    **config: Any,
) -> AsyncIterator[tuple[AppServer, Agent]]:
    """The app with Alice (team general) logged in and online: chats wait for her."""
    settings = ServerConfig(
        handoff_config=handoff,
        agents_file=str(tmp_path / "agents.json"),
        **config,
    )
    async with AppServer(settings, clock) as server:
        server.runtime.handoffs.accounts.put(
            Account("alice", "Alice", "agent", ("general",), hash_password(PASSWORD))
        )
        agent = await Agent.login(server, "alice", PASSWORD)
        await agent.until(lambda f: f["type"] == "queue")  # online
        try:
            yield server, agent
        finally:
            await agent.close()


async def _shopper(pages: Pages, server: AppServer, locale: str, open_label: str) -> Page:
    page = await pages.new("phone", locale=locale)
    await page.goto(server.http + "/")
    await page.get_by_role("button", name=open_label).click()
    return page


def _person(page: Page, name: str) -> Locator:
    """The "Talk to a person" tool (a menu option may carry the same words)."""
    return page.locator(".tools").get_by_role("button", name=name)


async def _session(page: Page) -> str:
    sid: str = await page.evaluate(
        "() => Object.entries(localStorage).find(([k]) => k.endsWith(':session'))[1]"
    )
    return sid


async def _lines(page: Page) -> list[str]:
    return [t.strip() for t in await page.locator("flowengine-chat .log p").all_inner_texts()]


async def _no_raw_status(page: Page) -> None:
    lines = await _lines(page)
    assert not RAW & set(lines), lines


async def test_starting_over_while_waiting_for_a_person_gives_the_menu_back(
    pages: Pages,
    tmp_path: Path,
) -> None:
    async with _staffed(tmp_path) as (server, agent):
        page = await _shopper(pages, server, "en-US", "Open chat")
        person = _person(page, "Talk to a person")
        await person.click()
        await expect(page.get_by_text("Waiting for a person…")).to_be_visible()
        await expect(person).to_be_hidden()
        await page.get_by_role("button", name="Start over").click()
        await expect(page.get_by_text("The chat with a person has ended.")).to_be_visible()
        left = await agent.until(
            lambda f: f["type"] == "queue" and not f["waiting"]
        )  # out of her queue
        assert left["mine"] == []
        menu = page.get_by_role("button", name="Track my order")
        await expect(menu).to_be_visible()  # the greeting's menu, not a dead end
        await expect(person).to_be_visible()  # the bot has the chat again
        await page.reload()
        await expect(page.get_by_role("dialog")).to_be_visible()  # kept open
        await expect(menu).to_be_visible()
        await expect(person).to_be_visible()
        await menu.click()
        await expect(page.get_by_label("Your message")).to_be_enabled()


async def test_waiting_joined_and_handed_back_in_czech_with_no_status_names(
    pages: Pages, tmp_path: Path
) -> None:
    async with _staffed(tmp_path) as (server, agent):
        page = await _shopper(pages, server, "cs-CZ", "Otevřít chat")
        person = _person(page, "Mluvit s člověkem")
        box = page.get_by_label("Vaše zpráva")
        await person.focus()
        await page.keyboard.press("Enter")
        await expect(page.get_by_text("Čekáte na kolegu… Jste 1. v pořadí.")).to_be_visible()
        await expect(person).to_be_hidden()  # asking again could only fail
        await expect(box).to_be_focused()  # not dropped on <body> with the hidden button
        sid = await _session(page)
        assert (await agent.act({"type": "claim", "session": sid}))["type"] == "ack"
        await expect(page.get_by_text("Alice se připojil(a) k chatu.")).to_be_visible()
        await expect(person).to_be_hidden()
        await page.reload()  # the state comes back from the replayed transcript
        await expect(page.get_by_text("Alice se připojil(a) k chatu.")).to_be_visible()
        await expect(box).to_be_enabled()
        await expect(person).to_be_hidden()
        assert (await agent.act({"type": "handback", "session": sid}))["type"] == "ack"
        back = page.get_by_text("Jste zpět u asistenta.", exact=True)
        await expect(back).to_have_count(1)  # said once, in Czech
        await expect(page.get_by_role("button", name="Kde je moje objednávka")).to_be_visible()
        await expect(person).to_be_visible()
        await _no_raw_status(page)
        await page.reload()
        await expect(back).to_have_count(1)
        await expect(person).to_be_visible()
        await _no_raw_status(page)


async def test_a_person_closes_the_chat_in_thai(pages: Pages, tmp_path: Path) -> None:
    async with _staffed(tmp_path) as (server, agent):
        page = await _shopper(pages, server, "th-TH", "เปิดแชท")
        person = _person(page, "คุยกับเจ้าหน้าที่")
        await person.click()
        await expect(page.get_by_text("กำลังรอเจ้าหน้าที่…")).to_be_visible()
        sid = await _session(page)
        await agent.act({"type": "claim", "session": sid})
        await agent.act({"type": "close", "session": sid})
        await expect(page.get_by_text("การแชทกับเจ้าหน้าที่สิ้นสุดแล้ว")).to_be_visible()
        await expect(page.get_by_text("บทสนทนาสิ้นสุดแล้ว เริ่มใหม่ได้ทุกเมื่อ")).to_be_visible()
        # The conversation is over: only starting over makes sense (a person would be refused).
        await expect(person).to_be_hidden()
        await _no_raw_status(page)
        await page.locator(".options").get_by_role("button", name="เริ่มใหม่").click()
        await expect(page.get_by_role("button", name="ติดตามคำสั่งซื้อ")).to_be_visible()
        await expect(person).to_be_visible()


SUNDAY_NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC).timestamp()
WEEKDAYS_ONLY = """teams: [general]
schedule:
  timezone: UTC
  hours: {mon: "08:00-18:00", tue: "08:00-18:00"}
"""


@pytest.mark.parametrize(
    ("reason", "locale", "open_label", "person_label", "says"),
    [
        ("no_agent", "cs-CZ", "Otevřít chat", "Mluvit s člověkem", "Teď není nikdo k dispozici."),
        (
            "closed",
            "th-TH",
            "เปิดแชท",
            "คุยกับเจ้าหน้าที่",
            "ขณะนี้อยู่นอกเวลาทำการ จึงยังไม่มีเจ้าหน้าที่ให้บริการแชท",
        ),
        (
            "timeout",
            "en-US",
            "Open chat",
            "Talk to a person",
            "Sorry, nobody was free to take your chat in time.",
        ),
    ],
    ids=["no_agent-cs", "closed-th", "timeout-en"],
)
async def test_nobody_available_says_why(
    pages: Pages,
    tmp_path: Path,
    reason: str,
    locale: str,
    open_label: str,
    person_label: str,
    says: str,
) -> None:
    clock = Clock(SUNDAY_NOON)
    handoff = None
    if reason == "closed":
        handoff = tmp_path / "handoff.yaml"
        handoff.write_text(WEEKDAYS_ONLY)
    async with _staffed(tmp_path, clock, str(handoff) if handoff else None) as (server, agent):
        if reason == "no_agent":
            await agent.close()
            clock.advance(60)  # her console is gone: nobody is online
        page = await _shopper(pages, server, locale, open_label)
        person = _person(page, person_label)
        await person.click()
        if reason == "timeout":
            await expect(person).to_be_hidden()  # queued
            clock.advance(server.runtime.handoffs.config.queue_timeout + 1)  # the sweep sees it
        await expect(page.get_by_text(says, exact=True)).to_be_visible()
        await expect(person).to_be_visible()  # the bot has the chat again (leave a message)
        await expect(page.locator("flowengine-chat input")).to_be_enabled()
        await _no_raw_status(page)


async def test_the_place_in_line_is_updated_in_place(pages: Pages, tmp_path: Path) -> None:
    async with _staffed(tmp_path) as (server, agent):
        first = await _shopper(pages, server, "en-US", "Open chat")
        await _person(first, "Talk to a person").click()
        await expect(first.get_by_text("You are number 1 in line.")).to_be_visible()
        page = await _shopper(pages, server, "cs-CZ", "Otevřít chat")
        await _person(page, "Mluvit s člověkem").click()
        waiting = page.locator(".log p", has_text="Čekáte na kolegu…")
        await expect(waiting).to_have_text("Čekáte na kolegu… Jste 2. v pořadí.")
        lines = len(await _lines(page))
        # Count changes to the notice: each move in line should change it once.
        await waiting.evaluate("""notice => {
            window.changes = 0;
            new MutationObserver(r => { window.changes += r.length; })
                .observe(notice, {childList: true, subtree: true, characterData: true});
        }""")
        await agent.act({"type": "claim", "session": await _session(first)})
        await expect(waiting).to_have_text("Čekáte na kolegu… Jste 1. v pořadí.")
        assert len(await _lines(page)) == lines  # no new line: the same notice, changed
        assert await page.evaluate("window.changes") == 1
        # In the conversation log, a polite live region: read out once, without interrupting.
        live = await waiting.evaluate(
            "p => [p.closest('[aria-live]').getAttribute('aria-live'), p.closest('[role=log]')"
            " !== null, p.getAttribute('role')]"
        )
        assert live == ["polite", True, None]
        # The same place again (a repeat frame) changes nothing and is not read out again.
        await server.runtime.store.signal(await _session(page), {"queue": "general", "position": 1})
        await page.wait_for_timeout(200)
        assert await page.evaluate("window.changes") == 1
        await _no_raw_status(page)


async def test_errors_from_the_server_are_in_the_shoppers_language(
    pages: Pages, tmp_path: Path
) -> None:
    # A burst of 3 frames: the fourth message in a row is refused with rate_limited.
    async with _staffed(tmp_path, socket_burst=3, socket_rate=0.5) as (server, _):
        page = await _shopper(pages, server, "th-TH", "เปิดแชท")
        await _person(page, "คุยกับเจ้าหน้าที่").click()
        await expect(page.get_by_text("กำลังรอเจ้าหน้าที่…")).to_be_visible()
        await page.evaluate("""() => {
            const root = document.querySelector('flowengine-chat').shadowRoot;
            const input = root.querySelector('input'), form = root.querySelector('form');
            for (let i = 0; i < 5; i++) { input.value = 'hello ' + i; form.requestSubmit(); }
        }""")
        slow = page.get_by_role("alert").filter(has_text="คุณส่งข้อความเร็วเกินไป กรุณารอสักครู่")
        await expect(slow.first).to_be_visible()
        assert "too many" not in (await page.locator("flowengine-chat .log").inner_text())


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize(
    ("locale", "open_label", "person_label", "waiting"),
    [
        ("cs-CZ", "Otevřít chat", "Mluvit s člověkem", "Čekáte na kolegu… Jste 1. v pořadí."),
        ("th-TH", "เปิดแชท", "คุยกับเจ้าหน้าที่", "กำลังรอเจ้าหน้าที่… คุณอยู่ลำดับที่ 1"),
    ],
    ids=["cs", "th"],
)
async def test_screenshots_of_a_queued_chat(
    pages: Pages,
    tmp_path: Path,
    locale: str,
    open_label: str,
    person_label: str,
    waiting: str,
    scheme: str,
) -> None:
    async with _staffed(tmp_path) as (server, _):
        page = await pages.new("phone", locale=locale)
        await page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
        await page.goto(server.http + "/")
        await page.get_by_role("button", name=open_label).click()
        await _person(page, person_label).click()
        await expect(page.get_by_text(waiting)).to_be_visible()
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"widget-queued-{locale[:2]}-{scheme}.png"
        await page.screenshot(path=str(path))
