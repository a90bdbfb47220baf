"""The agent console (flowengine/handoff/console) in a real headless Chromium, against the real
app served in the test's own loop over real sockets; shoppers are socket clients
(`tests/server_process.py` Client). What agents reported and what must not come back: replies
reaching the wrong shopper, finished chats that look live, a Claim button losing focus to the
queue's refresh, replies lost while the socket was down, and the canned "/" shortcut.
Screenshots go to /tmp/console-*.png (look at them)."""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Page, WebSocketRoute, expect

from flowengine.handoff.accounts import Account
from flowengine.handoff.passwords import hash_password
from flowengine.server.config import ServerConfig
from tests.app_server import AppServer
from tests.browser import Pages
from tests.server_process import Agent, Client

# The session's loop, where the one browser lives (the `browser` and `pages` fixtures).
pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSWORD = "correct-horse-battery"
HANDOFF = """
teams: [general, sales]
canned:
  - {title: Greeting, text: "Hi, I'm here to help."}
  - {title: Returns policy, text: "You can return any item within 30 days."}
  - {title: Shipping times, text: "Parcels arrive in 2-4 business days."}
"""
SIZE = {"width": 1400, "height": 850}


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)  # scrypt is slow on purpose: once for every test account


def _account(
    server: AppServer, username: str, teams: str = "general,sales", role: str = "agent"
) -> None:
    """An agent account, as `flowengine agents add` makes it (tests/test_cli.py runs that)."""
    server.runtime.handoffs.accounts.put(
        Account(username, username.capitalize(), role, tuple(teams.split(",")), _password_hash())
    )


def _config(tmp_path: Path, **more: Any) -> ServerConfig:
    cfg = tmp_path / "handoff.yaml"
    cfg.write_text(HANDOFF)
    return ServerConfig(handoff_config=str(cfg), agents_file=str(tmp_path / "agents.json"), **more)


@pytest_asyncio.fixture(loop_scope="session")
async def server(tmp_path: Path) -> AsyncIterator[AppServer]:
    async with AppServer(_config(tmp_path)) as app:
        _account(app, "alice")
        yield app


async def _console(pages: Pages, server: AppServer, username: str = "alice") -> Page:
    """A console logged in as `username`, online (its first queue frame has come)."""
    page = await pages.new(SIZE)
    await _log_in(page, server, username)
    return page


async def _log_in(page: Page, server: AppServer, username: str = "alice") -> None:
    await page.goto(server.http + "/agent")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#me")).to_contain_text(username.capitalize())
    await expect(page.locator("#queue")).not_to_have_attribute("aria-busy", "true")


async def _console_refusing(
    pages: Pages, server: AppServer, kind: str, times: int
) -> tuple[Page, list[str]]:
    """A console logged in as alice whose first `times` actions of type `kind` are answered
    `store_unavailable` (the store away) instead of reaching the server; later ones pass.
    Also the ids of every `kind` frame it sent."""
    page = await pages.new(SIZE)
    left = [times]
    sent: list[str] = []

    def route(ws: WebSocketRoute) -> None:
        upstream = ws.connect_to_server()

        def up(message: str | bytes) -> None:
            frame = json.loads(message) if isinstance(message, str) else {}
            if frame.get("type") == kind:
                sent.append(frame["id"])
                if left[0]:
                    left[0] -= 1
                    refused = {"code": "store_unavailable", "message": "not saved; try again"}
                    ws.send(json.dumps({"type": "error", "id": frame["id"], **refused}))
                    return
            upstream.send(message)

        ws.on_message(up)
        upstream.on_message(lambda m: ws.send(m))

    await page.route_web_socket(re.compile(r".*/agent/ws$"), route)
    await _log_in(page, server)
    return page, sent


async def _shopper(server: AppServer, name: str, say: str | None = None) -> Client:
    """A shopper (a socket client) waiting for a person, having said `say` while waiting; the
    shop's page tells their cart total."""
    c = await Client.connect(
        server.ws_url,
        context={
            "shopper": {"name": name, "email": f"{name.lower()}@example.com"},
            "context": {"cart_total": 89},
        },
    )
    await c.until(lambda f: f.get("seq") == 1)
    await c.act({"type": "handoff"})
    queued = await c.until(lambda f: f.get("type") == "handoff")
    assert queued["status"] == "queued", queued
    if say:
        assert (await c.act({"type": "text", "text": say}))["type"] == "ack"
    return c


def _row(page: Page, name: str) -> Any:
    return page.locator("#queue li", has_text=name)


async def _claim(page: Page, name: str) -> None:
    await _row(page, name).get_by_role("button", name="Claim").click()
    await expect(page.locator("#chat-title")).to_have_text(re.compile("^" + name))
    await expect(page.locator("#chat-state")).to_have_text("Yours")


async def _reply(page: Page, text: str) -> None:
    box = page.get_by_label("Reply to the shopper")
    await expect(box).to_be_enabled()
    await box.fill(text)
    await box.press("Enter")


def _from_agent(f: dict[str, Any]) -> bool:
    return f.get("type") == "message" and f.get("from") == "agent"


def _said_by_agent(c: Client) -> list[str]:
    return [f["text"] for f in c.events if f["type"] == "message" and f["from"] == "agent"]


async def _stored(server: AppServer, sid: str) -> list[dict[str, Any]]:
    return await server.runtime.store.replay(sid, 0, 1000)


async def test_two_shoppers_one_agent_each_gets_only_their_reply(
    pages: Pages, server: AppServer
) -> None:
    page = await _console(pages, server)
    anna = await _shopper(server, "Anna", "Where is my parcel?")
    ben = await _shopper(server, "Ben", "I want a refund")
    # The queue shows who is waiting, what they said last, and for how long.
    await expect(_row(page, "Anna")).to_contain_text("anna@example.com")
    await expect(_row(page, "Anna")).to_contain_text("“Where is my parcel?”")
    await expect(_row(page, "Ben")).to_contain_text("“I want a refund”")
    await expect(_row(page, "Anna").locator(".wait")).to_have_text(re.compile(r"waiting \d+:\d\d"))
    await expect(page.locator("#waiting-count")).to_have_text("2")
    await page.screenshot(path="/tmp/console-queue.png")

    await _claim(page, "Anna")
    await _reply(page, "Hello Anna")
    await _claim(page, "Ben")  # shown at once: the next reply goes to Ben
    await _reply(page, "Hello Ben")
    await anna.until(_from_agent)
    await ben.until(_from_agent)
    # Switch back by the list: the reply box is Anna's again.
    await page.locator("#mine").get_by_text("Anna").click()
    await expect(page.locator("#chat-title")).to_have_text(re.compile("^Anna"))
    await _reply(page, "Anything else, Anna?")
    await anna.until(lambda f: f.get("text") == "Anything else, Anna?")
    await expect(page.locator("#transcript li.pending")).to_have_count(0)
    assert _said_by_agent(anna) == ["Hello Anna", "Anything else, Anna?"]
    assert _said_by_agent(ben) == ["Hello Ben"]

    # Timestamps: every message carries the time it was stored, HH:MM in the browser's locale.
    times = await page.locator("#transcript time").all_inner_texts()
    assert times and all(re.fullmatch(r"\d{1,2}:\d{2}( [AP]M)?", t) for t in times), times
    await expect(page.locator("#transcript time").first).to_have_attribute(
        "datetime", re.compile(r"^\d{4}-\d\d-\d\dT")
    )
    await page.screenshot(path="/tmp/console-chat.png")
    for c in (anna, ben):
        await c.close()


async def test_a_focused_claim_button_keeps_focus_while_the_queue_updates(
    pages: Pages, server: AppServer
) -> None:
    page = await _console(pages, server)
    shoppers = [await _shopper(server, n) for n in ("Carla", "Dan")]
    await expect(page.locator("#queue li")).to_have_count(2)
    await expect(page.locator("#queue")).not_to_have_attribute("aria-live", re.compile("."))
    claim = _row(page, "Carla").get_by_role("button", name="Claim")
    await claim.focus()
    waited = _row(page, "Carla").locator(".wait")
    before = await waited.inner_text()
    await page.evaluate("""() => {
        window.changes = {queue: 0, announce: 0};
        new MutationObserver(m => { changes.queue += m.length; })
            .observe(document.getElementById('queue'), {childList: true});
        new MutationObserver(m => { changes.announce += m.length; })
            .observe(document.getElementById('announce'), {childList: true, subtree: true,
                                                            characterData: true});
    }""")
    await asyncio.sleep(3.2)  # three queue frames or more
    await expect(claim).to_be_focused()
    assert await waited.inner_text() != before  # the wait moved on, in place
    changes = await page.evaluate("changes")
    assert changes == {"queue": 0, "announce": 0}, changes  # nothing rebuilt, nothing re-read

    # A new chat is added (and said once), without taking the focus.
    shoppers.append(await _shopper(server, "Eve"))
    await expect(page.locator("#announce")).to_contain_text("New chat waiting: Eve")
    await expect(page.locator("#queue li")).to_have_count(3)
    await expect(claim).to_be_focused()
    # Keyboard: Enter on the focused button claims that chat.
    await page.keyboard.press("Enter")
    await expect(page.locator("#chat-title")).to_have_text(re.compile("^Carla"))
    await expect(page.get_by_label("Reply to the shopper")).to_be_focused()
    for c in shoppers:
        await c.close()


async def test_finished_chats_say_what_happened_and_can_be_dismissed(
    pages: Pages, server: AppServer
) -> None:
    page = await _console(pages, server)
    reply = page.get_by_label("Reply to the shopper")
    state = page.locator("#chat-state")

    # Closed by the agent; a note stays readable.
    fay = await _shopper(server, "Fay")
    await _claim(page, "Fay")
    await page.get_by_label("Internal note").fill("Wanted a discount")
    await page.get_by_role("button", name="Add note").click()
    await expect(page.locator("#notes")).to_contain_text("Wanted a discount")
    await expect(page.get_by_label("Internal note")).to_have_value("")  # cleared on the ack
    await page.get_by_role("button", name="Close", exact=True).click()
    await expect(state).to_have_text("Closed by you")
    await expect(reply).to_be_disabled()
    await expect(page.get_by_role("button", name="Send")).to_be_disabled()
    await expect(page.get_by_role("button", name="Hand back to bot")).to_be_hidden()
    await expect(page.locator("#notes")).to_contain_text("Wanted a discount")
    await fay.until(lambda f: f.get("type") == "ended")

    # Handed back to the bot.
    gus = await _shopper(server, "Gus")
    await _claim(page, "Gus")
    await page.get_by_role("button", name="Hand back to bot").click()
    await expect(state).to_have_text("Handed back to the bot")
    await expect(reply).to_be_disabled()

    # Transferred to another team (someone is online there: alice).
    hal = await _shopper(server, "Hal")
    await _claim(page, "Hal")
    await page.locator("#transfer-team").select_option("sales")
    await page.get_by_role("button", name="Transfer", exact=True).click()
    await expect(state).to_have_text("Transferred to sales")
    await expect(reply).to_be_disabled()
    await expect(_row(page, "Hal")).to_contain_text("sales")  # waiting again, in sales

    # The shopper left (started over).
    ida = await _shopper(server, "Ida")
    await _claim(page, "Ida")
    await ida.act({"type": "restart"})
    await expect(state).to_have_text("Closed by the shopper")
    await expect(reply).to_be_disabled()

    mine = page.locator("#mine")
    await expect(mine.locator("li", has_text="Fay")).to_contain_text("Closed by you")
    await expect(mine.locator("li", has_text="Gus")).to_contain_text("Handed back to the bot")
    await expect(mine.locator("li", has_text="Hal")).to_contain_text("Transferred to sales")
    await expect(mine.locator("li", has_text="Ida")).to_contain_text("Closed by the shopper")
    await page.screenshot(path="/tmp/console-finished.png")

    # Dismiss: from the chat in view, and from the list.
    await page.locator("#chat").get_by_role("button", name="Dismiss", exact=True).click()
    await expect(mine.locator("li", has_text="Ida")).to_have_count(0)
    await expect(page.locator("#chat")).to_be_hidden()
    await page.get_by_role("button", name="Dismiss the chat with Gus").click()
    await expect(mine.locator("li")).to_have_count(2)
    # The focus goes to the next row's Dismiss, not to the top of the page.
    await expect(page.get_by_role("button", name="Dismiss the chat with Hal")).to_be_focused()
    for c in (fay, gus, hal, ida):
        await c.close()


async def test_read_before_claiming_and_an_error_keeps_the_text(
    pages: Pages, server: AppServer
) -> None:
    page = await _console(pages, server)
    jo = await _shopper(server, "Jo", "Is the blue one in stock?")
    await _row(page, "Jo").get_by_role("button", name="Read").click()
    await expect(page.locator("#chat-title")).to_have_text(re.compile("^Jo"))
    await expect(page.locator("#chat-state")).to_have_text("Waiting in general · read only")
    await expect(page.locator("#transcript")).to_contain_text("Is the blue one in stock?")
    await expect(page.get_by_label("Reply to the shopper")).to_be_disabled()
    assert _said_by_agent(jo) == []
    await page.locator("#chat").get_by_role("button", name="Claim").click()
    await expect(page.locator("#chat-state")).to_have_text("Yours")
    await expect(page.get_by_label("Reply to the shopper")).to_be_enabled()
    await expect(page.locator("#mine")).to_contain_text("Jo")

    # A reply the server refuses (too long) is kept, with the reason, and can be edited.
    long = "x" * 2001
    await _reply(page, long)
    failed = page.locator("#transcript li.pending.failed")
    await expect(failed).to_contain_text("not sent")
    await expect(page.locator("#chat-error")).to_contain_text("not sent")
    await failed.get_by_role("button", name="Edit").click()
    await expect(page.get_by_label("Reply to the shopper")).to_have_value(long)
    assert _said_by_agent(jo) == []
    await jo.close()


async def test_canned_responses_by_slash_and_keyboard(pages: Pages, server: AppServer) -> None:
    page = await _console(pages, server)
    kim = await _shopper(server, "Kim")
    await _claim(page, "Kim")
    box = page.get_by_label("Reply to the shopper")
    await expect(box).to_be_focused()
    listbox = page.get_by_role("listbox", name="Canned responses")
    await page.keyboard.type("/")
    await expect(listbox).to_be_visible()
    await expect(listbox.get_by_role("option")).to_have_count(3)
    await page.keyboard.press("ArrowDown")
    selected = listbox.get_by_role("option", selected=True)
    await expect(selected).to_contain_text("Returns policy")
    assert await box.get_attribute("aria-activedescendant") == await selected.get_attribute("id")
    await page.keyboard.press("Escape")
    await expect(listbox).to_be_hidden()
    await expect(box).to_have_value("/")
    await page.keyboard.type("ship")
    await expect(listbox.get_by_role("option")).to_have_count(1)
    await expect(listbox.get_by_role("option", selected=True)).to_contain_text("Shipping times")
    await page.keyboard.press("Enter")  # inserts, does not send
    await expect(box).to_have_value("Parcels arrive in 2-4 business days.")
    await expect(listbox).to_be_hidden()
    assert _said_by_agent(kim) == []
    await page.keyboard.press("Enter")  # now it sends
    got = await kim.until(_from_agent)
    assert got["text"] == "Parcels arrive in 2-4 business days."
    await kim.close()


async def test_a_reply_typed_while_the_server_is_down_is_stored_once(
    pages: Pages, tmp_path: Path, redis_server: Any
) -> None:
    redis_server.flush()
    config = _config(tmp_path, redis_url=redis_server.url)
    server = await AppServer(config).start()
    try:
        _account(server, "alice")
        page = await pages.new(SIZE)
        await page.clock.install()  # the reconnect backoff runs on this clock
        await page.goto(server.http + "/agent")
        await page.get_by_label("Username").fill("alice")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await expect(page.locator("#queue")).not_to_have_attribute("aria-busy", "true")
        lea = await _shopper(server, "Lea")
        sid = lea.session
        assert sid is not None
        await _claim(page, "Lea")
        await server.stop()
        await expect(page.locator("#conn")).to_have_text("Reconnecting…")
        await _reply(page, "Sorry for the wait, Lea")
        await expect(page.locator("#transcript li.pending")).to_contain_text("sending…")
        await expect(page.locator("#conn")).to_contain_text("1 reply waiting to be sent")
        await expect(page.get_by_label("Reply to the shopper")).to_have_value("")
        # A new server where the old one was, on the same Redis: the login and chat are there.
        server = await AppServer(config, port=server.port).start()
        await page.clock.fast_forward(11_000)  # past the longest backoff
        await expect(page.locator("#conn")).to_have_text("")
        await expect(page.locator("#transcript li.pending")).to_have_count(0)
        transcript = page.locator("#transcript")
        await expect(transcript.get_by_text("Sorry for the wait, Lea", exact=True)).to_have_count(1)
        await expect(page.locator("#chat-state")).to_have_text("Yours")
        stored = [e for e in await _stored(server, sid) if e.get("from") == "agent"]
        assert [e["text"] for e in stored] == ["Sorry for the wait, Lea"]
    finally:
        await server.stop()


async def test_a_hand_back_the_store_refused_leaves_the_chat_yours_and_says_so(
    pages: Pages, server: AppServer
) -> None:
    """An action the server could not store (store_unavailable): "My chats" says the chat is
    yours again at once (it said "working…" until the shopper next wrote), and the reason is
    in the console's words, not the server's."""
    page, _ = await _console_refusing(pages, server, "handback", times=10**6)
    kim = await _shopper(server, "Kim")
    await _claim(page, "Kim")
    await page.get_by_role("button", name="Hand back to bot").click()
    await expect(page.locator("#chat-error")).to_contain_text("cannot reach its store")
    await expect(page.locator("#mine")).to_contain_text("yours")
    await expect(page.locator("#mine")).not_to_contain_text("working")
    await expect(page.get_by_role("button", name="Hand back to bot")).to_be_enabled()
    await kim.close()


async def test_a_reply_the_store_refused_goes_again_by_itself_and_is_stored_once(
    pages: Pages, server: AppServer
) -> None:
    """While the store is away a reply is refused (store_unavailable): the console shows it as
    "sending again…" and sends it again itself, same id, until it is stored; the agent does
    nothing, the shopper gets it once."""
    page, tries = await _console_refusing(pages, server, "reply", times=2)
    lee = await _shopper(server, "Lee")
    await _claim(page, "Lee")
    await _reply(page, "Back in a moment, Lee")
    await expect(page.locator("#transcript li.pending")).to_contain_text("sending again")
    await lee.until(_from_agent, timeout=10)
    await expect(page.locator("#transcript li.pending")).to_have_count(0)
    assert len(tries) == 3 and len(set(tries)) == 1, tries
    assert _said_by_agent(lee) == ["Back in a moment, Lee"]
    await lee.close()


async def test_a_reply_whose_ack_was_lost_is_resent_and_stored_once(
    pages: Pages, server: AppServer
) -> None:
    page = await pages.new(SIZE)
    cut: dict[str, Any] = {"done": False, "reply": None}
    closing: list[asyncio.Task[None]] = []

    def route(ws: WebSocketRoute) -> None:
        upstream = ws.connect_to_server()

        def up(message: str | bytes) -> None:
            if isinstance(message, str) and '"type":"reply"' in message.replace(" ", ""):
                cut["reply"] = cut["reply"] or json.loads(message)["id"]
            upstream.send(message)

        def down(message: str | bytes) -> None:
            frame = json.loads(message) if isinstance(message, str) else {}
            if not cut["done"] and frame.get("type") == "ack" and frame["id"] == cut["reply"]:
                cut["done"] = True  # stored, but the console never hears so: cut the line
                closing.append(asyncio.create_task(ws.close()))
                return
            ws.send(message)

        ws.on_message(up)
        upstream.on_message(down)

    await page.route_web_socket(re.compile(r".*/agent/ws$"), route)
    await _log_in(page, server)
    max_ = await _shopper(server, "Max")
    await _claim(page, "Max")
    await _reply(page, "Once only, Max")
    await max_.until(_from_agent)
    await expect(page.locator("#transcript li.pending")).to_have_count(0)
    await expect(page.locator("#conn")).to_have_text("")
    assert cut["done"]
    transcript = page.locator("#transcript")
    await expect(transcript.get_by_text("Once only, Max", exact=True)).to_have_count(1)
    await page.wait_for_timeout(1500)  # the resent id has had its (duplicate) ack
    assert max_.session is not None
    stored = [e for e in await _stored(server, max_.session) if e.get("from") == "agent"]
    assert [e["text"] for e in stored] == ["Once only, Max"]
    await max_.close()


async def test_a_refused_login_goes_back_to_the_form_without_reloading(
    pages: Pages, server: AppServer
) -> None:
    page = await _console(pages, server)
    loads: list[str] = []
    page.on("load", lambda p: loads.append(p.url))
    token = await page.evaluate("sessionStorage.getItem('fe-console-token')")
    agent = await Agent.connect(server, token)
    await agent.logout(server)  # e.g. "Log out" in another tab: this console's login is over
    await expect(page.get_by_role("button", name="Log in")).to_be_visible()
    await expect(page.locator("#login-error")).to_contain_text("no longer valid")
    await page.wait_for_timeout(1500)
    assert loads == []
    assert await page.evaluate("sessionStorage.getItem('fe-console-token')") is None
    # A stale token at page load: the form, once.
    await page.evaluate("sessionStorage.setItem('fe-console-token', 'x'.repeat(40))")
    await page.reload()
    await expect(page.locator("#login-error")).to_contain_text("no longer valid")
    await page.wait_for_timeout(1000)
    assert len(loads) == 1, loads


async def test_a_logout_the_server_could_not_make_does_not_pretend(
    pages: Pages, server: AppServer
) -> None:
    """With the store away, logout is a 503: the token is still good everywhere, so the
    console stays, says so, and logs out on the next try that works."""
    page = await _console(pages, server)
    refuse = {"on": True}

    async def logout(route: Any) -> None:
        if refuse["on"]:
            await route.fulfill(status=503, json={"error": "briefly unavailable"})
        else:
            await route.continue_()

    await page.route("**/agent/api/logout", logout)
    await page.get_by_role("button", name="Log out").click()
    await expect(page.locator("#conn")).to_contain_text("Not logged out")
    await expect(page.get_by_role("button", name="Log in")).to_be_hidden()
    assert await page.evaluate("sessionStorage.getItem('fe-console-token')") is not None
    refuse["on"] = False
    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("button", name="Log in")).to_be_visible()


async def test_an_admin_sees_other_agents_chats_and_takes_one_over(
    pages: Pages, server: AppServer
) -> None:
    _account(server, "boss", role="admin")
    alice = await _console(pages, server)
    boss = await _console(pages, server, "boss")
    await expect(boss.locator("#others-section")).to_be_visible()
    await expect(alice.locator("#others-section")).to_be_hidden()
    ned = await _shopper(server, "Ned", "Hello?")
    await _claim(alice, "Ned")
    row = boss.locator("#others li", has_text="Ned")
    await expect(row).to_contain_text("with Alice")
    await row.get_by_role("button", name="Read").click()
    await expect(boss.locator("#chat-state")).to_have_text("With Alice · read only")
    await expect(boss.get_by_label("Reply to the shopper")).to_be_disabled()
    await boss.locator("#chat").get_by_role("button", name="Take over").click()
    await expect(boss.locator("#chat-state")).to_have_text("Yours")
    await expect(alice.locator("#chat-state")).to_have_text("Taken over by Boss")
    await expect(alice.get_by_label("Reply to the shopper")).to_be_disabled()
    await _reply(boss, "Boss here")
    got = await ned.until(_from_agent)
    assert got["agent"] == "Boss"
    await ned.close()


async def test_the_inbox_lists_a_left_message_and_marks_it_done(
    pages: Pages, server: AppServer
) -> None:
    # Nobody online: the shopper leaves a message, which becomes a ticket in the inbox.
    ola = await Client.connect(server.ws_url, context={"shopper": {"name": "Ola"}})
    await ola.until(lambda f: f.get("seq") == 1)
    await ola.act({"type": "handoff"})
    await ola.until(lambda f: f.get("type") == "message" and (f.get("input") or {}).get("kind"))
    await ola.act({"type": "text", "text": "ola@example.com"})
    await ola.act({"type": "text", "text": "Please call me back about <b>1003</b>"})
    await ola.until(lambda f: "ticket" in str(f.get("text", "")).lower())
    page = await _console(pages, server)
    row = page.locator("#inbox li", has_text="ola@example.com")
    await expect(row).to_contain_text("Please call me back about <b>1003</b>")  # as text
    await expect(page.locator("#inbox-count")).to_have_text("1")
    await row.get_by_role("button", name="Open").click()
    view = page.locator("#ticket-view")
    await expect(view).to_be_visible()
    await expect(page.locator("#ticket-state")).to_have_text("Open · nobody's yet")
    await expect(view.locator("#ticket-transcript")).to_contain_text("Which email")
    await expect(page.locator("#chat")).to_be_hidden()  # no reply box while a ticket is shown
    await view.get_by_role("button", name="Assign to me").click()
    await expect(page.locator("#ticket-state")).to_have_text("Open · for alice")
    await view.get_by_role("button", name="Mark done").click()
    await expect(page.locator("#ticket-state")).to_have_text("Done · for alice")
    await expect(page.locator("#inbox li")).to_have_count(0)  # the list shows open tickets
    await page.locator("#inbox-status").select_option("done")
    await expect(row).to_have_count(1)
    await ola.close()


async def test_a_shoppers_name_in_bot_text_is_never_markup(pages: Pages, server: AppServer) -> None:
    """Values a flow puts into its text arrive escaped (`\\[`, `\\*`): the console shows them
    as typed, while the flow's own bold and links still work."""
    page = await _console(pages, server)
    hostile = "[Refund form](https://evil.example/refund) **VIP**"
    c = await _shopper(server, hostile)
    greeting = next(e for e in c.events if e["type"] == "message")
    assert greeting["text"].startswith("Hi \\[Refund form\\](https://evil.example/refund)")
    await _row(page, "Refund form").get_by_role("button", name="Claim").click()
    await expect(page.locator("#page-context")).to_contain_text("cart_total89")
    first = page.locator("#transcript li").first
    await expect(first).to_contain_text(f"Hi {hostile}! How can I help you today?")
    assert await page.locator("#transcript a[href*='evil']").count() == 0
    assert await first.locator("strong").count() == 0
    await c.close()
