"""The widget in a real headless Chromium (Debian's chromium, driven by Playwright), on the demo
page served by a real `flowengine serve`. Screenshots go to test-artifacts/ (look at them)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.server_process import ROOT, ServerProcess

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _page(browser: Browser, viewport: str, locale: str = "en-US") -> Page:
    context = browser.new_context(
        viewport=VIEWPORTS[viewport],
        locale=locale,
        is_mobile=viewport == "phone",
        has_touch=viewport == "phone",
    )
    page = context.new_page()
    page.on("pageerror", lambda exc: pytest.fail(f"page error: {exc}"))
    return page


def _shot(page: Page, name: str) -> Path:
    path = ARTIFACTS / f"widget-{name}.png"
    page.screenshot(path=str(path))
    return path


def _say(page: Page, text: str) -> None:
    box = page.get_by_label("Your message")
    expect(box).to_be_enabled()
    box.fill(text)
    box.press("Enter")


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_track_an_order_reload_mid_flow_and_ask_for_a_person(
    browser: Browser, server: ServerProcess, viewport: str
) -> None:
    page = _page(browser, viewport)
    page.goto(server.http + "/")
    page.get_by_role("button", name="Open chat").click()
    dialog = page.get_by_role("dialog", name="Northwind help")
    expect(dialog).to_be_visible()
    page.get_by_role("button", name="Track my order").click()
    expect(page.get_by_label("Your message")).to_have_attribute("type", "text")
    _say(page, "1003")
    expect(page.get_by_label("Your message")).to_have_attribute("type", "email")
    # Reload mid-flow: the transcript comes back and the conversation goes on.
    page.reload()
    expect(page.get_by_role("dialog", name="Northwind help")).to_be_visible()  # open state kept
    expect(page.get_by_text("1003", exact=True)).to_be_visible()
    expect(page.get_by_text("Track my order", exact=True)).to_have_count(1)  # nothing twice
    _say(page, "chloe.pop@example.com")
    expect(page.get_by_text("on its way with DHL")).to_be_visible()
    link = page.get_by_role("link", name="Track your parcel")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(page.get_by_role("button", name="That's all, thanks")).to_be_visible()
    _shot(page, f"{viewport}-tracking")
    page.get_by_role("button", name="Talk to a person").first.click()
    expect(page.get_by_text("Nobody is available right now.")).to_be_visible()
    expect(page.get_by_label("Your message")).to_have_attribute("type", "email")
    _shot(page, f"{viewport}-person")
    page.context.close()


def test_hostile_text_is_shown_as_text(browser: Browser, server: ServerProcess) -> None:
    page = _page(browser, "desktop")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(server.http + "/")
    page.get_by_role("button", name="Open chat").click()
    page.get_by_role("button", name="Report a problem").click()
    hostile = "<img src=x onerror=alert(1)>"
    _say(page, hostile)
    expect(page.get_by_text(hostile, exact=True)).to_be_visible()
    assert page.locator("flowengine-chat img[src=x]").count() == 0
    page.wait_for_timeout(300)
    assert dialogs == []
    _shot(page, "hostile-text")
    page.context.close()


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


def test_a_host_page_with_hostile_css_does_not_break_the_widget(
    browser: Browser, tmp_path: Path
) -> None:
    (tmp_path / "demo.html").write_text(HOSTILE_PAGE)
    shutil.copy(ROOT / "widget" / "widget.js", tmp_path / "widget.js")
    server = ServerProcess("--widget-dir", str(tmp_path)).start()
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.http + "/")
    launcher = page.get_by_role("button", name="Open chat")
    expect(launcher).to_be_visible()
    launcher.click()
    page.get_by_role("button", name="Shipping & delivery").click()
    page.get_by_role("button", name="Rest of the EU").click()
    expect(page.get_by_text("3–5 business days")).to_be_visible()
    _shot(page, "hostile-css")
    page.close()
    server.stop()
    assert errors == [], errors


def test_keyboard_only(browser: Browser, server: ServerProcess) -> None:
    page = _page(browser, "desktop")
    page.goto(server.http + "/")
    launcher = page.get_by_role("button", name="Open chat")
    launcher.focus()
    page.keyboard.press("Enter")
    first = page.get_by_role("button", name="Track my order")
    expect(first).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Return an item")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Your message")).to_be_enabled()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.get_by_role("button", name="Open chat")).to_be_focused()
    page.context.close()


def test_thai_and_czech_render(browser: Browser, server: ServerProcess) -> None:
    cases = (
        ("th-TH", "เปิดแชท", "มีอะไรให้ช่วยไหมคะ", "ติดตามคำสั่งซื้อ", "ข้อความของคุณ"),
        (
            "cs-CZ",
            "Otevřít chat",
            "S čím vám mohu pomoci?",
            "Kde je moje objednávka",
            "Vaše zpráva",
        ),
    )
    for locale, open_label, greeting, option, box in cases:
        page = _page(browser, "phone", locale=locale)
        page.goto(server.http + "/")
        page.get_by_role("button", name=open_label).click()
        expect(page.get_by_text(greeting)).to_be_visible()
        page.get_by_role("button", name=option).click()
        expect(page.get_by_label(box)).to_be_enabled()
        _shot(page, f"locale-{locale}")
        page.context.close()


def test_a_message_typed_while_offline_is_sent_once_after_reconnecting(
    browser: Browser, redis_server: object
) -> None:
    server = ServerProcess("--redis-url", redis_server.url).start()  # type: ignore[attr-defined]
    page = _page(browser, "desktop")
    try:
        page.goto(server.http + "/")
        page.get_by_role("button", name="Open chat").click()
        page.get_by_role("button", name="Track my order").click()
        expect(page.get_by_label("Your message")).to_be_enabled()
        server.stop()
        expect(page.get_by_role("status")).to_have_text("Reconnecting…")
        _say(page, "1003")
        expect(page.get_by_role("status")).to_contain_text("Offline")
        server.start()  # same port, same Redis: the session is still there
        expect(page.get_by_label("Your message")).to_have_attribute("type", "email", timeout=15000)
        expect(page.get_by_text("1003", exact=True)).to_have_count(1)
        expect(page.get_by_role("status")).to_be_hidden()
    finally:
        page.context.close()
        server.stop()


PROACTIVE_PAGE = """<!doctype html><html><head><title>Product</title></head><body><h1>Sweater</h1>
<script src="/widget.js" data-open-after="1" data-open-pages="/,/products/*" defer></script>
</body></html>"""


def test_proactive_open_once_per_session_and_the_js_api(browser: Browser, tmp_path: Path) -> None:
    (tmp_path / "demo.html").write_text(PROACTIVE_PAGE)
    shutil.copy(ROOT / "widget" / "widget.js", tmp_path / "widget.js")
    server = ServerProcess("--widget-dir", str(tmp_path)).start()
    page = _page(browser, "desktop")
    try:
        page.goto(server.http + "/")
        expect(page.get_by_role("dialog")).to_be_hidden()
        expect(page.get_by_role("dialog")).to_be_visible(timeout=5000)  # opened by itself
        page.get_by_role("button", name="Close chat").first.click()
        page.reload()
        page.wait_for_timeout(1800)
        expect(page.get_by_role("dialog")).to_be_hidden()  # at most once per session
        page.evaluate("""() => {
            window.seen = [];
            FlowEngine.on('open', () => seen.push('open'));
            FlowEngine.on('message', m => seen.push(m.from));
            FlowEngine.open();
        }""")
        expect(page.get_by_role("dialog")).to_be_visible()
        page.get_by_role("button", name="Size guide").click()
        # The API tells the page: opened, then the shopper's click, then the bot's answer.
        page.wait_for_function("() => seen.lastIndexOf('bot') > seen.indexOf('shopper')")
        seen = page.evaluate("seen")
        assert seen[0] == "open" and "shopper" in seen, seen
        page.evaluate("FlowEngine.close()")
        expect(page.get_by_role("dialog")).to_be_hidden()
    finally:
        page.context.close()
        server.stop()


def test_identify_lets_a_verified_shopper_skip_the_email(browser: Browser) -> None:
    from flowengine.server.identity import user_hash

    secret = "test-secret-for-identity"
    server = ServerProcess(env={"FLOWENGINE_IDENTITY_SECRET": secret}).start()
    page = _page(browser, "desktop")
    try:
        page.goto(server.http + "/")
        good = user_hash(secret, "chloe.pop@example.com")
        page.evaluate(
            f"FlowEngine.identify({{email: 'chloe.pop@example.com', name: 'Chloe',"
            f" userHash: '{good}'}})"
        )
        page.get_by_role("button", name="Open chat").click()
        page.get_by_role("button", name="Track my order").click()
        _say(page, "1003")
        expect(page.get_by_text("on its way with DHL")).to_be_visible()  # no email asked
    finally:
        page.context.close()
        server.stop()


def test_the_agent_console_claims_and_replies_and_renders_hostile_text_inert(
    browser: Browser, tmp_path: Path
) -> None:
    from tests.server_process import add_agent

    agents = tmp_path / "agents.json"
    add_agent("alice", agents_file=agents)
    server = ServerProcess("--agents-file", str(agents)).start()
    status, _ = server.get("/agent")
    assert status == 200
    import urllib.request

    with urllib.request.urlopen(server.http + "/agent", timeout=5) as r:
        csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp

    dialogs: list[str] = []
    console = browser.new_page(viewport={"width": 1400, "height": 850})
    console.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    console.on("pageerror", lambda exc: pytest.fail(f"console error: {exc}"))
    shopper = _page(browser, "desktop")
    try:
        console.goto(server.http + "/agent")
        console.get_by_label("Username").fill("alice")
        console.get_by_label("Password").fill("correct-horse-battery")
        console.get_by_role("button", name="Log in").click()
        expect(console.get_by_text("Alice · general")).to_be_visible()

        shopper.goto(server.http + "/")
        shopper.get_by_role("button", name="Open chat").click()
        shopper.get_by_role("button", name="Track my order").click()
        _say(shopper, "1005")
        _say(shopper, "erik.dvorak@example.com")
        expect(shopper.get_by_text("It was delivered on")).to_be_visible()
        shopper.get_by_role("button", name="Talk to a person").first.click()
        expect(shopper.get_by_text("Waiting for a person…")).to_be_visible()
        hostile = "<img src=x onerror=alert(1)>"
        _say(shopper, hostile)

        claim = console.get_by_role("button", name="Claim")
        expect(claim).to_be_visible(timeout=10000)
        claim.click()
        expect(
            console.get_by_role("heading", name="erik.dvorak@example.com · track_order · tracking")
        ).to_be_visible()
        expect(console.locator("#transcript").get_by_text(hostile, exact=True)).to_be_visible()
        assert console.locator("#transcript img").count() == 0
        expect(console.locator("#order")).to_contain_text("1005")
        expect(console.locator("#order")).to_contain_text("delivered")
        expect(shopper.get_by_text("Alice joined the chat.")).to_be_visible()

        console.get_by_label("Reply to the shopper").fill("Hi Erik, happy to help with 1005.")
        console.get_by_label("Reply to the shopper").press("Enter")
        expect(shopper.get_by_text("Hi Erik, happy to help with 1005.")).to_be_visible()
        _say(shopper, "Can I swap the cap for a black one?")
        expect(console.get_by_text("Can I swap the cap for a black one?")).to_be_visible()
        console.get_by_label("Internal note").fill("Offered an exchange")
        console.get_by_role("button", name="Add note").click()
        expect(console.locator("#notes")).to_contain_text("Offered an exchange")
        console.wait_for_timeout(300)
        console.screenshot(path=str(ARTIFACTS / "console-chat.png"))
        _shot(shopper, "with-agent")
        assert "Offered an exchange" not in shopper.content()

        # A second chat claimed while the first is shown: the console shows the second, and the
        # next reply reaches that shopper only (never the one still on screen before).
        other = _page(browser, "desktop")
        other.goto(server.http + "/")
        other.get_by_role("button", name="Open chat").click()
        other.get_by_role("button", name="Talk to a person").first.click()
        expect(other.get_by_text("Waiting for a person…")).to_be_visible()
        claim = console.locator("#queue").get_by_role("button", name="Claim")
        expect(claim).to_be_visible(timeout=10000)
        claim.click()
        expect(console.get_by_role("heading", name="Shopper · main · main menu")).to_be_visible()
        console.get_by_label("Reply to the shopper").fill("Hello second shopper")
        console.get_by_label("Reply to the shopper").press("Enter")
        expect(other.get_by_text("Hello second shopper")).to_be_visible()
        expect(console.locator("#transcript").get_by_text("Hello second shopper")).to_be_visible()
        assert "Hello second shopper" not in shopper.content()
        other.context.close()

        console.locator("#mine").get_by_text("erik.dvorak@example.com").click()
        expect(
            console.get_by_role("heading", name="erik.dvorak@example.com · track_order · tracking")
        ).to_be_visible()
        console.get_by_role("button", name="Hand back to bot").click()
        expect(shopper.get_by_text("You're back with the assistant.")).to_be_visible()
        assert dialogs == []
    finally:
        console.close()
        shopper.context.close()
        server.stop()
