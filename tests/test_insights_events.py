"""The analytics events Insights counts (docs/events.md): scripted conversations through the pure
engine, asserting the exact events and their fields."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from flowengine.engine import model as m
from flowengine.engine.step import start, step
from flowengine.language import ir, load_project

FLOW = """\
flow: shop
steps:
  - id: menu
    menu: Hi
    options:
      - {id: help, label: Help me, goto: answer}
      - {id: order, label: My order, goto: number}
      - {id: person, label: A person, handoff: {reason: wants a person}}
      - {id: child, label: Child, goto: child}
  - id: answer
    say: Here is the answer.
  - id: done
    end: resolved
  - id: number
    ask: order_number
    prompt: Your order number?
    validate: order_number
    max_tries: 2
    on_fail: handoff
  - id: lookup
    call: orders.lookup
    with: {number: "{{ order_number }}", email: "a@example.com"}
    save_as: order
    on_not_found: nope
    on_error: broken
  - id: found
    say: Found it.
    next: end
  - id: nope
    say: No such order.
    next: handoff
  - id: broken
    handoff: {queue: general, reason: backend down}
    next: menu
  - id: child
    link: other
  - id: after
    say: Back in shop.
    next: end
"""

OTHER = """\
flow: other
steps:
  - id: one
    say: In the other flow.
  - id: two
    say: Still there.
    next: end
"""


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> ir.Project:
    root = tmp_path_factory.mktemp("shop")
    (root / "flowengine.yaml").write_text("start: shop\nlocales: [en, cs]\n")
    (root / "shop.yaml").write_text(FLOW)
    (root / "other.yaml").write_text(OTHER)
    result = load_project([root])
    assert result.ok, result.render()
    assert result.project is not None
    return result.project


def _types(r: m.Result) -> list[str]:
    return [e["type"] for e in r.events]


def _one(r: m.Result, kind: str) -> dict[str, Any]:
    (found,) = [e for e in r.events if e["type"] == kind]
    return found


def test_a_new_session_starts_a_conversation_with_version_and_locale(shop: ir.Project) -> None:
    r = start(shop, now=100, locale="cs")
    assert r.events == (
        {
            "type": "session_started",
            "at": 100,
            "flow": "shop",
            "version": shop.version,
            "locale": "cs",
        },
        {
            "type": "conversation_started",
            "at": 100,
            "flow": "shop",
            "version": shop.version,
            "locale": "cs",
        },
        {
            "type": "flow_started",
            "at": 100,
            "flow": "shop",
            "version": shop.version,
            "locale": "cs",
        },
        {
            "type": "step_entered",
            "at": 100,
            "flow": "shop",
            "step": "menu",
            "from": None,
            "version": shop.version,
            "locale": "cs",
        },
    )


@pytest.mark.parametrize(
    ("page", "counted"), [("cs-CZ", "cs"), ("CS", "cs"), ("en-US", "en"), ("de-AT", "en")]
)
def test_events_count_the_locale_the_shopper_reads_not_the_pages_tag(
    shop: ir.Project, page: str, counted: str
) -> None:
    """Figures per locale are never split between `cs` and `cs-cz`; a page in a language the
    flows are not written in counts as the default one (what the shopper reads)."""
    r = start(shop, now=0, locale=page)
    assert {e["locale"] for e in r.events} == {counted}
    r = step(shop, r.state, m.Choose("help"), 1)
    assert {e["locale"] for e in r.events} == {counted}


def test_every_event_carries_the_sessions_version_not_the_projects(shop: ir.Project) -> None:
    """A session pinned to an older version reports that version while it runs."""
    s = start(shop, now=0).state
    old = m.State.from_json({**s.to_json(), "version": "v-old"})
    r = step(shop, old, m.Choose("help"), 1)
    assert r.events and all(e["version"] == "v-old" and e["locale"] == "en" for e in r.events)


def test_resolved_without_a_person(shop: ir.Project) -> None:
    s = start(shop, now=0).state
    r = step(shop, s, m.Choose("help"), 5)
    assert _types(r) == [
        "option_chosen",
        "step_entered",
        "step_entered",
        "flow_ended",
        "conversation_ended",
    ]
    entered = [(e["step"], e["from"]) for e in r.events if e["type"] == "step_entered"]
    assert entered == [("answer", "menu"), ("done", "answer")]
    ended = _one(r, "conversation_ended")
    assert ended == {
        "type": "conversation_ended",
        "at": 5,
        "flow": "shop",
        "resolution": "resolved",
        "person": False,
        "version": shop.version,
        "locale": "en",
    }


def test_handed_over_assigned_and_closed_by_a_person(shop: ir.Project) -> None:
    s = start(shop, now=0).state
    asked = step(shop, s, m.Choose("person"), 10)
    requested = _one(asked, "handoff_requested")
    assert requested["reason"] == "asked" and requested["topic"] == "wants a person"
    assert requested["flow"] == "shop" and requested["step"] == "menu"
    assigned = step(shop, asked.state, m.HandoffUpdate("assigned", agent="ana"), 40)
    assert _one(assigned, "handoff_assigned") == {
        "type": "handoff_assigned",
        "at": 40,
        "queue": "general",
        "flow": "shop",
        "agent": "ana",
        "waited": 30.0,
        "version": shop.version,
        "locale": "en",
    }
    assert assigned.state.person is True
    closed = step(shop, assigned.state, m.HandoffUpdate("closed", agent="ana"), 100)
    assert _one(closed, "handoff_closed")["agent"] == "ana"
    assert _one(closed, "handoff_closed")["handled"] == 60.0
    ended = _one(closed, "conversation_ended")
    assert ended["resolution"] == "agent" and ended["person"] is True and ended["flow"] == "shop"


def test_a_person_who_hands_back_still_counts_when_the_flow_then_resolves(
    shop: ir.Project,
) -> None:
    s = step(shop, start(shop, now=0).state, m.Choose("person"), 1).state
    s = step(shop, s, m.HandoffUpdate("assigned", agent="ben"), 2).state
    back = step(shop, s, m.HandoffUpdate("handed_back", agent="ben"), 12)
    handed = _one(back, "handoff_handed_back")
    assert handed["agent"] == "ben" and handed["handled"] == 10.0
    # Back at the menu that asked: it is entered from itself.
    assert _one(back, "step_entered")["from"] == "menu"
    done = step(shop, back.state, m.Choose("help"), 13)
    ended = _one(done, "conversation_ended")
    assert ended["resolution"] == "resolved" and ended["person"] is True


def test_offline_and_timeout_say_how_long_the_shopper_waited(shop: ir.Project) -> None:
    s = step(shop, start(shop, now=0).state, m.Choose("person"), 7).state
    offline = step(shop, s, m.HandoffUpdate("offline"), 9.5)
    assert _one(offline, "handoff_offline")["waited"] == 2.5
    assert _one(offline, "handoff_offline")["flow"] == "shop"
    timeout = step(shop, s, m.HandoffUpdate("timeout"), 307)
    assert _one(timeout, "handoff_timeout")["waited"] == 300.0
    # Nobody came: the conversation ends unresolved, with no person.
    ended = _one(timeout, "conversation_ended")
    assert ended["person"] is False and ended["resolution"] == "not_resolved"


def test_reasons_name_what_led_to_the_handoff(shop: ir.Project) -> None:
    menu = start(shop, now=0).state
    at_number = step(shop, menu, m.Choose("order"), 1).state

    bad = step(shop, at_number, m.Text("nope"), 2).state
    failed = step(shop, bad, m.Text("still nope"), 3)
    assert _one(failed, "handoff_requested")["reason"] == "no_match"

    waiting = step(shop, at_number, m.Text("1001"), 2)
    (call,) = waiting.effects
    assert isinstance(call, m.CallAction)
    missing = step(shop, waiting.state, m.ActionResult(call.call_id, "not_found"), 3)
    assert _one(missing, "handoff_requested")["reason"] == "no_match"
    broken = step(shop, waiting.state, m.ActionResult(call.call_id, "error"), 3)
    requested = _one(broken, "handoff_requested")
    assert requested["reason"] == "action_error" and requested["topic"] == "backend down"
    assert requested["step"] == "broken"

    shopper = step(shop, at_number, m.AskForPerson(), 2)
    assert _one(shopper, "handoff_requested")["reason"] == "asked"
    assert _one(shopper, "handoff_asked")["by"] == "shopper"


def test_restart_abandons_the_conversation_then_starts_another(shop: ir.Project) -> None:
    s = step(shop, start(shop, now=0).state, m.Choose("order"), 1).state
    r = step(shop, s, m.Restart(), 2)
    assert _types(r)[:3] == ["conversation_abandoned", "conversation_started", "flow_started"]
    abandoned = r.events[0]
    assert abandoned["flow"] == "shop" and abandoned["step"] == "number"
    assert r.events[1]["flow"] == "shop"
    # After an ended conversation, a restart starts one without abandoning anything.
    ended = step(shop, start(shop, now=0).state, m.Choose("help"), 1).state
    again = step(shop, ended, m.Restart(), 2)
    assert _types(again)[:2] == ["conversation_started", "flow_started"]


def test_restart_forgets_the_person_of_the_last_conversation(shop: ir.Project) -> None:
    s = step(shop, start(shop, now=0).state, m.Choose("person"), 1).state
    s = step(shop, s, m.HandoffUpdate("assigned", agent="ana"), 2).state
    s = step(shop, s, m.HandoffUpdate("closed", agent="ana"), 3).state
    fresh = step(shop, s, m.Restart(), 4)
    done = step(shop, fresh.state, m.Choose("help"), 5)
    assert _one(done, "conversation_ended")["person"] is False


def test_a_linked_flow_starts_its_own_run_and_returns_to_the_link(shop: ir.Project) -> None:
    r = step(shop, start(shop, now=0).state, m.Choose("child"), 1)
    entered = [(e["flow"], e["step"], e["from"]) for e in r.events if e["type"] == "step_entered"]
    assert entered == [
        ("shop", "child", "menu"),
        ("other", "one", None),
        ("other", "two", "one"),
        ("shop", "after", "child"),
    ]


def test_states_stored_before_these_fields_load_with_defaults(shop: ir.Project) -> None:
    s = step(shop, start(shop, now=0).state, m.Choose("person"), 1).state
    old = s.to_json()
    for key in ("person", "rate"):
        del old[key]
    for key in ("requested_at", "assigned_at", "agent"):
        del old["handoff"][key]
    loaded = m.State.from_json(old)
    assert loaded.person is False and loaded.rate is None
    assert loaded.handoff is not None and loaded.handoff.requested_at is None
    assigned = step(shop, loaded, m.HandoffUpdate("assigned", agent="ana"), 50)
    assert _one(assigned, "handoff_assigned")["waited"] is None  # unknown, not made up
    closed = step(shop, assigned.state, m.HandoffUpdate("closed"), 60)
    assert _one(closed, "handoff_closed") | {"at": 0} == {
        "type": "handoff_closed",
        "at": 0,
        "queue": "general",
        "flow": "shop",
        "agent": "ana",  # from the assignment when the close does not say
        "handled": 10.0,
        "version": shop.version,
        "locale": "en",
    }


def test_no_event_carries_shopper_text_emails_or_order_numbers(shop: ir.Project) -> None:
    s = step(shop, start(shop, now=0).state, m.Choose("order"), 1).state
    waiting = step(shop, s, m.Text("4711"), 2)
    (call,) = waiting.effects
    assert isinstance(call, m.CallAction)
    found = step(shop, waiting.state, m.ActionResult(call.call_id, "ok", {"number": "4711"}), 3)
    blob = json.dumps([*waiting.events, *found.events])
    assert "4711" not in blob and "a@example.com" not in blob


# -- through the server, on a real Redis --------------------------------------------------------


async def test_the_server_writes_abandonment_and_restarts_with_version_and_locale(
    redis_server: Any,
) -> None:
    from flowengine.server.config import ServerConfig
    from tests.app_server import AppServer
    from tests.server_process import Client, eventually

    redis_server.flush()
    async with AppServer(ServerConfig(redis_url=redis_server.url)) as server:
        c = await Client.connect(server.ws_url, locale="th")
        await c.until(lambda f: f.get("seq") == 1)
        await c.act({"type": "choose", "option": "track"})
        sid = c.session
        await c.close()  # the last socket of the session: left mid-conversation

        async def mine() -> list[dict[str, Any]]:
            await server.runtime.analytics.flush()
            return [e for e in await server.runtime.store.read_events(500) if e["session"] == sid]

        events = await eventually(
            lambda: _with(mine(), lambda es: any(e["type"] == "session_abandoned" for e in es))
        )
        version = events[0]["version"]
        assert [e["type"] for e in events][:2] == ["session_started", "conversation_started"]
        assert all(e["version"] == version and e["locale"] == "th" for e in events)
        (left,) = [e for e in events if e["type"] == "session_abandoned"]
        assert (left["flow"], left["step"]) == ("identify_order", "ask_number")

        # Back, and starting over: the open conversation is abandoned, another begins.
        again = await Client.connect(server.ws_url, session=sid, last_seq=0, locale="th")
        await again.until(lambda f: f.get("type") == "message" and f.get("input"))
        await again.act({"type": "restart"})
        later = await eventually(
            lambda: _with(mine(), lambda es: any(e["type"] == "conversation_abandoned" for e in es))
        )
        kinds = [e["type"] for e in later]
        at = kinds.index("conversation_abandoned")
        assert kinds[at : at + 2] == ["conversation_abandoned", "conversation_started"]
        assert kinds.count("conversation_started") == 2 and kinds.count("session_started") == 1
        await again.close()


async def _with(events: Any, holds: Any) -> list[dict[str, Any]] | None:
    """The events, once `holds(events)`; None before (`eventually` polls again)."""
    got: list[dict[str, Any]] = await events
    return got if got and holds(got) else None


async def test_a_server_restart_does_not_count_its_open_chats_as_abandoned(
    redis_server: Any,
) -> None:
    """A deploy closes every socket (1012): the shoppers come back and carry on, so none of
    them left. A shopper who closes the tab at the same menu did."""
    import redis.asyncio as aioredis

    from flowengine.server.config import ServerConfig
    from flowengine.store.redis import EVENTS_KEY
    from tests.app_server import AppServer
    from tests.server_process import Client

    redis_server.flush()
    async with AppServer(ServerConfig(redis_url=redis_server.url)) as server:
        staying = await Client.connect(server.ws_url)
        leaving = await Client.connect(server.ws_url)
        for c in (staying, leaving):
            await c.until(lambda f: f.get("seq") == 1)
            await c.act({"type": "choose", "option": "sizes"})
        await leaving.close()
        await asyncio.sleep(0.2)  # the server sees it close before it stops
    # The server has stopped (its analytics flushed): what the log holds is all it wrote.
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        entries = await r.xrange(EVENTS_KEY)
    finally:
        await r.aclose()
    events = [e for _, fields in entries for e in json.loads(fields["events"])]
    left = {e["session"] for e in events if e["type"] == "session_abandoned"}
    assert left == {leaving.session}
    assert staying.session in {e["session"] for e in events}


async def test_stopping_the_batcher_mid_write_writes_no_event_twice() -> None:
    """The store carries a write out even when its caller is cancelled (SQLite's thread, a
    command already sent): stopping must wait for it, not cancel it and write it again."""
    from flowengine.server.analytics import Analytics

    class SlowStore:
        def __init__(self) -> None:
            self.written: list[dict[str, Any]] = []
            self.answer = asyncio.Event()

        async def append_events(self, events: list[dict[str, Any]]) -> None:
            self.written.extend(events)  # done at once; the answer comes later
            await self.answer.wait()

    store = SlowStore()
    analytics = Analytics(store, interval=0.01)  # type: ignore[arg-type]
    analytics.start()
    analytics.add("s", [{"type": "flow_started", "at": 1}])
    while not store.written:
        await asyncio.sleep(0.005)
    stopping = asyncio.create_task(analytics.stop())  # while the write is under way
    await asyncio.sleep(0.05)
    store.answer.set()
    await stopping
    assert [e["type"] for e in store.written] == ["flow_started"]


async def test_leaving_while_in_line_for_a_person_is_abandoning_and_while_talking_is_not(
    redis_server: Any,
) -> None:
    """Nobody has answered a shopper in line: closing the chat then is a drop-off (at the step
    that asked for a person). A shopper whose chat an agent has taken is talking to someone."""
    from flowengine.server.config import ServerConfig
    from tests.app_server import AppServer
    from tests.server_process import Agent, Client, add_agent

    redis_server.flush()
    await asyncio.to_thread(add_agent, "ann", redis_url=redis_server.url)
    async with AppServer(ServerConfig(redis_url=redis_server.url)) as server:
        ann = await Agent.login(server, "ann", "correct-horse-battery")
        await ann.until(lambda f: f["type"] == "queue")  # online: hand-offs queue, not offline
        waiting = await Client.connect(server.ws_url)
        talking = await Client.connect(server.ws_url)
        for c in (waiting, talking):
            await c.until(lambda f: f.get("seq") == 1)
            await c.act({"type": "handoff"})
            await c.until(lambda f: f.get("type") == "handoff" and f.get("status") == "queued")
        assert (await ann.act({"type": "claim", "session": talking.session}))["type"] == "ack"
        await talking.until(lambda f: f.get("type") == "handoff" and f.get("status") == "assigned")
        await waiting.close()
        await talking.close()
        await asyncio.sleep(0.3)  # the server sees both sockets close
        await server.runtime.analytics.flush()
        events = await server.runtime.store.read_events(1000)
        await ann.close()
    left = [e for e in events if e["type"] == "session_abandoned"]
    assert [e["session"] for e in left] == [waiting.session]
    asked = next(
        e for e in events if e["type"] == "handoff_requested" and e["session"] == waiting.session
    )
    assert (left[0]["flow"], left[0]["step"]) == (asked["flow"], asked["step"])
