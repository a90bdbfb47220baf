"""Shoppers who type, in a real headless Chromium on a 360 px phone: at the main menu of the
shipped flows, a Czech and a Thai shopper type what they want and the right flow starts.
Screenshots go to test-artifacts/ (look at them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from flowengine.server.config import ServerConfig
from tests.app_server import AppServer
from tests.browser import Pages, say
from tests.server_process import ROOT, eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")

ARTIFACTS = ROOT / "test-artifacts"
PHONE = {"width": 360, "height": 740}


@pytest_asyncio.fixture(loop_scope="session")
async def shop() -> AsyncIterator[AppServer]:
    """The shipped flows and the demo page; one server per test, so its events are the test's."""
    async with AppServer(ServerConfig()) as server:
        yield server


async def _shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


async def _events(server: AppServer, kind: str) -> list[dict[str, Any]]:
    return [e for e in await server.runtime.store.read_events(500) if e["type"] == kind]


@pytest.mark.parametrize(
    ("locale", "opener", "placeholder", "text", "flow", "shown"),
    [
        (
            "cs-CZ",
            "Otevřít chat",
            "Nebo napište svůj dotaz…",
            "chci vrátit boty",
            "return_order",
            "Jaké je číslo vaší objednávky?",
        ),
        (
            "th-TH",
            "เปิดแชท",
            "หรือพิมพ์คำถามของคุณ…",
            "อยากยกเลิกออเดอร์ค่ะ",
            "cancel_order",
            "หมายเลขคำสั่งซื้อของคุณคืออะไรคะ",
        ),
    ],
)
async def test_typed_text_at_the_main_menu_starts_the_right_flow(
    pages: Pages,
    shop: AppServer,
    locale: str,
    opener: str,
    placeholder: str,
    text: str,
    flow: str,
    shown: str,
) -> None:
    page = await pages.new(PHONE, locale=locale)
    await page.emulate_media(reduced_motion="reduce")  # the panel's pop-in, not in the shot
    await page.goto(shop.http + "/")
    await page.get_by_role("button", name=opener).click()
    box = page.locator("flowengine-chat input")
    await expect(page.locator("flowengine-chat .options button").first).to_be_visible()
    # At the menu the box is open, saying so in the shopper's language; the options keep focus.
    await expect(box).to_be_enabled()
    await expect(box).to_have_attribute("placeholder", placeholder)
    await expect(page.locator("flowengine-chat .options button").first).to_be_focused()
    await _shot(page, f"intents-{locale}-menu")
    await say(page, text)
    await expect(page.get_by_text(text, exact=True)).to_be_visible()
    await expect(page.get_by_text(shown)).to_be_visible()
    await _shot(page, f"intents-{locale}-started")

    async def started() -> list[str]:
        return [e["flow"] for e in await _events(shop, "flow_started")]

    assert (await eventually(lambda: _started_beyond_main(started)))[-1] == flow
    [matched] = await _events(shop, "text_matched")
    assert (matched["target"], matched["kind"], matched["clarified"]) == (flow, "flow", False)
    assert text not in str(await shop.runtime.store.read_events(500))  # never the text


async def _started_beyond_main(started: Any) -> list[str] | None:
    flows: list[str] = await started()
    return flows if len(flows) > 1 else None


async def test_the_exact_label_typed_is_a_click_and_gibberish_gets_the_menu_again(
    pages: Pages, shop: AppServer
) -> None:
    page = await pages.new(PHONE, locale="th-TH")
    await page.goto(shop.http + "/")
    await page.get_by_role("button", name="เปิดแชท").click()
    await expect(page.locator("flowengine-chat .options button").first).to_be_visible()
    await say(page, "qwerty")
    await expect(page.get_by_text("ขออภัยค่ะ ไม่เข้าใจข้อความนี้")).to_be_visible()
    await expect(page.get_by_role("button", name="ยกเลิกคำสั่งซื้อ")).to_be_visible()
    await say(page, "ยกเลิกคำสั่งซื้อ")  # the cancel option's label, as typed
    await expect(page.get_by_text("หมายเลขคำสั่งซื้อของคุณคืออะไรคะ")).to_be_visible()
    await _shot(page, "intents-th-miss-then-label")
    chosen = await eventually(lambda: _events(shop, "option_chosen"))
    assert [e["option"] for e in chosen] == ["cancel"]
    assert len(await _events(shop, "text_unmatched")) == 1


async def test_a_clarifying_menu_is_a_menu_like_any_other(pages: Pages, shop: AppServer) -> None:
    page = await pages.new(PHONE, locale="th-TH")
    await page.emulate_media(reduced_motion="reduce")
    await page.goto(shop.http + "/")
    await page.get_by_role("button", name="เปิดแชท").click()
    await expect(page.locator("flowengine-chat .options button").first).to_be_visible()
    await say(page, "ออเดอร์")  # "order": tracking or cancelling?
    await expect(page.get_by_text("หมายถึงเรื่องใดเรื่องหนึ่งต่อไปนี้ใช่ไหมคะ")).to_be_visible()
    buttons = page.locator("flowengine-chat .options button")
    await expect(buttons).to_have_count(3)
    labels = await buttons.all_inner_texts()
    assert sorted(labels[:2]) == sorted(["ติดตามคำสั่งซื้อ", "ยกเลิกคำสั่งซื้อ"])
    assert labels[2] == "เรื่องอื่น"
    # the shopper was typing: the focus stays in the box, which stays open
    await expect(page.locator("flowengine-chat input")).to_be_focused()
    await _shot(page, "intents-th-clarify")
    await page.get_by_role("button", name="ยกเลิกคำสั่งซื้อ").click()
    await expect(page.get_by_text("หมายเลขคำสั่งซื้อของคุณคืออะไรคะ")).to_be_visible()
    matched = await eventually(lambda: _events(shop, "text_matched"))
    assert [(e["target"], e["clarified"]) for e in matched] == [("cancel_order", True)]
