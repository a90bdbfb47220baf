"""The widget's own behaviour around the bot, in real Chromium against the real app: server errors
shown in the shopper's words (chosen by code, in all five locales), keyboard focus that follows
the conversation, an email step whose every text reaches the server, and colour contrast (WCAG
2.2) in the light and dark themes, measured from the computed styles.

Errors the UI cannot provoke are injected into the real socket with Playwright's WebSocket
routing: the page talks to the real server, and the test adds or answers a frame."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Page, WebSocketRoute, expect

from flowengine.server.config import ServerConfig
from tests.app_server import AppServer
from tests.browser import Pages, say
from tests.server_process import ROOT

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def shop() -> AsyncIterator[AppServer]:
    async with AppServer(ServerConfig()) as server:
        yield server


# -- errors ------------------------------------------------------------------------------------


def _documented_error_codes() -> list[str]:
    """Every code of the shopper socket's error table in docs/protocol.md."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    table = text.split("### Errors", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return [code for row in rows for code in re.findall(r"`(\w+)`", row)]


OOPS = "Something went wrong. Please try again."
# The English catalogue: what each code says (every other code: OOPS).
ENGLISH = {
    "expected_choice": "Please choose one of the options.",
    "expected_text": "Please type your answer in the box below.",
    "unknown_option": "That option is no longer available. Please choose one of the current ones.",
    "text_too_long": "That message is too long. Please shorten it.",
    "frame_too_large": "That message is too long. Please shorten it.",
    "busy": "One moment, I'm still working on your last answer.",
    "with_agent": "You're chatting with a person now: just type your message.",
    "already_with_agent": "You've already asked for a person. Please wait a moment.",
    "conversation_ended": "This conversation has ended. Start over any time.",
    "rate_limited": "You're sending messages too quickly. Please wait a moment.",
    "flooding": "You're sending messages too quickly. Please wait a moment.",
    "store_unavailable": "The service is briefly unavailable. Please try again in a moment.",
    "too_many_sessions": "The service is briefly unavailable. Please try again in a moment.",
    "session_expired": "Your previous conversation expired, so here is a new one.",
    "flow_gone": "This conversation can't continue. Please start over.",
}
# Per locale: the open button; "a person has already been asked for"; an unknown code; an
# action the server could not save (the status line while the widget sends it again).
LOCALES = {
    "en-US": (
        "Open chat",
        ENGLISH["already_with_agent"],
        OOPS,
        "Not saved yet: the service is briefly unavailable. Sending it again…",
    ),
    "cs-CZ": (
        "Otevřít chat",
        "O spojení s kolegou jste už požádali. Chvíli prosím vydržte.",
        "Něco se pokazilo. Zkuste to prosím znovu.",
        "Zatím neuloženo: služba je na chvíli nedostupná. Posíláme znovu…",
    ),
    "th-TH": (
        "เปิดแชท",
        "คุณขอคุยกับเจ้าหน้าที่ไปแล้ว กรุณารอสักครู่",
        "เกิดข้อผิดพลาด กรุณาลองอีกครั้ง",
        "ยังไม่ได้บันทึก: บริการไม่พร้อมใช้งานชั่วคราว กำลังส่งอีกครั้ง…",
    ),
    "id-ID": (
        "Buka chat",
        "Anda sudah meminta bicara dengan petugas. Mohon tunggu sebentar.",
        "Terjadi kesalahan. Silakan coba lagi.",
        "Belum tersimpan: layanan sedang tidak tersedia. Mengirim ulang…",
    ),
    "ro-RO": (
        "Deschideți chatul",
        "Ați cerut deja să vorbiți cu un coleg. Vă rugăm să așteptați puțin.",
        "Ceva nu a funcționat. Încercați din nou.",
        "Nesalvat încă: serviciul este indisponibil momentan. Se retrimite…",
    ),
}


async def _routed(
    page: Page,
    refuse: set[str] | None = None,
    hold_menus: float = 0.0,
    sent: list[dict[str, Any]] | None = None,
) -> list[WebSocketRoute]:
    """Pass the widget's socket through to the real server, except: actions whose type is in
    `refuse` (a set the test may change meanwhile) are answered `store_unavailable` (not
    saved) instead; server frames that bring a menu reach
    the page `hold_menus` seconds late (as after a slow order lookup). Every frame the page
    sends is added to `sent`. The routes, to add frames for the page."""
    routes: list[WebSocketRoute] = []
    loop = asyncio.get_running_loop()

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if sent is not None:
                sent.append(frame)
            if refuse and frame.get("type") in refuse:
                refused = {"code": "store_unavailable", "message": "not saved", "id": frame["id"]}
                ws.send(json.dumps({"type": "error", **refused}))
            else:
                server.send(message)

        def from_server(message: str | bytes) -> None:
            if not hold_menus:
                ws.send(message)
                return
            # Held menus come late, so a batch (docs/protocol.md) is passed on frame by frame,
            # as a server that does not batch sends it; the widget reads both.
            frame = json.loads(message)
            for one in frame["frames"] if frame["type"] == "batch" else [frame]:
                if one.get("options"):
                    loop.call_later(hold_menus, ws.send, json.dumps(one))
                else:
                    ws.send(json.dumps(one))

        ws.on_message(from_page)
        server.on_message(from_server)
        routes.append(ws)

    await page.route_web_socket(re.compile(r"/ws$"), route)
    return routes


@pytest.mark.parametrize("locale", list(LOCALES))
async def test_server_errors_are_shown_in_the_shoppers_words(
    pages: Pages, shop: AppServer, locale: str
) -> None:
    open_label, asked, oops, not_sent = LOCALES[locale]
    page = await pages.new(locale=locale)
    refusing = {"choose"}
    sent: list[dict[str, Any]] = []
    routes = await _routed(page, refuse=refusing, sent=sent)
    await page.goto(shop.http + "/")
    await page.get_by_role("button", name=open_label).click()
    first = page.locator(".options button").first
    await expect(first).to_be_visible()
    codes = [*_documented_error_codes(), "a_code_from_a_newer_server"]
    assert {"already_with_agent", "rate_limited", "flow_gone"} <= set(codes)
    # store_unavailable (the store is away) is no line in the conversation: the status line.
    lined = [c for c in codes if c != "store_unavailable"]
    for code in lined:
        routes[-1].send(json.dumps({"type": "error", "code": code, "message": f"ENGLISH {code}"}))
    lines = page.locator("flowengine-chat .log .error")
    await expect(lines).to_have_count(len(lined))
    shown = dict(zip(lined, await lines.all_inner_texts(), strict=True))
    assert shown["already_with_agent"] == asked
    assert shown["a_code_from_a_newer_server"] == oops
    for code, text in shown.items():
        assert "ENGLISH" not in text and code not in text, (code, text)
        if locale == "en-US":
            assert text == ENGLISH.get(code, OOPS), code
        else:
            assert text != ENGLISH.get(code, OOPS), (code, text)  # not left in English
    status = page.locator("flowengine-chat .status")
    routes[-1].send(json.dumps({"type": "error", "code": "store_unavailable", "message": "x"}))
    if locale == "en-US":
        await expect(status).to_have_text(ENGLISH["store_unavailable"])
    # A click the server could not save says so, once, and goes again by itself (same id)
    # until it is stored: no line per try, nothing for the shopper to click again.
    await first.click()
    await expect(status).to_have_text(not_sent)
    await expect(page.get_by_role("status")).to_have_text(not_sent)
    await page.wait_for_timeout(1500)  # the first resend comes after 1 s
    tries = [f for f in sent if f["type"] == "choose"]
    assert len(tries) >= 2 and len({f["id"] for f in tries}) == 1, tries
    await expect(lines).to_have_count(len(lined))  # no error line for any try
    refusing.clear()  # the store is back: the next try is stored and answered
    await expect(page.locator("flowengine-chat .log .msg.shopper")).to_have_count(1, timeout=15_000)
    await expect(status).to_have_text("")


async def test_a_double_click_on_an_option_is_one_choice(pages: Pages, shop: AppServer) -> None:
    page = await pages.new()
    sent: list[dict[str, Any]] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(json.loads(f))))
    await page.goto(shop.http + "/")
    await page.get_by_role("button", name="Open chat").click()
    await page.get_by_role("button", name="Shipping & delivery").dblclick()
    await expect(page.get_by_role("button", name="Rest of the EU")).to_be_visible()
    await page.wait_for_timeout(300)  # a second choice would have been refused by now
    assert [f["option"] for f in sent if f["type"] == "choose"] == ["shipping"]
    await expect(page.get_by_role("alert")).to_have_count(0)  # no "no longer available"
    await expect(page.get_by_text("Shipping & delivery", exact=True)).to_have_count(1)


# -- focus -------------------------------------------------------------------------------------


async def _focus_on(page: Page, what: str) -> None:
    """Wait until keyboard focus, inside the widget's shadow root, is on `what`: the text box,
    the first option button, or the conversation log."""
    pick = {
        "input": "r.querySelector('input')",
        "first option": "r.querySelector('.options button')",
        "log": "r.querySelector('[role=log]')",
    }
    try:
        await page.wait_for_function(
            f"""() => {{
                const host = document.querySelector('flowengine-chat'), r = host.shadowRoot;
                return document.activeElement === host && r.activeElement === {pick[what]};
            }}""",
            timeout=5000,
        )
    except Exception:
        now = await page.evaluate("""() => {
            const a = document.querySelector('flowengine-chat').shadowRoot.activeElement;
            return [document.activeElement.tagName, a && a.outerHTML];
        }""")
        raise AssertionError(f"focus is not on the {what} but on {now}") from None


async def test_focus_moves_to_the_next_control_when_typing_answers(
    pages: Pages, shop: AppServer
) -> None:
    page = await pages.new()
    # The answer to the email comes as "Found it: order #1003." (no menu, no text box), then
    # the menu: held back a moment, long enough for a focus left on the disabled box to fall.
    await _routed(page, hold_menus=0.3)
    await page.goto(shop.http + "/")
    await page.get_by_role("button", name="Open chat").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("button", name="Track my order")).to_be_focused()
    await page.keyboard.press("Enter")
    await _focus_on(page, "input")  # the next step asks for text
    await page.keyboard.type("1003")
    await page.keyboard.press("Enter")
    await expect(page.get_by_text("And the email address you used at checkout?")).to_be_visible()
    await _focus_on(page, "input")  # stays in the box for the next answer
    await page.keyboard.type("chloe.pop@example.com")
    await page.keyboard.press("Enter")
    await expect(page.get_by_text("Found it: order")).to_be_visible()
    await page.wait_for_timeout(100)  # the menu is still on its way
    await _focus_on(page, "log")  # waiting in the conversation, not on <body>
    await expect(page.get_by_text("on its way with DHL")).to_be_visible()
    await _focus_on(page, "first option")  # the answer's menu
    await expect(page.get_by_role("button", name="That's all, thanks")).to_be_visible()


async def test_focus_moves_to_the_next_menu_after_a_keyboard_choice(
    pages: Pages, shop: AppServer
) -> None:
    page = await pages.new()
    await page.goto(shop.http + "/")
    await page.get_by_role("button", name="Open chat").click()
    await page.get_by_role("button", name="Shipping & delivery").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("button", name="Rest of the EU")).to_be_visible()
    await _focus_on(page, "first option")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")  # the second region, by keyboard only
    await expect(page.get_by_text("3–5 business days")).to_be_visible()


# -- the email step ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "open_label", "track", "retry"),
    [
        ("en-US", "Open chat", "Track my order", "That doesn't look like an email address."),
        ("cs-CZ", "Otevřít chat", "Kde je moje objednávka", "To nevypadá jako e-mailová adresa."),
    ],
    ids=["en", "cs"],
)
async def test_a_mistyped_email_reaches_the_server_and_gets_the_flows_retry(
    pages: Pages, shop: AppServer, locale: str, open_label: str, track: str, retry: str
) -> None:
    page = await pages.new("phone", locale=locale)
    await page.goto(shop.http + "/")
    await page.get_by_role("button", name=open_label).click()
    await page.get_by_role("button", name=track).click()
    await say(page, "1003")
    box = page.locator("flowengine-chat input")
    await expect(box).to_have_attribute("inputmode", "email")  # the phone's email keyboard
    await expect(box).to_have_attribute("autocomplete", "email")
    await expect(box).to_have_attribute("type", "text")  # no browser validation to block it
    rules = await box.evaluate(
        "i => [i.required, i.pattern, i.form.noValidate, i.willValidate && !i.checkValidity()]"
    )
    assert rules == [False, "", True, False], rules
    await say(page, "chloe.pop at example")
    await expect(page.get_by_text("chloe.pop at example", exact=True)).to_be_visible()  # echoed
    await expect(page.get_by_text(retry)).to_be_visible()  # the flow's own answer
    await expect(box).to_be_enabled()
    await expect(box).to_have_value("")
    await say(page, "chloe.pop@example.com")
    await expect(page.get_by_text(retry)).to_have_count(1)


# -- contrast ----------------------------------------------------------------------------------


def _rgba(css: str) -> tuple[float, float, float, float]:
    parts = [float(x) for x in re.findall(r"[\d.]+", css)]
    return (parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else 1.0)


def _luminance(rgb: tuple[float, float, float]) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(fg: str, bg: str) -> float:
    """WCAG 2.2 contrast ratio; a translucent foreground is laid over the background first."""
    *f, alpha = _rgba(fg)
    b = _rgba(bg)[:3]
    over = tuple(alpha * f[i] + (1 - alpha) * b[i] for i in range(3))
    lighter, darker = sorted((_luminance(over), _luminance(b)), reverse=True)  # type: ignore[arg-type]
    return (lighter + 0.05) / (darker + 0.05)


# Every pair the shopper has to tell apart, from the computed styles: [what, fg, bg, minimum].
PAIRS = """() => {
    const r = document.querySelector('flowengine-chat').shadowRoot, out = [];
    const css = (n, pseudo) => getComputedStyle(n, pseudo);
    const opaque = c => !/^rgba\\(.*,\\s*0\\)$/.test(c) && c !== 'transparent';
    const behind = n => {  // the first opaque background at or above n
        for (; n; n = n.parentElement || (n.getRootNode() && n.getRootNode().host)) {
            if (opaque(css(n).backgroundColor)) return css(n).backgroundColor;
        }
        return 'rgb(255, 255, 255)';
    };
    const add = (what, fg, bg, min) => out.push([what, fg, bg, min]);
    for (const b of r.querySelectorAll('.options button')) {
        const s = css(b), label = b.textContent;
        add('option border on the button: ' + label, s.borderTopColor, behind(b), 3);
        add('option border on the strip: ' + label, s.borderTopColor, behind(b.parentElement), 3);
        add('option text: ' + label, s.color, behind(b), 4.5);
    }
    for (const p of r.querySelectorAll('.log p, .log .who')) {
        add(p.className + ': ' + p.textContent.slice(0, 40), css(p).color, behind(p), 4.5);
    }
    for (const b of r.querySelectorAll('.tools button:not([hidden])')) {
        add('tool: ' + b.textContent, css(b).color, behind(b), 4.5);
    }
    const input = r.querySelector('input'), send = r.querySelector('form button');
    if (!input.disabled) {
        add('text box border', css(input).borderTopColor, behind(input.parentElement), 3);
        add('text box text', css(input).color, behind(input), 4.5);
        add('placeholder', css(input, '::placeholder').color, behind(input), 4.5);
        add('send', css(send).color, behind(send), 4.5);
    }
    const title = r.querySelector('header h2');
    add('title', css(title).color, behind(title), 4.5);
    add('panel', 'rgb(0, 0, 0)', behind(r.querySelector('.log')), 1);  // (which theme is on)
    return out;
}"""


def _page(attrs: str) -> str:
    return (
        "<!doctype html><html><head><title>Shop</title></head><body><h1>Shop</h1>"
        f'<script src="/widget.js" data-title="Help" {attrs} defer></script></body></html>'
    )


@pytest.mark.parametrize(
    ("attrs", "scheme", "dark"),
    [
        ("", "light", False),
        ("", "dark", True),
        ('data-theme="dark"', "light", True),
        ('data-theme="light"', "dark", False),
        ('data-color="#ffd400"', "light", False),  # a light brand colour
        ('data-color="#ffd400"', "dark", True),
    ],
    ids=["auto-light", "auto-dark", "theme-dark", "theme-light", "yellow-light", "yellow-dark"],
)
async def test_contrast_in_light_and_dark(
    pages: Pages, tmp_path: Path, attrs: str, scheme: Any, dark: bool
) -> None:
    (tmp_path / "demo.html").write_text(_page(attrs))
    shutil.copy(ROOT / "widget" / "widget.js", tmp_path / "widget.js")
    async with AppServer(ServerConfig(static_dir=str(tmp_path))) as server:
        page = await pages.new()
        await page.emulate_media(color_scheme=scheme)
        routes = await _routed(page)
        await page.goto(server.http + "/")
        await page.get_by_role("button", name="Open chat").click()
        await expect(page.locator(".options button").first).to_be_visible()
        pairs = await page.evaluate(PAIRS)  # the greeting's menu
        await page.locator(".tools").get_by_role("button", name="Talk to a person").click()
        await expect(page.get_by_text("Nobody is available right now.")).to_be_visible()
        await say(page, "anna@example.com")  # a shopper bubble; the flow asks for the message
        routes[-1].send(json.dumps({"type": "error", "code": "busy", "message": "busy"}))
        await expect(page.get_by_role("alert")).to_be_visible()
        await expect(page.locator("flowengine-chat input")).to_be_enabled()
        pairs += await page.evaluate(PAIRS)  # notices, an error, the text box, the bubbles
        panel = next(bg for what, _, bg, _ in pairs if what == "panel")
        assert (_luminance(_rgba(panel)[:3]) < 0.05) == dark, panel
        kinds = {what.split(":")[0] for what, *_ in pairs}
        assert {"option border on the strip", "msg error", "msg notice", "placeholder"} <= kinds
        low = [
            (what, fg, bg, round(_contrast(fg, bg), 2))
            for what, fg, bg, least in pairs
            if _contrast(fg, bg) < least
        ]
        assert low == [], low


async def test_a_server_without_its_store_is_said_through_the_reconnects(
    pages: Pages, shop: AppServer
) -> None:
    """A page loaded while the store is away: every hello is refused (store_unavailable, then
    a close) until it is back. The status line keeps saying the service is unavailable, not
    a bare "Connecting…" over an empty chat; no error line piles up; and the reconnects slow
    down (the back-off grows until a session opens)."""
    away = {"on": True}
    hellos: list[float] = []
    loop = asyncio.get_running_loop()

    def route(ws: WebSocketRoute) -> None:
        server = None if away["on"] else ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            if server is not None:
                server.send(message)
            elif json.loads(message).get("type") == "hello":
                hellos.append(loop.time())
                ws.send(json.dumps({"type": "error", "code": "store_unavailable", "message": "x"}))
                loop.call_soon(lambda: asyncio.ensure_future(ws.close(code=1011)))

        ws.on_message(from_page)
        if server is not None:
            server.on_message(lambda m: ws.send(m))

    page = await pages.new()
    await page.route_web_socket(re.compile(r"/ws$"), route)
    await page.goto(shop.http + "/")
    await page.get_by_role("button", name="Open chat").click()
    status = page.locator("flowengine-chat .status")
    await page.wait_for_timeout(3500)
    await expect(status).to_have_text(ENGLISH["store_unavailable"])
    await expect(page.locator("flowengine-chat .log .error")).to_have_count(0)
    assert 2 <= len(hellos) <= 4, hellos  # 0.5, 1, 2 s apart (with jitter), not every 0.5 s
    away["on"] = False
    menu = page.locator("flowengine-chat .options button").first
    await expect(menu).to_be_visible(timeout=15_000)
    await expect(status).to_have_text("")
