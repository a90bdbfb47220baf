"""The pure engine: whole conversations without a socket, a store or a clock."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from flowengine.actions.demo_backend import DemoBackend
from flowengine.conversation import Conversation
from flowengine.engine import model as m
from flowengine.engine.step import MAX_TEXT, start, step
from flowengine.language import ir, load_project
from flowengine.language.text import fallback_chain
from tests.conftest import TODAY


def _project(tmp_path: Path, text: str, name: str = "f.yaml") -> ir.Project:
    (tmp_path / name).write_text(text)
    result = load_project([tmp_path])
    assert result.ok, result.render()
    assert result.project is not None
    return result.project


def test_start_shows_the_main_menu(project: ir.Project) -> None:
    r = start(project, now=0, locale="en")
    assert r.error is None
    assert r.state.waiting == "click"
    assert [o["id"] for o in r.messages[-1].options][:2] == ["track", "return"]
    assert r.events[0] == {
        "type": "session_started",
        "at": 0,
        "flow": "main",
        "locale": "en",
        "version": project.version,
    }


def test_bad_events_return_an_error_and_leave_the_state_unchanged(project: ir.Project) -> None:
    s = start(project, now=0).state
    for event, code in [
        (m.Choose("nope"), "unknown_option"),
        (m.Choose("intent:else"), "unknown_option"),  # an engine option not shown now
        (m.Text("x" * (MAX_TEXT + 1)), "text_too_long"),
        (m.Text("   "), "empty_text"),
        (m.ActionResult("99", "ok", {}), "unexpected_result"),
        (m.HandoffUpdate("assigned"), "no_handoff"),
    ]:
        r = step(project, s, event, 1)
        assert r.error is not None and r.error.code == code
        assert r.state is s
        assert r.messages == () and r.effects == ()


def test_a_typed_label_counts_as_a_click(project: ir.Project) -> None:
    s = start(project, now=0, locale="cs").state
    r = step(project, s, m.Text("  vrátit ZBOŽÍ "), 1)
    assert r.error is None
    assert r.state.flow == "identify_order"
    assert r.messages[0] == m.Message("shopper", "Vrátit zboží")


def test_state_survives_json(project: ir.Project) -> None:
    s = start(project, now=0).state
    s = step(project, s, m.Choose("person"), 1).state
    again = m.State.from_json(json.loads(json.dumps(s.to_json())))
    assert again == s


def test_the_engine_does_not_mutate_its_input(project: ir.Project) -> None:
    s = start(project, now=0).state
    s = step(project, s, m.Choose("track"), 1).state
    before = json.dumps(s.to_json(), sort_keys=True)
    step(project, s, m.Text("1003"), 2)
    assert json.dumps(s.to_json(), sort_keys=True) == before


def test_an_action_is_an_effect_and_its_result_an_event(project: ir.Project) -> None:
    s = start(project, now=0, flow="track_order").state
    s = step(project, s, m.Text("1003"), 1).state
    r = step(project, s, m.Text("chloe.pop@example.com"), 2)
    (call,) = r.effects
    assert isinstance(call, m.CallAction)
    assert call.action == "orders.lookup"
    assert call.args == {"number": "1003", "email": "chloe.pop@example.com"}
    assert r.state.waiting == "action"
    busy = step(project, r.state, m.Choose("x"), 3)
    assert busy.error is not None and busy.error.code == "busy"
    stale = step(project, r.state, m.ActionResult("not-this-call", "ok", {}), 3)
    assert stale.error is not None and stale.error.code == "unexpected_result"
    r2 = step(project, r.state, m.ActionResult(call.call_id, "not_found"), 3)
    assert r2.state.step == "not_found"


def test_locale_fallback_chain() -> None:
    assert fallback_chain("fr-CA", "en") == ("fr-ca", "fr", "en")
    assert fallback_chain("cs", "en") == ("cs", "en")
    assert fallback_chain("", "en") == ("en",)


def test_unknown_locale_falls_back_to_the_default(project: ir.Project) -> None:
    r = start(project, now=0, locale="fr-CA")
    assert r.messages[-1].locale == "en"
    r = start(project, now=0, locale="cs-CZ")
    assert r.messages[-1].locale == "cs"
    assert r.messages[-1].text.startswith("Dobrý den")


def test_hostile_text_is_data_not_a_template(project: ir.Project) -> None:
    s = start(project, now=0, flow="report_problem").state
    hostile = "{{ 7*7 }} {% for x in range(9) %}{% endfor %} <img src=x onerror=alert(1)>"
    for text in ("1005", "erik.dvorak@example.com"):
        s = _settle(project, step(project, s, m.Text(text), 1)).state
    s = step(project, s, m.Choose("other"), 1).state
    r = step(project, s, m.Text(hostile), 2)
    assert r.state.vars["details"] == hostile
    assert r.messages[0].text == hostile
    call = next(e for e in r.effects if isinstance(e, m.CallAction))
    assert call.args["details"] == hostile


def _settle(project: ir.Project, r: m.Result) -> m.Result:
    """Answer lookups from the demo data without I/O: enough for engine tests."""
    for e in r.effects:
        if isinstance(e, m.CallAction) and e.action == "orders.lookup":
            import asyncio

            from flowengine.actions.orders import lookup

            out = asyncio.run(lookup(DemoBackend(TODAY), e.args, TODAY))
            return step(project, r.state, m.ActionResult(e.call_id, out.outcome, out.data), 3)
    return r


def test_link_returns_to_the_caller(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text(
        "flow: child\nsteps:\n  - set: {x: 1}\n  - say: in child\n    next: end\n"
    )
    (tmp_path / "flowengine.yaml").write_text("start: main\n")
    p = _project(tmp_path, "flow: main\nsteps:\n  - link: child\n  - say: back\n    next: end\n")
    r = start(p, now=0)
    assert [msg.text for msg in r.messages] == ["in child", "back"]
    assert r.state.waiting == "ended" and r.state.vars == {"x": 1}


def test_the_step_budget_stops_a_runaway(project: ir.Project) -> None:
    flow = project.flows["main"]
    looping = ir.Goto("spin", ("steps", 99), {"next": "spin"})
    steps = {**flow.steps, "spin": looping}
    bad = ir.Project(
        {**project.flows, "main": replace(flow, steps=steps, start="spin")},
        project.settings,
        project.version,
    )
    r = start(bad, now=0)
    assert r.error is not None and r.error.code == "loop_limit"
    assert r.messages == () and r.state.waiting == "start"
    s = start(project, now=0).state
    r = step(bad, replace(s, step="menu"), m.Restart(), 1)
    assert r.error is not None and r.error.code == "loop_limit"
    assert r.state == replace(s, step="menu")


def test_ended_conversations_refuse_everything_but_restart(project: ir.Project) -> None:
    s = start(project, now=0, flow="size_guide").state
    s = step(project, s, m.Choose("tops"), 1).state
    s = step(project, s, m.Choose("done"), 1).state
    s = step(project, s, m.Choose("yes"), 1).state  # "Did this solve it?"
    assert s.waiting == "ended" and s.resolution == "resolved"
    for event in (m.Choose("tops"), m.Text("hi"), m.AskForPerson()):
        r = step(project, s, event, 2)
        assert r.error is not None and r.error.code == "conversation_ended"
    r = step(project, s, m.Restart(), 3)
    assert r.error is None and r.state.flow == "main" and r.state.waiting == "click"


def test_person_from_any_step_and_back(project: ir.Project) -> None:
    s = start(project, now=0, flow="track_order").state
    r = step(project, s, m.AskForPerson(), 1)
    (h,) = r.effects
    assert isinstance(h, m.RequestHandoff) and h.queue == "general" and h.flow == "identify_order"
    assert r.state.waiting == "agent"
    again = step(project, r.state, m.AskForPerson(), 2)
    assert again.error is not None and again.error.code == "already_with_agent"
    chat = step(project, r.state, m.Text("are you there?"), 2)
    assert chat.effects == (m.ForwardToAgent("are you there?"),)
    back = step(project, r.state, m.HandoffUpdate("handed_back"), 3)
    assert back.state.step == "ask_number" and back.state.waiting == "text"


def test_restart_cancels_a_pending_handoff(project: ir.Project) -> None:
    s = step(project, start(project, now=0).state, m.Choose("person"), 1).state
    r = step(project, s, m.Restart(), 2)
    assert m.CancelHandoff() in r.effects
    assert r.state.handoff is None and r.state.waiting == "click"


def test_analytics_events_never_carry_shopper_text(project: ir.Project) -> None:
    s = start(project, now=0, flow="track_order").state
    r = step(project, s, m.Text("chloe.pop@example.com"), 1)
    blob = json.dumps(r.events)
    assert "chloe" not in blob
    assert any(e["type"] == "text_given" and e["valid"] is False for e in r.events)


@pytest.mark.parametrize("locale", ["en", "cs", "th", "id", "ro"])
async def test_a_whole_conversation_in_every_locale(
    project: ir.Project, locale: str, today: date
) -> None:
    conv = Conversation(project, DemoBackend(today), locale=locale, today=today)
    await conv.start()
    await conv.send(m.Choose("track"))
    await conv.send(m.Text("1005"))
    turn = await conv.send(m.Text("erik.dvorak@example.com"))
    assert conv.state is not None and conv.state.vars["order"]["status"] == "delivered"
    assert all(msg.locale in (locale, "*") for msg in turn.messages if msg.sender != "shopper")
    assert "return" in [o["id"] for o in turn.messages[-1].options]


def test_a_state_from_an_older_flow_version_is_refused_not_crashed(project: ir.Project) -> None:
    s = start(project, now=0).state
    for stale in (replace(s, step="gone_step"), replace(s, flow="gone_flow")):
        r = step(project, stale, m.Choose("track"), 1)
        assert r.error is not None and r.error.code == "flow_gone" and r.state is stale
        fresh = step(project, stale, m.Restart(), 1)
        assert fresh.error is None and fresh.state.flow == "main" and fresh.state.waiting == "click"
    r = step(project, s, m.Text(12345), 1)  # type: ignore[arg-type]
    assert r.error is not None and r.error.code == "bad_event"


def test_every_shipped_flow_offers_a_person(project: ir.Project) -> None:
    for name, flow in project.flows.items():
        offers = any(
            target == ir.HANDOFF or isinstance(s, ir.Handoff) for s, _, target in flow.edges()
        )
        assert offers, f"flow {name} never offers a person"
        assert set(flow.locales) == {"en", "cs", "th", "id", "ro"}
        first_line = Path(flow.file).read_text("utf-8").splitlines()[0]
        assert first_line == "# yaml-language-server: $schema=../flowengine/schema/flow.schema.json"
