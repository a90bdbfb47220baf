"""The widget around a person: the shopper who starts over while waiting for a person gets the
bot's menu back, also after a reload. Real Chromium, the real app over real sockets."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import expect

from flowengine.handoff.accounts import Account
from flowengine.handoff.passwords import hash_password
from flowengine.server.config import ServerConfig
from tests.app_server import AppServer
from tests.browser import Pages
from tests.server_process import Agent

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_starting_over_while_waiting_for_a_person_gives_the_menu_back(
    pages: Pages,
    tmp_path: Path,
) -> None:
    config = ServerConfig(handoff_config=None, agents_file=str(tmp_path / "agents.json"))
    async with AppServer(config) as server:
        server.runtime.handoffs.accounts.put(
            Account("alice", "Alice", "agent", ("general",), hash_password("pw-for-tests"))
        )
        agent = await Agent.login(server, "alice", "pw-for-tests")
        await agent.until(lambda f: f["type"] == "queue")  # online: the chat waits for her
        page = await pages.new("phone")
        await page.goto(server.http + "/")
        await page.get_by_role("button", name="Open chat").click()
        await page.get_by_role("button", name="Talk to a person").first.click()
        await expect(page.get_by_text("Waiting for a person…")).to_be_visible()
        await page.get_by_role("button", name="Start over").click()
        await expect(page.get_by_text("The chat with a person has ended.")).to_be_visible()
        left = await agent.until(
            lambda f: f["type"] == "queue" and not f["waiting"]
        )  # out of her queue
        assert left["mine"] == []
        menu = page.get_by_role("button", name="Track my order")
        await expect(menu).to_be_visible()  # the greeting's menu, not a dead end
        await page.reload()
        await expect(page.get_by_role("dialog")).to_be_visible()  # kept open
        await expect(menu).to_be_visible()
        await menu.click()
        await expect(page.get_by_label("Your message")).to_be_enabled()
        await agent.close()
