"""Live handoff you can trust (issue 9), at the protocol level, on two real app instances sharing a
real redis-server: the place in line kept up to date, agent actions applied once per id, a logout
or a removed account ending sockets on every instance, routing that finds whoever is online
(fallback teams, admins, the flow the shopper chose), opening hours from the schedule, chats of an
agent who left requeued, admins taking over, a transfer to nobody refused, an expired session
named, and the inbox of tickets. The instances read one standing clock the test moves."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import websockets

from flowengine.handoff.accounts import Account
from flowengine.handoff.passwords import hash_password
from flowengine.server.config import ServerConfig
from tests.app_server import AppServer, Clock, running
from tests.server_process import Agent, Client, eventually

PASSWORD = "correct-horse-battery"

CONFIG = """
teams: [general, orders, returns, sales]
routing:
  - {flow: track_order, team: orders}
  - {flow: return_order, team: returns}
  - {flow: discounts, team: sales}
fallback:
  returns: [orders, general]
  sales: [general]
presence_grace: 120
queue_timeout: 3600
%(schedule)s
"""

# A Monday, 10:00 in Prague: inside the hours below.
MONDAY_10 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC).timestamp()
SUNDAY = datetime(2026, 11, 22, 12, 0, tzinfo=UTC).timestamp()
HOURS = """
schedule:
  timezone: Europe/Prague
  hours: {mon: "08:00-18:00", tue: "08:00-18:00", wed: "08:00-18:00", thu: "08:00-18:00",
          fri: "08:00-18:00", sat: ["09:00-12:00", "13:00-15:00"]}
"""


@functools.cache
def _hash() -> str:
    return hash_password(PASSWORD)


def _account(server: AppServer, username: str, teams: str, role: str = "agent") -> None:
    server.runtime.handoffs.accounts.put(
        Account(username, username.capitalize(), role, tuple(teams.split(",")), _hash())
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(MONDAY_10)


async def _boxes(
    tmp_path: Path, redis_server: Any, clock: Clock, schedule: str = ""
) -> tuple[AppServer, AppServer]:
    redis_server.flush()
    cfg = tmp_path / "handoff.yaml"
    cfg.write_text(CONFIG % {"schedule": schedule})
    config = ServerConfig(redis_url=redis_server.url, handoff_config=str(cfg))
    return AppServer(config, clock), AppServer(config, clock)


@pytest.fixture
async def boxes(
    tmp_path: Path, redis_server: Any, clock: Clock
) -> AsyncIterator[tuple[AppServer, AppServer]]:
    a, b = await _boxes(tmp_path, redis_server, clock)
    async with running(a, b):
        _account(a, "alice", "orders,general")
        _account(a, "bob", "returns")
        _account(a, "sam", "general", role="admin")
        yield a, b


async def _start(box: AppServer, locale: str = "en", **context: Any) -> Client:
    shopper = await Client.connect(box.ws_url, locale=locale, context=context)
    await shopper.until(lambda f: f.get("seq") == 1)
    return shopper


async def _ask_for_person(shopper: Client) -> dict[str, Any]:
    """From the main menu, straight to a person (the `person` option)."""
    await shopper.act({"type": "choose", "option": "person"})
    return await shopper.until(lambda f: f.get("type") == "handoff")


async def _track_then_person(shopper: Client) -> dict[str, Any]:
    """Track an order and ask for a person while the linked flow (identify_order) asks for
    the order number: routing must go by track_order."""
    await shopper.act({"type": "choose", "option": "track"})
    await shopper.act({"type": "handoff"})
    return await shopper.until(lambda f: f.get("type") == "handoff")


async def _online(agent: Agent) -> None:
    await agent.until(lambda f: f["type"] == "queue")


async def _claimed(agent: Agent, shopper: Client) -> None:
    await agent.until(
        lambda f: (
            f["type"] == "queue" and any(w["session"] == shopper.session for w in f["waiting"])
        )
    )
    assert (await agent.act({"type": "claim", "session": shopper.session}))["type"] == "ack"
    await shopper.until(lambda f: f.get("type") == "handoff" and f["status"] == "assigned")


async def _held(agents_box: AppServer, shoppers_box: AppServer) -> tuple[Agent, Client]:
    """alice (orders, general), online on one box, holding the chat of a shopper on the other
    who asked for a person while tracking an order."""
    alice = await Agent.login(agents_box, "alice", PASSWORD)
    await _online(alice)
    shopper = await _start(shoppers_box)
    await _track_then_person(shopper)
    await _claimed(alice, shopper)
    return alice, shopper


async def _transcript(box: AppServer, sid: str | None) -> list[dict[str, Any]]:
    assert sid is not None
    return await box.runtime.store.replay(sid, 0, 1000)


# -- the place in line ---------------------------------------------------------------------


async def test_the_place_in_line_is_kept_up_to_date(boxes: Any, clock: Clock) -> None:
    a, b = boxes
    alice = await Agent.login(b, "alice", PASSWORD)
    await _online(alice)
    shoppers = [await _start(a if i % 2 else b) for i in range(3)]
    places = []
    for s in shoppers:
        places.append((await _track_then_person(s))["position"])
        clock.advance(1)  # one after the other (the line is by waiting time)
    assert places == [1, 2, 3]
    await _claimed(alice, shoppers[0])
    # Both behind move up, on whichever box they are: an un-numbered `position` frame.
    second = await shoppers[1].until(lambda f: f["type"] == "position")
    third = await shoppers[2].until(lambda f: f["type"] == "position")
    assert (second["position"], third["position"]) == (1, 2) and second["queue"] == "orders"
    assert "seq" not in second
    # The second starts over: the third is first now.
    await shoppers[1].act({"type": "restart"})
    third = await shoppers[2].until(lambda f: f["type"] == "position")
    assert third["position"] == 1
    # The third reloads the page (on the other box): told where they stand, after the replay.
    await shoppers[2].close()
    again = await Client.connect(b.ws_url, session=shoppers[2].session, last_seq=0)
    place = await again.until(lambda f: f["type"] == "position")
    assert place == {"type": "position", "queue": "orders", "position": 1}
    assert again.frames.index(place) > max(
        i for i, f in enumerate(again.frames) if f.get("type") == "handoff"
    )
    shoppers.append(again)
    for c in (*shoppers, alice):
        await c.close()


# -- agent actions once per id ----------------------------------------------------------------


async def test_a_resent_reply_is_stored_once_even_across_a_cut_socket(boxes: Any) -> None:
    a, b = boxes
    alice, shopper = await _held(a, b)

    frame = {"type": "reply", "id": "r-1", "session": shopper.session, "text": "On it!"}
    await alice.send(frame)
    await alice.ws.close()  # cut before the ack could be read
    again = await Agent.connect(b, alice.token)  # the console reconnects, on the other box
    await again.send(frame)  # and resends what it has no answer for, with the same id
    ack = await again.until(lambda f: f.get("id") == "r-1")
    assert ack == {"type": "ack", "id": "r-1", "duplicate": True}
    await again.send(frame)
    assert (await again.until(lambda f: f.get("id") == "r-1"))["duplicate"] is True
    stored = [e for e in await _transcript(a, shopper.session) if e.get("from") == "agent"]
    assert [e["text"] for e in stored] == ["On it!"]

    # A failed action may be resent and is then applied: a note on a chat not (yet) held.
    other = await _start(a)
    note = {"type": "note", "id": "n-1", "session": other.session, "text": "check this"}
    await again.send(note)
    assert (await again.until(lambda f: f.get("id") == "n-1"))["code"] == "not_yours"
    await _track_then_person(other)
    await _claimed(again, other)
    await again.send(note)
    ack = await again.until(lambda f: f.get("id") == "n-1")
    assert ack == {"type": "ack", "id": "n-1"}
    # A resent claim sends the chat again (the lost answer may have been the chat itself).
    third = await _start(b)
    await _track_then_person(third)
    claim = {"type": "claim", "id": "c-1", "session": third.session}
    await again.send(claim)
    assert (await again.until(lambda f: f.get("id") == "c-1")) == {"type": "ack", "id": "c-1"}
    await again.send(claim)
    chat = await again.until(lambda f: f["type"] == "chat" and f["session"] == third.session)
    assert chat["handoff"]["agent"] == "alice"
    assert (await again.until(lambda f: f.get("id") == "c-1"))["duplicate"] is True
    for c in (shopper, other, third, again):
        await c.close()


# -- a login that ended ends its sockets -------------------------------------------------------


async def _closed_for(agent: Agent, within: float) -> dict[str, Any]:
    """The unauthorized frame the server sends before closing the socket, within `within` s."""
    frame = await agent.until(lambda f: f.get("code") == "unauthorized", timeout=within)
    with pytest.raises(websockets.ConnectionClosed):
        await agent.recv(timeout=within)
    return frame


async def test_logout_closes_the_logins_sockets_on_every_box_at_once(boxes: Any) -> None:
    a, b = boxes
    on_a = await Agent.login(a, "alice", PASSWORD)
    on_b = await Agent.connect(b, on_a.token)  # a second tab, on another instance
    other_login = await Agent.login(b, "alice", PASSWORD)  # her other device: stays
    await on_a.logout(b)
    for console in (on_a, on_b):
        await _closed_for(console, within=1.0)
    assert (await other_login.act({"type": "ping"}))["type"] == "ack"
    # The token is dead: a new socket with it is refused.
    ws = await websockets.connect(f"ws://127.0.0.1:{a.port}/agent/ws")
    await ws.send(json.dumps({"type": "auth", "token": on_a.token}))
    assert json.loads(await ws.recv())["code"] == "unauthorized"
    await ws.close()
    await other_login.close()


async def test_a_removed_account_loses_its_open_sockets(boxes: Any) -> None:
    a, b = boxes
    bob = await Agent.login(a, "bob", PASSWORD)
    on_b = await Agent.connect(b, bob.token)
    a.runtime.handoffs.accounts.remove("bob")  # `flowengine agents remove bob`
    for console in (bob, on_b):
        await _closed_for(console, within=2.5)


# -- routing finds whoever is online ------------------------------------------------------------


async def test_routing_goes_by_the_chosen_flow_and_falls_back_to_whoever_is_online(
    boxes: Any,
) -> None:
    a, b = boxes
    alice = await Agent.login(a, "alice", PASSWORD)  # orders, general: nobody in returns/sales
    await _online(alice)
    tracking = await _start(b)
    queued = await _track_then_person(tracking)
    assert queued["status"] == "queued" and queued["queue"] == "orders"
    record = await a.runtime.store.get_handoff(tracking.session or "")
    assert record is not None and record["flow"] == "track_order"
    assert record["step"] == "identify_order.ask_number"

    returning = await _start(b)
    await returning.act({"type": "choose", "option": "return"})
    await returning.act({"type": "handoff"})
    queued = await returning.until(lambda f: f.get("type") == "handoff")
    assert queued["status"] == "queued" and queued["queue"] == "orders"  # returns -> orders
    waiting = await alice.until(
        lambda f: (
            f["type"] == "queue" and any(w["session"] == returning.session for w in f["waiting"])
        )
    )
    item = next(w for w in waiting["waiting"] if w["session"] == returning.session)
    assert item["routed_to"] == "returns" and item["team"] == "orders"
    await alice.close()

    # Only an admin online: the admin counts for every team.
    sam = await Agent.login(a, "sam", PASSWORD)
    await _online(sam)
    clock: Clock = a.runtime.clock  # type: ignore[assignment]
    clock.advance(60)  # alice's presence runs out (30 s)
    await sam.until(lambda f: f["type"] == "queue")
    await sam.until(lambda f: f["type"] == "queue")
    discount = await _start(a)
    await discount.act({"type": "choose", "option": "discounts"})
    await discount.act({"type": "handoff"})
    queued = await discount.until(lambda f: f.get("type") == "handoff")
    assert queued["status"] == "queued" and queued["queue"] == "sales"
    for c in (tracking, returning, discount, sam):
        await c.close()


async def test_nobody_online_offers_a_message_and_names_no_hours_when_none_are_set(
    boxes: Any,
) -> None:
    a, _ = boxes
    shopper = await _start(a)
    offline = await _ask_for_person(shopper)
    assert offline["status"] == "offline" and offline["reason"] == "no_agent"
    sorry = await shopper.until(lambda f: f.get("type") == "message" and f["from"] == "bot")
    assert sorry["text"].startswith("Nobody from our team can chat right now.")
    assert "online" not in sorry["text"] and "CET" not in sorry["text"]
    await shopper.close()


@pytest.mark.parametrize(
    ("locale", "said"),
    [
        ("en", "We're online Mon–Fri 8:00–18:00, Sat 9:00–12:00 and 13:00–15:00 (CET)."),
        ("cs", "Jsme online po–pá 8:00–18:00, so 9:00–12:00 a 13:00–15:00 (CET)."),
        ("th", "(เวลาทำการ จ.–ศ. 8:00–18:00, ส. 9:00–12:00 และ 13:00–15:00 (CET))"),
    ],
)
async def test_out_of_hours_the_shopper_reads_the_real_schedule(
    tmp_path: Path, redis_server: Any, locale: str, said: str
) -> None:
    a, _ = await _boxes(tmp_path, redis_server, Clock(SUNDAY), HOURS)
    async with running(a):
        shopper = await _start(a, locale=locale)
        offline = await _ask_for_person(shopper)
        assert offline["status"] == "offline" and offline["reason"] == "closed"
        sorry = await shopper.until(lambda f: f.get("type") == "message" and f["from"] == "bot")
        assert said in sorry["text"]
        await shopper.close()


# -- agents who leave, admins, transfers, expired sessions --------------------------------------


async def test_the_chats_of_an_agent_who_left_go_back_to_the_front_of_the_queue(
    boxes: Any, clock: Clock
) -> None:
    a, b = boxes
    alice, shopper = await _held(a, b)
    await alice.close()  # her laptop closes

    async def gone() -> bool:  # her box has seen it (the grace counts from then)
        online = await a.runtime.store.online(clock())
        return online.get("alice", {}).get("status") == "gone"

    await eventually(gone)
    clock.advance(60)  # within the grace: still hers
    await asyncio.sleep(1.5)
    record = await a.runtime.store.get_handoff(shopper.session or "")
    assert record is not None and record["status"] == "assigned"
    clock.advance(61)
    requeued = await shopper.until(
        lambda f: f.get("type") == "handoff" and f["status"] == "queued", timeout=5
    )
    assert requeued["position"] == 1
    record = await a.runtime.store.get_handoff(shopper.session or "")
    assert record is not None and record["requeued_from"] == "Alice"
    bob_sees = await Agent.login(b, "sam", PASSWORD)  # an admin picks it up
    await _claimed(bob_sees, shopper)
    await bob_sees.close()
    await shopper.close()


async def test_admins_take_over_and_reassign_agents_do_not(boxes: Any) -> None:
    a, b = boxes
    alice, shopper = await _held(a, b)
    bob = await Agent.login(b, "bob", PASSWORD)
    refused = await bob.act({"type": "takeover", "session": shopper.session})
    assert refused["code"] == "not_allowed"
    sam = await Agent.login(b, "sam", PASSWORD)
    held = await sam.until(lambda f: f["type"] == "queue" and f.get("others"))
    assert held["others"][0]["session"] == shopper.session and held["others"][0]["agent"] == "alice"
    assert (await sam.act({"type": "takeover", "session": shopper.session}))["type"] == "ack"
    chat = await sam.until(lambda f: f["type"] == "chat")
    assert chat["handoff"]["agent"] == "sam"
    joined = await shopper.until(lambda f: f.get("type") == "handoff" and f.get("agent") == "Sam")
    assert joined["status"] == "assigned"
    assert (await alice.act({"type": "reply", "session": shopper.session, "text": "x"}))[
        "code"
    ] == "not_yours"
    gave = await sam.act({"type": "reassign", "session": shopper.session, "agent": "alice"})
    assert gave["type"] == "ack"
    assert (await alice.act({"type": "reply", "session": shopper.session, "text": "back"}))[
        "type"
    ] == "ack"
    nobody = await sam.act({"type": "reassign", "session": shopper.session, "agent": "zed"})
    assert nobody["code"] == "bad_agent"
    # Only to someone who serves the chat's team and is online now.
    wrong_team = await sam.act({"type": "reassign", "session": shopper.session, "agent": "bob"})
    assert wrong_team["code"] == "not_allowed"
    _account(a, "dan", "orders")  # never logged in
    away = await sam.act({"type": "reassign", "session": shopper.session, "agent": "dan"})
    assert away["code"] == "nobody_online"
    for c in (alice, bob, sam, shopper):
        await c.close()


async def test_an_agent_who_closes_the_console_stops_counting_at_once(boxes: Any) -> None:
    a, b = boxes
    alice = await Agent.login(a, "alice", PASSWORD)
    await _online(alice)
    await alice.close()
    await asyncio.sleep(0.3)  # the server notices the close
    shopper = await _start(b)
    offline = await _ask_for_person(shopper)  # not queued for someone who left
    assert offline["status"] == "offline" and offline["reason"] == "no_agent"
    await shopper.close()


async def test_odd_frames_on_the_agent_socket_get_errors_not_tracebacks(boxes: Any) -> None:
    a, _ = boxes
    alice = await Agent.login(a, "alice", PASSWORD)
    await alice.send(b"\x01")
    assert (await alice.until(lambda f: f["type"] == "error"))["code"] == "bad_frame"
    # typing in a chat that is not (or no longer) there: dropped, no answer
    await alice.send({"type": "typing", "session": "no-such-session-at-all"})
    assert (await alice.act({"type": "ping"}))["type"] == "ack"
    assert not [f for f in alice.frames if f["type"] == "error" and f.get("code") != "bad_frame"]
    await alice.close()


async def test_a_transfer_to_a_team_nobody_serves_is_refused_and_the_chat_stays(
    boxes: Any,
) -> None:
    a, b = boxes
    alice, shopper = await _held(a, b)
    refused = await alice.act({"type": "transfer", "session": shopper.session, "team": "sales"})
    assert refused["code"] == "nobody_online" and "sales" in refused["message"]
    assert (await alice.act({"type": "reply", "session": shopper.session, "text": "still me"}))[
        "type"
    ] == "ack"
    bob = await Agent.login(b, "bob", PASSWORD)
    await _online(bob)
    moved = await alice.act({"type": "transfer", "session": shopper.session, "team": "returns"})
    assert moved["type"] == "ack"
    for c in (alice, bob, shopper):
        await c.close()


async def test_an_expired_session_is_named_as_such(boxes: Any) -> None:
    a, b = boxes
    alice, shopper = await _held(a, b)
    sid = shopper.session or ""
    await shopper.close()
    redis = a.runtime.store._redis  # type: ignore[attr-defined]
    await redis.delete(*[k async for k in redis.scan_iter(f"*{sid}*")])  # its TTL ran out
    for frame in (
        {"type": "reply", "session": sid, "text": "hello?"},
        {"type": "open", "session": sid},
        {"type": "close", "session": sid},
    ):
        assert (await alice.act(frame))["code"] == "session_gone"
    await alice.close()


# -- what the queue and the packet show -----------------------------------------------------------


async def test_the_queue_shows_who_waits_and_what_they_said_and_the_packet_the_context(
    boxes: Any,
) -> None:
    a, b = boxes
    alice = await Agent.login(a, "alice", PASSWORD)
    await _online(alice)
    shopper = await _start(
        b, shopper={"name": "Chloe"}, context={"cart_total": 89, "coupon": "WINTER"}
    )
    await _track_then_person(shopper)
    await shopper.act({"type": "text", "text": "My parcel says delivered but it is not here"})
    waiting = await alice.until(
        lambda f: (
            f["type"] == "queue"
            and any(w.get("preview", "") and "parcel" in w["preview"] for w in f["waiting"])
        )
    )
    item = waiting["waiting"][0]
    assert item["shopper"] == {"name": "Chloe"}
    assert item["preview"] == "My parcel says delivered but it is not here"
    await alice.act({"type": "claim", "session": shopper.session})
    chat = await alice.until(lambda f: f["type"] == "chat")
    assert chat["packet"]["context"] == {"cart_total": 89, "coupon": "WINTER"}
    await alice.close()
    await shopper.close()


# -- the inbox ----------------------------------------------------------------------------------


async def _leave_a_message(
    box: AppServer, email: str, text: str, order: str | None = None
) -> Client:
    """Nobody online: the shopper leaves a message (after looking up `order`, if given)."""
    shopper = await _start(box)
    if order is None:
        await _ask_for_person(shopper)
    else:
        await shopper.act({"type": "choose", "option": "track"})
        await shopper.act({"type": "text", "text": order})
        await shopper.act({"type": "text", "text": email})
        await shopper.until(lambda f: f.get("type") == "message" and f.get("options"))
        await shopper.act({"type": "choose", "option": "person"})
        await shopper.until(lambda f: f.get("type") == "handoff")
    await shopper.until(lambda f: f.get("type") == "message" and f.get("input"))
    await shopper.act({"type": "text", "text": email})
    await shopper.until(lambda f: f.get("type") == "message" and f.get("input"))
    await shopper.act({"type": "text", "text": text})
    await shopper.until(lambda f: f.get("type") == "message" and "T-" in f.get("text", ""))
    return shopper


async def test_left_messages_land_in_an_inbox_that_outlives_the_instances(
    tmp_path: Path, redis_server: Any, clock: Clock
) -> None:
    a, b = await _boxes(tmp_path, redis_server, clock)
    async with running(a, b):
        _account(a, "alice", "orders,general")
        _account(a, "bob", "returns")
        first = await _leave_a_message(a, "erik@example.com", "Where is my refund?")
        clock.advance(60)
        second = await _leave_a_message(
            b, "chloe.pop@example.com", "Can I change my address?", order="1003"
        )
        alice = await Agent.login(a, "alice", PASSWORD)
        listed = await alice.act({"type": "tickets"})
        assert listed["type"] == "ack"
        inbox = next(f for f in alice.frames if f["type"] == "tickets")
        assert [t["email"] for t in inbox["items"]] == ["chloe.pop@example.com", "erik@example.com"]
        assert all(t["status"] == "open" and "packet" not in t for t in inbox["items"])
        key = inbox["items"][1]["key"]
        await alice.act({"type": "ticket", "ticket": key})
        one = next(f for f in alice.frames if f["type"] == "ticket")["ticket"]
        assert one["details"] == "Where is my refund?" and one["session"] == first.session
        assert any(e.get("text") == "Where is my refund?" for e in one["packet"]["transcript"])
        done = await alice.act({"type": "ticket_update", "ticket": key, "status": "done"})
        assert done["type"] == "ack"
        await alice.act({"type": "tickets", "query": "chloe.pop"})
        found = [f for f in alice.frames if f["type"] == "tickets"][-1]["items"]
        assert [t["email"] for t in found] == ["chloe.pop@example.com"]
        # by the order the flow looked up before the shopper asked for a person
        await alice.act({"type": "tickets", "status": "all", "query": "#1003"})
        found = [f for f in alice.frames if f["type"] == "tickets"][-1]["items"]
        assert [t["number"] for t in found] == ["1003"]
        # a ticket goes only to someone who may open it; the answer names the action
        refused = await alice.act({"type": "ticket_update", "ticket": key, "assignee": "bob"})
        assert refused["code"] == "not_allowed"
        mine = await alice.act({"type": "ticket_update", "ticket": key, "assignee": "alice"})
        answer = [f for f in alice.frames if f["type"] == "ticket"][-1]
        assert answer["id"] == mine["id"] and answer["ticket"]["assignee"] == "alice"
        # bob (returns) sees none of the general team's tickets.
        bob = await Agent.login(b, "bob", PASSWORD)
        await bob.act({"type": "tickets", "status": "all"})
        assert next(f for f in bob.frames if f["type"] == "tickets")["items"] == []
        assert (await bob.act({"type": "ticket", "ticket": key}))["code"] == "not_allowed"
        for c in (first, second, alice, bob):
            await c.close()

    # Both instances restart: the inbox is in Redis.
    c = AppServer(a.runtime.config, clock)
    async with running(c):
        alice = await Agent.login(c, "alice", PASSWORD)
        await alice.act({"type": "tickets", "status": "all"})
        items = next(f for f in alice.frames if f["type"] == "tickets")["items"]
        assert {t["status"] for t in items} == {"open", "done"} and len(items) == 2
        missing = await alice.act({"type": "ticket", "ticket": "T-9999.nothing"})
        assert missing["code"] == "no_ticket"
        await alice.close()


async def test_the_embedded_store_keeps_an_inbox_too(tmp_path: Path, clock: Clock) -> None:
    cfg = tmp_path / "handoff.yaml"
    cfg.write_text(CONFIG % {"schedule": ""})
    box = AppServer(ServerConfig(handoff_config=str(cfg)), clock)
    async with running(box):
        _account(box, "alice", "general")
        shopper = await _leave_a_message(box, "anna@example.com", "Hello?")
        alice = await Agent.login(box, "alice", PASSWORD)
        await alice.act({"type": "tickets"})
        items = next(f for f in alice.frames if f["type"] == "tickets")["items"]
        assert [t["email"] for t in items] == ["anna@example.com"]
        for c in (shopper, alice):
            await c.close()
