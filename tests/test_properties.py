"""Property tests: random clicks, text and outcomes through every shipped flow.

The engine must never raise, and every state it reaches must have a way forward: options to
click, a text box, an action being waited for, a person, or a proper end.
"""

from __future__ import annotations

import asyncio
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowengine.actions.demo_backend import DemoBackend
from flowengine.actions.registry import ACTIONS
from flowengine.engine import model as m
from flowengine.engine.step import start, step
from flowengine.language import ir
from tests.conftest import TODAY

BACKEND = DemoBackend(TODAY)
ORDERS = list(BACKEND.orders.values())

texts = st.one_of(
    st.sampled_from([o["number"] for o in ORDERS] + [o["email"] for o in ORDERS]),
    st.sampled_from(
        [
            "1003",
            "#1005",
            "9999",
            "all",
            "too_small",
            "label",
            "WELCOME10",
            "<img src=x onerror=alert(1)>",
            "{{ 7*7 }}",
            "{% for %}",
            "ยกเลิก",
            "čau",
        ]
    ),
    st.text(max_size=60),
)
move = st.one_of(
    st.tuples(st.just("click"), st.integers(0, 12)),
    st.tuples(st.just("text"), texts),
    st.tuples(st.just("bogus_click"), st.text(max_size=20)),
    st.tuples(st.just("person"), st.none()),
    st.tuples(st.just("restart"), st.none()),
    st.tuples(
        st.just("agent"),
        st.sampled_from(["assigned", "offline", "timeout", "closed", "handed_back"]),
    ),
)
outcome = st.sampled_from(["real", "real", "real", "not_found", "error"])


def _assert_way_forward(r: m.Result, pending: list[m.CallAction]) -> None:
    s = r.state
    if s.waiting == "click":
        assert s.options, f"stuck at {s.flow}.{s.step}: a click is expected but nothing to click"
    elif s.waiting == "action":
        assert s.pending is not None and pending and pending[-1].call_id == s.pending
    elif s.waiting == "agent":
        assert s.handoff is not None
    elif s.waiting == "text":
        assert s.flow and s.step
    else:
        assert s.waiting == "ended", s.waiting
    assert m.State.from_json(json.loads(json.dumps(s.to_json()))) == s


def _resolve(call: m.CallAction, how: str) -> m.ActionResult:
    if how == "real":
        result = asyncio.run(ACTIONS[call.action].run(BACKEND, call.args, TODAY))
        return m.ActionResult(call.call_id, result.outcome, result.data)
    return m.ActionResult(call.call_id, how, None)  # type: ignore[arg-type]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    flow=st.sampled_from(
        [
            "main",
            "track_order",
            "return_order",
            "cancel_order",
            "report_problem",
            "size_guide",
            "shipping",
            "discounts",
            "leave_message",
            "identify_order",
        ]
    ),
    locale=st.sampled_from(["en", "cs", "th", "id", "ro", "fr-CA", "", "x" * 40]),
    moves=st.lists(st.tuples(move, outcome), max_size=25),
)
def test_random_walks_never_raise_and_never_strand(
    project: ir.Project, flow: str, locale: str, moves: list
) -> None:
    r = start(
        project,
        now=0,
        locale=locale,
        flow=flow,
        context={"shopper": {"email": ORDERS[0]["email"], "verified": True}},
    )
    pending = [e for e in r.effects if isinstance(e, m.CallAction)]
    _assert_way_forward(r, pending)
    for (kind, arg), how in moves:
        s = r.state
        if s.waiting == "action":
            r = step(project, s, _resolve(pending[-1], how), 1)
        else:
            if kind == "click":
                event: m.Event = m.Choose(s.options[arg % len(s.options)][0] if s.options else "x")
            elif kind == "text":
                event = m.Text(arg)
            elif kind == "bogus_click":
                event = m.Choose(arg)
            elif kind == "person":
                event = m.AskForPerson()
            elif kind == "restart":
                event = m.Restart()
            else:
                event = m.HandoffUpdate(arg)
            r = step(project, s, event, 1)
            if r.error is not None:
                assert r.state is s, "an error must leave the state unchanged"
        pending += [e for e in r.effects if isinstance(e, m.CallAction)]
        _assert_way_forward(r, pending)
