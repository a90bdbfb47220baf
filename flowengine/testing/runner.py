"""Conversation tests: YAML scripts of clicks and typed text, with what the bot must answer.

    flow: track_order          # where the tests of this file start (default: the project start)
    locales: all               # run every test in every locale the flow declares
    tests:
      - name: a shipped order shows its tracking link
        steps:
          - expect: {input: text}
          - type: "1003"
          - type: chloe.pop@example.com
          - expect: {text: {en: on its way}, vars: {order.status: shipped}}
          - click: person
          - expect: {handoff: {queue: orders}, waiting: agent}
      - name: the order system is down
        failing_actions: [orders.lookup]   # these actions take their error exit
        steps: [...]
      - name: too many wrong emails for this order
        throttled_actions: [orders.lookup] # these answer `throttled` (their on_throttled exit)
        steps: [...]
      - name: the size is in stock
        action_results:                    # what these answer (a list: one answer per call)
          stock.check: {outcome: ok, data: {available: true, quantity: 3}}
        steps: [...]

A test never calls the API of an action declared in flowengine.yaml: it says what it answers
(`action_results`, `failing_actions`), and a call nobody answered fails the test. An answer the
action can never give (`not_found` from one without that exit) is refused before any test runs:
it would take the error exit and pass by accident.

A `text` expectation is checked in every locale a test runs in: a map by the locale's entry (a
map without it fails), a string as the flow's default-locale text.

Run in every locale, a test also fails when a message falls back to another locale's text, so
the shipped translations are checked as much as the logic. Transition coverage is reported per
flow: which edges of the graph the tests walked.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from ..actions.demo_backend import DemoBackend
from ..actions.orders import OrderBackend
from ..actions.perform import THROTTLED, Answer
from ..actions.registry import ACTIONS as BUILTIN_ACTIONS
from ..conversation import Conversation, Turn
from ..engine import model as m
from ..language import ir, load_project
from ..language.compiler import declared_spec
from ..language.diagnostics import Diagnostic, did_you_mean
from ..language.schema import check_schema
from ..language.source import load_document
from ..language.text import fallback_chain, normalise_locale
from ..language.validators import BUILTIN

ACTIONS = ("click", "type", "person", "restart", "agent")


@dataclass
class TestCase:
    name: str
    file: str
    line: int
    flow: str | None
    locales: list[str]
    context: dict[str, Any]
    steps: list[dict[str, Any]]
    step_lines: list[int]
    failing_actions: frozenset[str] = frozenset()
    throttled_actions: frozenset[str] = frozenset()
    action_results: dict[str, list[Answer]] = field(default_factory=dict)


@dataclass
class Outcome:
    case: TestCase
    locale: str
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    visited: set[tuple[str, str, str]] = field(default_factory=set)
    entered: set[tuple[str, str]] = field(default_factory=set)  # (flow, locale)

    @property
    def passed(self) -> int:
        return sum(o.ok for o in self.outcomes)

    @property
    def failed(self) -> int:
        return sum(not o.ok for o in self.outcomes)


def load_tests(path: Path, project: ir.Project) -> tuple[list[TestCase], list[Diagnostic]]:
    name = str(path)
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Diagnostic("E002", f"cannot read the file: {exc}", name)]
    doc, problems = load_document(text, name)
    if doc is None:
        return [], problems
    problems += check_schema(doc.data, doc.source, "conversation_test")
    if problems:
        return [], problems
    data = doc.data
    default_flow = data.get("flow")
    cases = []
    for i, t in enumerate(data["tests"]):
        flow_name = t.get("flow", default_flow)
        if flow_name is not None and flow_name not in project.flows:
            problems.append(
                Diagnostic(
                    "E103",
                    f"flow '{flow_name}' does not exist",
                    name,
                    doc.source.value(("tests", i, "flow") if "flow" in t else ("flow",)),
                )
            )
            continue
        flow = project.flows[flow_name or project.settings.start]
        known = {*BUILTIN_ACTIONS, *project.actions}
        unknown = False
        for key in ("action_results", "failing_actions", "throttled_actions"):
            for j, action in enumerate(t.get(key, [])):
                if action in known:
                    continue
                unknown = True
                at = (
                    doc.source.key(("tests", i, key, action))
                    if key == "action_results"
                    else doc.source.value(("tests", i, key, j))
                )
                problems.append(
                    Diagnostic(
                        "E108",
                        f"{key} names an unknown action '{action}'",
                        name,
                        at,
                        hint=did_you_mean(action, known) or "actions: " + ", ".join(sorted(known)),
                    )
                )
        if unknown:
            continue
        impossible = list(_impossible_answers(t.get("action_results", {}), project))
        for action, index, wrong, message, hint in impossible:
            where = ("tests", i, "action_results", action, *(() if index is None else (index,)))
            at = (
                doc.source.key((*where, *wrong))
                if len(wrong) > 1
                else doc.source.value((*where, *wrong))
            )
            problems.append(Diagnostic("E012", message, name, at, hint=hint))
        if impossible:
            continue
        results = {
            action: [
                Answer(a["outcome"], a.get("data")) for a in (r if isinstance(r, list) else [r])
            ]
            for action, r in t.get("action_results", {}).items()
        }
        wanted = t.get("locales", data.get("locales"))
        if wanted == "all":
            locales = list(flow.locales)
        elif wanted is None:
            locales = [flow.default_locale]
        else:
            locales = list(wanted)
        cases.append(
            TestCase(
                name=t["name"],
                file=name,
                line=doc.source.value(("tests", i)).line,
                flow=flow_name,
                locales=locales,
                context=t.get("context", {}),
                steps=t["steps"],
                step_lines=[
                    doc.source.value(("tests", i, "steps", j)).line for j in range(len(t["steps"]))
                ],
                failing_actions=frozenset(t.get("failing_actions", [])),
                throttled_actions=frozenset(t.get("throttled_actions", [])),
                action_results=results,
            )
        )
    return cases, problems


def _impossible_answers(
    results: dict[str, Any], project: ir.Project
) -> Iterator[tuple[str, int | None, tuple[str, ...], str, str]]:
    """Scripted answers the action can never give: (action, index in its list, the key that is
    wrong, message, hint).
    A `not_found` of an action without one would silently take the error exit instead."""
    for action, given in results.items():
        declared = project.actions.get(action)
        spec = BUILTIN_ACTIONS.get(action) or (declared_spec(declared) if declared else None)
        if spec is None:
            continue
        for j, answer in enumerate(given if isinstance(given, list) else [given]):
            index = j if isinstance(given, list) else None
            outcome = answer["outcome"]
            if outcome == "not_found" and not spec.has_not_found:
                yield (
                    action,
                    index,
                    ("outcome",),
                    f"'{action}' never answers not_found",
                    "a missing record is an error for this action: write `outcome: error`"
                    if declared is None
                    else f"declare its not_found statuses: `actions.{action}.answer.not_found`",
                )
            elif outcome == "throttled" and not spec.verifies:
                yield (
                    action,
                    index,
                    ("outcome",),
                    f"'{action}' is never throttled",
                    "only order checks (a number with an email) are throttled",
                )
            data = answer.get("data")
            if declared is not None and outcome == "ok" and isinstance(data, dict):
                for key in sorted(set(data) - set(declared.keep)):
                    yield (
                        action,
                        index,
                        ("data", key),
                        f"'{action}' keeps no field '{key}'",
                        did_you_mean(key, declared.keep)
                        or "it keeps: " + (", ".join(sorted(declared.keep)) or "nothing"),
                    )


def _lookup(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return _MISSING
    return data


_MISSING = object()


def expected_text(want: str | dict[str, str], locale: str, default: bool) -> str | None:
    """What a `text` expectation asks for in `locale`: a string where the flow's `default`
    locale's text is checked; from a map, the entry for the locale or its language (`cs` for
    `cs-CZ`). None when a map has neither (reported: it would check nothing)."""
    if isinstance(want, str):
        return want if default else ""
    by_locale = {normalise_locale(k): v for k, v in want.items()}
    return next((by_locale[c] for c in fallback_chain(locale, "") if c in by_locale), None)


def _check(
    expect: dict[str, Any], turn: Turn, conv: Conversation, locale: str, default: bool
) -> list[str]:
    state = conv.state
    assert state is not None
    shown = [msg for msg in turn.messages if msg.sender != "shopper"]
    last = shown[-1] if shown else None
    problems = []
    if "text" in expect:
        needle = expected_text(expect["text"], locale, default)
        if needle is None:  # a map that leaves this locale out would check nothing
            problems.append(
                f"expect.text has no text for locale '{locale}' (the test runs in it): "
                f"add {locale.split('-')[0]}: ... to the map"
            )
        elif needle and not any(needle.casefold() in msg.text.casefold() for msg in shown):
            got = " | ".join(msg.text for msg in shown) or "(no message)"
            problems.append(f"expected a message containing {needle!r}; got: {got}")
    if "options" in expect:
        ids = [o["id"] for o in last.options] if last else []
        if ids != list(expect["options"]):
            problems.append(f"expected options {expect['options']}; got {ids}")
    if "input" in expect:
        kind = (last.input or {}).get("kind") if last else None
        if kind != expect["input"]:
            problems.append(f"expected input {expect['input']!r}; got {kind!r}")
    for path, want in (expect.get("vars") or {}).items():
        got = _lookup(state.vars, path)
        if got is _MISSING:
            problems.append(f"expected variable {path} = {want!r}; it is not set")
        elif got != want:
            problems.append(f"expected variable {path} = {want!r}; got {got!r}")
    if "handoff" in expect:
        asked = [e for e in turn.effects if isinstance(e, m.RequestHandoff)]
        if not asked:
            problems.append("expected a handoff; none was asked for")
        else:
            h = asked[-1]
            for k, v in (expect["handoff"] or {}).items():
                if getattr(h, k, None) != v:
                    problems.append(f"expected handoff {k} = {v!r}; got {getattr(h, k, None)!r}")
    if "ended" in expect:
        if state.waiting != "ended":
            problems.append(f"expected the conversation to end; it is waiting for {state.waiting}")
        elif state.resolution != expect["ended"]:
            problems.append(f"expected resolution {expect['ended']!r}; got {state.resolution!r}")
    for key in ("flow", "step", "waiting"):
        if key in expect and getattr(state, key) != expect[key]:
            problems.append(f"expected {key} {expect[key]!r}; got {getattr(state, key)!r}")
    if "error" in expect:
        code = turn.error.code if turn.error else None
        if code != expect["error"]:
            problems.append(f"expected error {expect['error']!r}; got {code!r}")
    elif turn.error is not None:
        problems.append(f"unexpected error {turn.error.code}: {turn.error.message}")
    return problems


def _event(item: dict[str, Any], state: m.State) -> m.Event:
    if "click" in item:
        wanted = str(item["click"])
        for oid, label in state.options:
            if wanted in (oid, label):
                return m.Choose(oid)
        return m.Choose(wanted)
    if "type" in item:
        return m.Text(str(item["type"]))
    if "person" in item:
        return m.AskForPerson()
    if "restart" in item:
        return m.Restart()
    return m.HandoffUpdate(item["agent"])


async def run_case(
    case: TestCase,
    project: ir.Project,
    locale: str,
    today: date,
    report: Report,
    backend: OrderBackend | None = None,
) -> Outcome:
    """One case in one locale, on `backend` (default: fresh demo orders, so cases don't see
    each other's cancellations)."""
    outcome = Outcome(case, locale)
    conv = Conversation(
        project,
        backend if backend is not None else DemoBackend(today),
        locale=locale,
        context=case.context,
        today=today,
        clock=lambda: 0.0,
        failing_actions=case.failing_actions | {a + THROTTLED for a in case.throttled_actions},
        action_results=case.action_results,
        call_apis=False,
    )
    turn = await conv.start(case.flow)
    record(turn, conv, locale, report, outcome, "start")
    if outcome.failures:
        return outcome
    for index, (item, line) in enumerate(zip(case.steps, case.step_lines, strict=True)):
        assert conv.state is not None
        if "expect" in item:
            # A string is the default locale's text; in a test that never runs in the default
            # locale (`locales: [cs]`) it is the text of the locales the test runs in.
            default = project.flows[conv.state.flow].default_locale if conv.state.flow else locale
            as_default = locale == default or default not in case.locales
            for p in _check(item["expect"], turn, conv, locale, as_default):
                outcome.failures.append(f"line {line}: {p}")
            continue
        if isinstance(item.get("type"), dict):  # typed text per locale, as `expect.text`
            typed = expected_text(item["type"], locale, False)
            if typed is None:
                outcome.failures.append(
                    f"line {line}: type has no text for locale '{locale}' (the test runs in "
                    f"it): add {locale.split('-')[0]}: ... to the map"
                )
                break
            item = {"type": typed}
        turn = await conv.send(_event(item, conv.state))
        record(turn, conv, locale, report, outcome, f"line {line}")
        if turn.error is not None and not _expects_error(case, index):
            outcome.failures.append(f"line {line}: {turn.error.code}: {turn.error.message}")
        if outcome.failures:
            break
    return outcome


def _expects_error(case: TestCase, index: int) -> bool:
    nxt = case.steps[index + 1] if index + 1 < len(case.steps) else {}
    return "error" in (nxt.get("expect") or {})


def record(
    turn: Turn, conv: Conversation, locale: str, report: Report, outcome: Outcome, where: str
) -> None:
    report.visited.update(turn.visited)
    for action in conv.unscripted:
        outcome.failures.append(
            f"{where}: {action} was called, but the test does not say what it answers "
            f"(add `action_results: {{{action}: {{outcome: ok, data: ...}}}}`)"
        )
    conv.unscripted.clear()
    for e in turn.events:
        if e["type"] in ("flow_started", "flow_linked"):
            report.entered.add((e["flow"], locale))
    wanted = locale.split("-")[0]
    for msg in turn.messages:
        if msg.sender != "shopper" and msg.locale not in (None, "*", locale, wanted):
            outcome.failures.append(
                f"{where}: text fell back to '{msg.locale}' in locale '{locale}': {msg.text[:60]!r}"
            )


def _can_fail(step: ir.Ask) -> bool:
    """Can an answer to this ask be refused? Not with `validate: text` and no choices: the
    engine refuses a blank message before it is an answer, and any other text is one."""
    return step.validator is not BUILTIN["text"] or bool(step.choices) or bool(step.choices_from)


def transitions(flow: ir.Flow) -> set[tuple[str, str]]:
    """Every edge a test can walk: graph edges (not the fail exit of an ask no answer can
    fail) plus menu options that leave the flow."""
    out = {
        (s.key, label)
        for s, label, _ in flow.edges()
        if not (isinstance(s, ir.Ask) and label == "fail" and not _can_fail(s))
    }
    for s in flow.steps.values():
        if isinstance(s, ir.Menu):
            out |= {(s.key, f"option:{o.id}") for o in s.options if o.action in ("flow", "url")}
    return out


async def run_tests(
    files: Iterable[Path], project: ir.Project, today: date | None = None
) -> Report:
    report = Report()
    today = today or date.today()
    for path in files:
        cases, problems = load_tests(path, project)
        report.diagnostics.extend(problems)
        for case in cases:
            for locale in case.locales:
                report.outcomes.append(await run_case(case, project, locale, today, report))
    return report


def test_files(args: list[str], flows_dir: str) -> list[Path]:
    paths = [Path(a) for a in args] or [Path(flows_dir) / "tests"]
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted([*p.glob("*.test.yaml"), *p.glob("*.test.yml")]))
        else:
            out.append(p)
    return out


def run_cli(args: list[str], *, flows_dir: str, verbose: bool = False) -> int:
    loaded = load_project([flows_dir])
    if not loaded.ok or loaded.project is None:
        print(loaded.render(include_warnings=False), file=sys.stderr)
        print("the flows do not validate; fix them before testing", file=sys.stderr)
        return 1
    project = loaded.project
    files = test_files(args, flows_dir)
    if not files:
        print(f"no conversation tests found in {flows_dir}/tests", file=sys.stderr)
        return 1
    report = asyncio.run(run_tests(files, project))
    sources = {str(f): f.read_text("utf-8").splitlines() for f in files if f.exists()}
    for d in report.diagnostics:
        print(d.render(sources.get(d.file)), file=sys.stderr)
    current = None
    for o in report.outcomes:
        if o.case.file != current:
            current = o.case.file
            print(current)
        if not o.ok or verbose:
            mark = "ok  " if o.ok else "FAIL"
            print(f"  {mark} {o.case.name} [{o.locale}]")
            for f in o.failures:
                print(f"         {f}")
    print("\ntransition coverage:")
    for name, flow in sorted(project.flows.items()):
        edges = transitions(flow)
        walked = {(k, label) for f, k, label in report.visited if f == name} & edges
        pct = 100 * len(walked) / len(edges) if edges else 100.0
        missing = sorted(edges - walked)
        line = f"  {name:<16} {len(walked):>3}/{len(edges):<3} ({pct:5.1f}%)"
        if missing and verbose:
            line += "  not walked: " + ", ".join(f"{k}:{label}" for k, label in missing)
        print(line)
    uncovered = []
    if not args:  # the project's own suite must reach every flow in every locale
        for name, flow in sorted(project.flows.items()):
            for loc in flow.locales:
                if (name, loc) not in report.entered:
                    uncovered.append(f"{name} [{loc}]")
        if uncovered:
            print("\nflows no test runs in: " + ", ".join(uncovered))
    failed = report.failed + len(report.diagnostics) + len(uncovered)
    print(f"\n{report.passed} passed, {failed} failed")
    return 1 if failed else 0
