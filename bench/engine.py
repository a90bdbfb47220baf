"""Benchmark: pure engine steps per second through the shipped flows, on one core.

Replays scripted conversations (tracking, returns, cancellations, problem reports, pre-sale
menus, handoffs) through `engine.step` with action results precomputed, so only the engine is
timed: no I/O, no asyncio. A baseline in the same run (a transition that only copies a state the
size of ours) puts the figure in proportion to the machine.

    python bench/engine.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import date
from pathlib import Path
from typing import Any

from flowengine.actions.demo_backend import DemoBackend
from flowengine.actions.registry import ACTIONS
from flowengine.engine import model as m
from flowengine.engine.step import start, step
from flowengine.language import load_project

FLOWS = Path(__file__).resolve().parent.parent / "flows"
TODAY = date(2026, 11, 22)

SCRIPTS: list[tuple[str, list[m.Event]]] = [
    (
        "cs",
        [
            m.Choose("track"),
            m.Text("1003"),
            m.Text("chloe.pop@example.com"),
            m.Choose("done"),
            m.Choose("yes"),
        ],
    ),
    (
        "en",
        [
            m.Choose("return"),
            m.Text("1005"),
            m.Text("erik.dvorak@example.com"),
            m.Choose("TEE-WHT-L"),
            m.Choose("too_small"),
            m.Choose("label"),
            m.Choose("done"),
        ],
    ),
    (
        "th",
        [
            m.Choose("cancel"),
            m.Text("1001"),
            m.Text("anna.novak@example.com"),
            m.Choose("confirm"),
            m.Choose("menu"),
            m.Choose("sizes"),
            m.Choose("tops"),
            m.Choose("another"),
            m.Choose("shoes"),
            m.Choose("done"),
            m.Choose("yes"),
        ],
    ),
    (
        "id",
        [
            m.Choose("problem"),
            m.Text("1012"),
            m.Text("lina.wijaya@example.com"),
            m.Choose("late"),
            m.Text("Still nothing."),
            m.Choose("person"),
            m.HandoffUpdate("assigned"),
            m.Text("hello?"),
            m.HandoffUpdate("handed_back"),
            m.Choose("done"),
        ],
    ),
    (
        "ro",
        [
            m.Choose("discounts"),
            m.Choose("code_fails"),
            m.Text("!"),
            m.Text("welcome10"),
            m.Choose("solved"),
            m.Restart(),
            m.Choose("shipping"),
            m.Choose("eu"),
            m.Choose("another"),
            m.Choose("asia"),
            m.Choose("done"),
        ],
    ),
]


def _answers() -> dict[str, Any]:
    cache: dict[str, Any] = {}
    backend = DemoBackend(TODAY)

    async def answer(call: m.CallAction) -> Any:
        key = f"{call.action}{sorted(call.args.items())}"
        if key not in cache:
            out = await ACTIONS[call.action].run(backend, call.args, TODAY)
            cache[key] = (out.outcome, out.data)
        return cache[key]

    return {"answer": answer, "cache": cache}


def _replay(project: Any, answers: dict[str, Any], resolve: Any) -> int:
    steps = 0
    for locale, events in SCRIPTS:
        r = start(project, now=0.0, locale=locale)
        steps += 1
        for event in events:
            r = step(project, r.state, event, 1.0)
            steps += 1
            assert r.error is None, (locale, event, r.error)
            calls = [e for e in r.effects if isinstance(e, m.CallAction)]
            while calls:
                outcome, data = resolve(calls[0])
                r = step(project, r.state, m.ActionResult(calls[0].call_id, outcome, data), 2.0)
                steps += 1
                calls = [e for e in r.effects if isinstance(e, m.CallAction)]
    return steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    loaded = load_project([FLOWS])
    assert loaded.ok and loaded.project is not None, loaded.render()
    project = loaded.project
    answers = _answers()

    def warm(call: m.CallAction) -> Any:
        return asyncio.run(answers["answer"](call))

    _replay(project, answers, warm)  # fills the action cache and warms template caches
    cache = answers["cache"]

    def cached(call: m.CallAction) -> Any:
        return cache[f"{call.action}{sorted(call.args.items())}"]

    deadline = time.perf_counter() + args.seconds
    total, began = 0, time.perf_counter()
    while time.perf_counter() < deadline:
        total += _replay(project, answers, cached)
    engine_rate = total / (time.perf_counter() - began)

    # Baseline: a transition that only copies a state of the same shape (what any immutable
    # state machine must at least do), in the same run on the same core.
    sample = start(project, now=0.0).state
    n, began = 0, time.perf_counter()
    deadline = began + min(args.seconds, 2.0)
    while time.perf_counter() < deadline:
        for _ in range(1000):
            m.State(**{f: getattr(sample, f) for f in sample.__dataclass_fields__})
        n += 1000
    baseline_rate = n / (time.perf_counter() - began)

    print(f"engine steps/s (shipped flows, 1 core): {engine_rate:,.0f}")
    print(f"baseline state copies/s:                {baseline_rate:,.0f}")
    print(
        f"engine step costs {baseline_rate / engine_rate:.1f}x a bare state copy; "
        f"{1e6 / engine_rate:.1f} µs per step"
    )


if __name__ == "__main__":
    main()
