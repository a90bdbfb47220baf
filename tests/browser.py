"""A real headless Chromium for the tests (Debian's chromium, driven by Playwright's async API):
one for the whole session (the `browser` fixture in conftest.py), and `Pages`, the pages one
test opens (the `pages` fixture), each in a fresh context, which fail the test on any script
error or `alert`.

Tests that use them run on the session's event loop
(`pytestmark = pytest.mark.asyncio(loop_scope="session")`), where the browser lives.
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, expect

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


class Pages:
    """Browser pages for one test, each in its own context (its own storage), closed after the
    test. Every script error and every `alert`/`confirm` on any of them fails the test."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []

    async def new(self, viewport: str | dict[str, int] = "desktop", locale: str = "en-US") -> Page:
        size = VIEWPORTS[viewport] if isinstance(viewport, str) else viewport
        context = await self.browser.new_context(
            viewport=size,  # type: ignore[arg-type]
            locale=locale,
            is_mobile=viewport == "phone",
            has_touch=viewport == "phone",
        )
        self.contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        page.on("dialog", self._dialog)
        return page

    async def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    async def close(self) -> None:
        """Close every page; then fail if any had a script error or a dialog."""
        for context in self.contexts:
            await context.close()
        assert self.errors == [], self.errors
        assert self.dialogs == [], self.dialogs


async def say(page: Page, text: str) -> None:
    """Type `text` into the widget's text box and send it, as a shopper does (in any locale)."""
    box = page.locator("flowengine-chat input")
    await expect(box).to_be_enabled()
    await box.fill(text)
    await box.press("Enter")
