"""The widget and the agent console in a real headless Chromium (Debian's chromium, driven by
Playwright's async API), on the demo page of the real app, served by uvicorn in the test's own
event loop over real sockets. One browser for the session, a fresh context per page. Timers in
the page (the proactive open, the reconnect backoff) run on Playwright's clock, moved by the
test instead of waited out. Screenshots go to test-artifacts/ (look at them)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from flowengine.engine import model as m
from flowengine.handoff.accounts import Account
from flowengine.handoff.passwords import hash_password
from flowengine.server.config import ServerConfig
from flowengine.server.identity import user_hash
from tests.app_server import AppServer
from tests.browser import Pages, say
from tests.server_process import ROOT

# The session's loop, where the one browser lives (the `browser` and `pages` fixtures).
pytestmark = pytest.mark.asyncio(loop_scope="session")

ARTIFACTS = ROOT / "test-artifacts"
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def shop() -> AsyncIterator[AppServer]:
    """The shipped flows and demo page, shared by the tests that need nothing else."""
    async with AppServer(ServerConfig()) as server:
        yield server


async def _shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


async def _requested(page: Page, suffix: str) -> bool:
    """Did the page ever fetch a resource whose URL ends with `suffix`?"""
    return bool(
        await page.evaluate(
            "s => performance.getEntriesByType('resource').some(e => e.name.endsWith(s))", suffix
        )
    )


def _static(tmp_path: Path, page: str) -> ServerConfig:
    """A server whose demo page is `page` (with the real widget.js beside it)."""
    (tmp_path / "demo.html").write_text(page)
    shutil.copy(ROOT / "widget" / "widget.js", tmp_path / "widget.js")
    return ServerConfig(static_dir=str(tmp_path))


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
async def test_track_an_order_reload_mid_flow_and_ask_for_a_person(
    pages: Pages, shop: AppServer, viewport: str
) -> None:
    page = await pages.new(viewport)
    await page.goto(shop.http + "/")
    await page.get_by_role("button", name="Open chat").click()
    dialog = page.get_by_role("dialog", name="Northwind help")
    await expect(dialog).to_be_visible()
    await page.get_by_role("button", name="Track my order").click()
    await expect(page.get_by_label("Your message")).to_have_attribute("type", "text")
    await say(page, "1003")
    await expect(page.get_by_label("Your message")).to_have_attribute("inputmode", "email")
    # Reload mid-flow: the transcript comes back and the conversation goes on.
    await page.reload()
    await expect(page.get_by_role("dialog", name="Northwind help")).to_be_visible()  # kept open
    await expect(page.get_by_text("1003", exact=True)).to_be_visible()
    await expect(page.get_by_text("Track my order", exact=True)).to_have_count(1)  # not twice
    await say(page, "chloe.pop@example.com")
    await expect(page.get_by_text("on its way with DHL")).to_be_visible()
    link = page.get_by_role("link", name="Track your parcel")
    await expect(link).to_have_attribute("target", "_blank")
    await expect(link).to_have_attribute("rel", "noopener noreferrer")
    await expect(page.get_by_role("button", name="That's all, thanks")).to_be_visible()
    await _shot(page, f"widget-{viewport}-tracking")
    await page.get_by_role("button", name="Talk to a person").first.click()
    await expect(page.get_by_text("Nobody is available right now.")).to_be_visible()
    await expect(page.get_by_label("Your message")).to_have_attribute("inputmode", "email")
    await _shot(page, f"widget-{viewport}-person")


async def test_hostile_text_is_shown_as_text(pages: Pages, shop: AppServer) -> None:
    page = await pages.new()
    await page.goto(shop.http + "/")
    await page.get_by_role("button", name="Open chat").click()
    await page.get_by_role("button", name="Report a problem").click()
    await say(page, HOSTILE)
    await expect(page.get_by_text(HOSTILE, exact=True)).to_be_visible()
    assert await page.locator("flowengine-chat img[src=x]").count() == 0
    # Not even for a moment: an <img> that had existed would have asked for 'x'.
    assert not await _requested(page, "/x")
    await _shot(page, "widget-hostile-text")


async def test_a_shoppers_name_in_the_greeting_is_never_markup(
    pages: Pages, shop: AppServer
) -> None:
    """The greeting puts the shopper's name into bot text: it arrives escaped, and the widget
    shows it as typed, while the flow's own markup stays markup."""
    page = await pages.new()
    hostile = "[Refund form](https://evil.example/refund) **VIP**"
    await page.goto(shop.http + "/")
    # The shop tells the widget who is logged in; the greeting after "Start over" uses it.
    await page.evaluate(
        "name => FlowEngine.identify({email: 'vip@example.com', name: name})", hostile
    )
    await page.get_by_role("button", name="Open chat").click()
    await page.get_by_role("button", name="Start over").click()
    # (the first greeting may already have the name, if identify came before the widget's hello)
    greeting = page.get_by_text(f"Hi {hostile}! How can I help you today?")
    await expect(greeting.last).to_be_visible()
    assert await page.locator("flowengine-chat a[href*='evil']").count() == 0
    assert await page.locator("flowengine-chat strong").count() == 0
    await page.get_by_role("button", name="Track my order").click()
    await say(page, "1003")
    await say(page, "chloe.pop@example.com")
    await expect(page.locator("flowengine-chat strong").first).to_be_visible()  # "**#1003**"


HOSTILE_PAGE = """<!doctype html><html><head><style>
* { box-sizing: content-box !important; font-family: 'Comic Sans MS' !important; }
div, p, button, input, form, header, section { all: unset !important; color: red !important;
  font-size: 40px !important; display: none !important; }
button { visibility: hidden !important; }
body { font-size: 5px !important; line-height: 0 !important; }
</style><script>window.alert = function () { throw new Error("page script"); };
Array.prototype.forEach = function () { throw new Error("monkey-patched"); };</script></head>
<body><h1>A page that breaks everything</h1>
<script src="/widget.js" data-title="Help" defer></script></body></html>"""


async def test_a_host_page_with_hostile_css_does_not_break_the_widget(
    pages: Pages, tmp_path: Path
) -> None:
    async with AppServer(_static(tmp_path, HOSTILE_PAGE)) as server:
        page = await pages.new()
        await page.goto(server.http + "/")
        launcher = page.get_by_role("button", name="Open chat")
        await expect(launcher).to_be_visible()
        await launcher.click()
        await page.get_by_role("button", name="Shipping & delivery").click()
        await page.get_by_role("button", name="Rest of the EU").click()
        await expect(page.get_by_text("3–5 business days")).to_be_visible()
        await _shot(page, "widget-hostile-css")
    # (`pages` fails the test on any script error, e.g. the widget calling the broken forEach.)


async def test_keyboard_only(pages: Pages, shop: AppServer) -> None:
    page = await pages.new()
    await page.goto(shop.http + "/")
    launcher = page.get_by_role("button", name="Open chat")
    await launcher.focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("button", name="Track my order")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Return an item")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.get_by_label("Your message")).to_be_enabled()
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("dialog")).to_be_hidden()
    await expect(page.get_by_role("button", name="Open chat")).to_be_focused()


@pytest.mark.parametrize(
    ("locale", "open_label", "greeting", "option", "box"),
    [
        ("th-TH", "เปิดแชท", "มีอะไรให้ช่วยไหมคะ", "ติดตามคำสั่งซื้อ", "ข้อความของคุณ"),
        (
            "cs-CZ",
            "Otevřít chat",
            "S čím vám mohu pomoci?",
            "Kde je moje objednávka",
            "Vaše zpráva",
        ),
    ],
    ids=["th", "cs"],
)
async def test_thai_and_czech_render(
    pages: Pages,
    shop: AppServer,
    locale: str,
    open_label: str,
    greeting: str,
    option: str,
    box: str,
) -> None:
    page = await pages.new("phone", locale=locale)
    await page.goto(shop.http + "/")
    await page.get_by_role("button", name=open_label).click()
    await expect(page.get_by_text(greeting)).to_be_visible()
    await page.get_by_role("button", name=option).click()
    await expect(page.get_by_label(box)).to_be_enabled()
    await _shot(page, f"widget-locale-{locale}")


async def test_a_message_typed_while_offline_is_sent_once_after_reconnecting(
    pages: Pages, redis_server: Any
) -> None:
    redis_server.flush()
    config = ServerConfig(redis_url=redis_server.url)
    page = await pages.new()
    await page.clock.install()  # the widget's reconnect backoff runs on this clock
    server = await AppServer(config).start()
    try:
        await page.goto(server.http + "/")
        await page.get_by_role("button", name="Open chat").click()
        await page.get_by_role("button", name="Track my order").click()
        await expect(page.get_by_label("Your message")).to_be_enabled()
        await server.stop()
        await expect(page.get_by_role("status")).to_have_text("Reconnecting…")
        await say(page, "1003")
        await expect(page.get_by_role("status")).to_contain_text("Offline")
        # Reconnect attempts fail meanwhile: the promise stays, not only "Reconnecting…".
        for _ in range(3):
            await page.clock.fast_forward(11_000)
            await page.wait_for_timeout(300)  # the refused connection closes (real time)
        await expect(page.get_by_role("status")).to_contain_text("Offline")
        # A new server where the old one was, on the same Redis: the session is still there.
        server = await AppServer(config, port=server.port).start()
        await page.clock.fast_forward(11_000)  # past the longest backoff (10 s and a jitter)
        await expect(page.get_by_label("Your message")).to_have_attribute("inputmode", "email")
        await expect(page.get_by_text("1003", exact=True)).to_have_count(1)
        await expect(page.get_by_role("status")).to_be_hidden()
    finally:
        await server.stop()


PROACTIVE_PAGE = """<!doctype html><html><head><title>Product</title></head><body><h1>Sweater</h1>
<script src="/widget.js" data-open-after="1" data-open-pages="/,/products/*" defer></script>
</body></html>"""


async def test_proactive_open_once_per_session_and_the_js_api(pages: Pages, tmp_path: Path) -> None:
    async with AppServer(_static(tmp_path, PROACTIVE_PAGE)) as server:
        page = await pages.new()
        await page.clock.install()
        await page.goto(server.http + "/")
        await expect(page.get_by_role("button", name="Open chat")).to_be_visible()
        await expect(page.get_by_role("dialog")).to_be_hidden()
        await page.clock.fast_forward(1000)
        await expect(page.get_by_role("dialog")).to_be_visible()  # opened by itself
        await page.get_by_role("button", name="Close chat").first.click()
        await page.reload()
        await expect(page.get_by_role("button", name="Open chat")).to_be_visible()
        await page.clock.fast_forward(2000)  # the timer has run (and found it had opened once)
        await expect(page.get_by_role("dialog")).to_be_hidden()  # at most once per session
        await page.evaluate("""() => {
            window.seen = [];
            FlowEngine.on('open', () => seen.push('open'));
            FlowEngine.on('message', m => seen.push(m.from));
            FlowEngine.open();
        }""")
        await expect(page.get_by_role("dialog")).to_be_visible()
        await page.get_by_role("button", name="Size guide").click()
        # The API tells the page: opened, then the shopper's click, then the bot's answer.
        await page.wait_for_function("() => seen.lastIndexOf('bot') > seen.indexOf('shopper')")
        seen = await page.evaluate("seen")
        assert seen[0] == "open" and "shopper" in seen, seen
        await page.evaluate("FlowEngine.close()")
        await expect(page.get_by_role("dialog")).to_be_hidden()


async def test_identify_lets_a_verified_shopper_skip_the_email(pages: Pages) -> None:
    secret = "test-secret-for-identity"
    async with AppServer(ServerConfig(identity_secret=secret)) as server:
        page = await pages.new()
        await page.goto(server.http + "/")
        good = user_hash(secret, "chloe.pop@example.com")
        await page.evaluate(
            f"FlowEngine.identify({{email: 'chloe.pop@example.com', name: 'Chloe',"
            f" userHash: '{good}'}})"
        )
        await page.get_by_role("button", name="Open chat").click()
        await page.get_by_role("button", name="Track my order").click()
        await say(page, "1003")
        await expect(page.get_by_text("on its way with DHL")).to_be_visible()  # no email asked


async def test_the_agent_console_claims_and_replies_and_renders_hostile_text_inert(
    pages: Pages, tmp_path: Path
) -> None:
    config = ServerConfig(agents_file=str(tmp_path / "agents.json"))
    async with AppServer(config) as server:
        # An account as `flowengine agents add` makes it (tests/test_cli.py runs that command).
        server.runtime.handoffs.accounts.put(
            Account(
                "alice",
                "Alice",
                "agent",
                ("general", "orders", "returns", "sales"),
                hash_password("correct-horse-battery"),
            )
        )
        async with httpx.AsyncClient() as http:
            r = await http.get(server.http + "/agent", timeout=5)
        assert r.status_code == 200
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "connect-src 'self';" in csp  # its own socket, no other host (ws: would be any)

        console = await pages.new({"width": 1400, "height": 850})
        shopper = await pages.new()
        await console.goto(server.http + "/agent")
        await console.get_by_label("Username").fill("alice")
        await console.get_by_label("Password").fill("correct-horse-battery")
        await console.get_by_role("button", name="Log in").click()
        await expect(console.get_by_text("Alice · general")).to_be_visible()

        await shopper.goto(server.http + "/")
        await shopper.get_by_role("button", name="Open chat").click()
        await shopper.get_by_role("button", name="Track my order").click()
        await say(shopper, "1005")
        await say(shopper, "erik.dvorak@example.com")
        await expect(shopper.get_by_text("It was delivered on")).to_be_visible()
        await shopper.get_by_role("button", name="Talk to a person").first.click()
        await expect(shopper.get_by_text("Waiting for a person…")).to_be_visible()
        await say(shopper, HOSTILE)

        claim = console.get_by_role("button", name="Claim")
        await expect(claim).to_be_visible()
        await claim.click()
        erik = console.get_by_role(
            "heading", name="erik.dvorak@example.com · track_order · tracking"
        )
        await expect(erik).to_be_visible()
        transcript = console.locator("#transcript")
        await expect(transcript.get_by_text(HOSTILE, exact=True)).to_be_visible()
        assert await console.locator("#transcript img").count() == 0
        assert not await _requested(console, "/x")
        await expect(console.locator("#order")).to_contain_text("1005")
        await expect(console.locator("#order")).to_contain_text("delivered")
        await expect(shopper.get_by_text("Alice joined the chat.")).to_be_visible()

        reply = console.get_by_label("Reply to the shopper")
        await reply.fill("Hi Erik, happy to help with 1005.")
        await reply.press("Enter")
        await expect(shopper.get_by_text("Hi Erik, happy to help with 1005.")).to_be_visible()
        await say(shopper, "Can I swap the cap for a black one?")
        await expect(console.get_by_text("Can I swap the cap for a black one?")).to_be_visible()
        await console.get_by_label("Internal note").fill("Offered an exchange")
        await console.get_by_role("button", name="Add note").click()
        await expect(console.locator("#notes")).to_contain_text("Offered an exchange")
        await _shot(console, "console-chat")
        await _shot(shopper, "widget-with-agent")

        # A second chat claimed while the first is shown: the console shows the second, and the
        # next reply reaches that shopper only (never the one still on screen before).
        other = await pages.new()
        await other.goto(server.http + "/")
        await other.get_by_role("button", name="Open chat").click()
        await other.get_by_role("button", name="Talk to a person").first.click()
        await expect(other.get_by_text("Waiting for a person…")).to_be_visible()
        claim = console.locator("#queue").get_by_role("button", name="Claim")
        await expect(claim).to_be_visible()
        await claim.click()
        await expect(
            console.get_by_role("heading", name="Shopper · main · main menu")
        ).to_be_visible()
        await reply.fill("Hello second shopper")
        await reply.press("Enter")
        await expect(other.get_by_text("Hello second shopper")).to_be_visible()
        await expect(transcript.get_by_text("Hello second shopper")).to_be_visible()

        await console.locator("#mine").get_by_text("erik.dvorak@example.com").click()
        await expect(erik).to_be_visible()
        await console.get_by_role("button", name="Hand back to bot").click()
        await expect(shopper.get_by_text("You're back with the assistant.")).to_be_visible()
        # The note and the reply to the other shopper were sent on this console's socket before
        # the hand-back, whose notice Erik now sees: had either gone to his chat, it would be on
        # his screen before that notice.
        page = await shopper.content()
        assert "Offered an exchange" not in page and "Hello second shopper" not in page


async def test_a_long_page_title_is_cut_between_characters(pages: Pages, tmp_path: Path) -> None:
    """The widget sends at most 200 UTF-16 units of the title: an emoji across the cut is left
    out whole, never halved (half of one cannot be stored as text)."""
    title = "a" * 199 + "\N{GRINNING FACE}" + "b" * 10
    page_html = (
        f"<!doctype html><html><head><title>{title}</title></head><body><h1>Shop</h1>"
        '<script src="/widget.js" defer></script></body></html>'
    )
    async with AppServer(_static(tmp_path, page_html)) as server:
        page = await pages.new()
        await page.goto(server.http + "/")
        await page.get_by_role("button", name="Open chat").click()
        await expect(page.get_by_role("button", name="Size guide")).to_be_visible()
        sid = await page.evaluate(
            "() => Object.keys(localStorage).filter(k => k.endsWith(':session'))"
            ".map(k => localStorage.getItem(k))[0]"
        )
        record = await server.runtime.store.load(sid)
        assert record is not None
        state = m.State.from_json(record.state)
        assert state.context["page"]["title"] == "a" * 199


async def test_a_widget_ahead_of_the_store_after_a_failover_shows_the_replay(
    pages: Pages, redis_server: Any
) -> None:
    """The store lost a click the widget had shown (a failover): on reconnecting the server says
    `reset`, the widget forgets what it showed and shows the stored transcript, and the events
    that reuse the lost seqs are shown, not skipped."""
    import redis.asyncio as aioredis

    redis_server.flush()
    config = ServerConfig(redis_url=redis_server.url)
    page = await pages.new()
    await page.clock.install()
    raw = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    server = await AppServer(config).start()
    try:
        await page.goto(server.http + "/")
        await page.get_by_role("button", name="Open chat").click()
        await expect(page.get_by_role("button", name="Track my order")).to_be_visible()
        sid = await page.evaluate(
            "() => Object.keys(localStorage).filter(k => k.endsWith(':session'))"
            ".map(k => localStorage.getItem(k))[0]"
        )
        snapshot = await raw.hgetall(f"fe:{{{sid}}}:s")
        await page.get_by_role("button", name="Track my order").click()
        await expect(page.get_by_label("Your message")).to_be_enabled()
        await server.stop()
        await raw.hset(f"fe:{{{sid}}}:s", mapping=snapshot)  # the click is lost
        await raw.ltrim(f"fe:{{{sid}}}:log", 0, int(snapshot["seq"]) - 1)
        await raw.delete(f"fe:{{{sid}}}:act")  # lost with the rest
        # Mark what the page shows now: after the reset none of it may be left.
        await page.evaluate(
            "() => document.querySelector('flowengine-chat').shadowRoot"
            ".querySelectorAll('.msg').forEach(m => m.setAttribute('data-old', ''))"
        )
        server = await AppServer(config, port=server.port).start()
        await page.clock.fast_forward(11_000)
        await expect(page.locator("flowengine-chat .msg[data-old]")).to_have_count(0)
        await expect(page.locator("flowengine-chat .msg").first).to_be_visible()
        # The widget resends the click it had no ack for (applied now: the store lost it), or
        # the shopper clicks again; either way its events (which reuse the lost seqs) show.
        await expect(page.get_by_text("Track my order", exact=True)).to_have_count(1)
    finally:
        await raw.aclose()
        await server.stop()
