"""Semantic checks over compiled flows. Each check is a small function that yields diagnostics.

Registered in `FLOW_CHECKS` (one flow at a time) and `PROJECT_CHECKS` (across flows), the way
linters register rules; `docs/flow-language.md` lists every code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from . import ir
from .diagnostics import Diagnostic, Severity, did_you_mean
from .source import Document

# Variables every conversation has, filled from the session's context by the engine.
BUILTIN_VARIABLES = frozenset({"shopper", "page", "locale", "context", "handoff"})
TEXT_KEYS = frozenset({"say", "menu", "prompt", "label", "title", "retry"})

FlowCheck = Callable[[ir.Flow, ir.Project], Iterator[Diagnostic]]


def _diag(
    flow: ir.Flow,
    code: str,
    message: str,
    path: tuple[Any, ...],
    *,
    key: bool = False,
    hint: str | None = None,
    severity: Severity = Severity.ERROR,
) -> Diagnostic:
    pos = flow.source.key(path) if key else flow.source.value(path)
    return Diagnostic(code, message, flow.file, pos, severity, hint)


def reachable(flow: ir.Flow) -> set[str]:
    seen: set[str] = set()
    todo = [flow.start]
    while todo:
        key = todo.pop()
        if key in seen or key not in flow.steps:
            continue
        seen.add(key)
        todo.extend(flow.steps[key].edges.values())
    return seen


def check_unreachable(flow: ir.Flow, project: ir.Project) -> Iterator[Diagnostic]:
    """E105: a step nothing leads to."""
    live = reachable(flow)
    for key, step in flow.steps.items():
        if key not in live and len(step.path) == 2:  # inline steps follow their parent
            yield _diag(
                flow,
                "E105",
                f"step '{key}' can never be reached",
                step.path,
                hint="point a `next`, `goto`, option or branch at it, or delete it",
            )


def check_flow_targets(flow: ir.Flow, project: ir.Project) -> Iterator[Diagnostic]:
    """E103: a menu option or link names a flow that does not exist."""
    for step in flow.steps.values():
        refs: list[tuple[str, tuple[Any, ...]]] = []
        if isinstance(step, ir.Link):
            refs.append((step.flow, (*step.path, "link")))
        elif isinstance(step, ir.Menu):
            refs.extend(
                (o.value or "", (*o.path, "flow")) for o in step.options if o.action == "flow"
            )
        for name, path in refs:
            if name not in project.flows:
                yield _diag(
                    flow,
                    "E103",
                    f"flow '{name}' does not exist",
                    path,
                    hint=did_you_mean(name, project.flows)
                    or "flows: " + ", ".join(sorted(project.flows)),
                )


def definitely_set(
    flow: ir.Flow, exports: dict[str, frozenset[str]] | None = None
) -> dict[str, frozenset[str]]:
    """For each step, the variables set on every path from the flow's start to it.

    `exports` gives, per flow, what it sets on every path to its end: after `link: x` returns,
    those are set too.
    """
    exports = exports or {}

    def assigns(step: ir.Step, label: str) -> frozenset[str]:
        if isinstance(step, ir.Link) and label == "next":
            return exports.get(step.flow, frozenset())
        return step.assigns(label)

    universe = set(BUILTIN_VARIABLES)
    for step in flow.steps.values():
        for label in step.edges:
            universe |= assigns(step, label)
    top = frozenset(universe)
    known: dict[str, frozenset[str]] = {k: top for k in flow.steps}
    known[flow.start] = BUILTIN_VARIABLES
    incoming: dict[str, list[tuple[ir.Step, str]]] = {k: [] for k in flow.steps}
    for step, label, target in flow.edges():
        if target in incoming:
            incoming[target].append((step, label))
    live = reachable(flow)
    changed = True
    while changed:
        changed = False
        for key in flow.steps:
            if key not in live:
                continue
            sets = [known[s.key] | assigns(s, label) for s, label in incoming[key] if s.key in live]
            new = frozenset.intersection(*sets) if sets else frozenset()
            if key == flow.start:
                new = BUILTIN_VARIABLES
            if new != known[key]:
                known[key] = new
                changed = True
    return known


@lru_cache(maxsize=8)
def flow_exports(project: ir.Project) -> dict[str, frozenset[str]]:
    """Per flow, the variables set on every path that reaches its end (and so returns)."""
    out: dict[str, frozenset[str]] = {}

    def compute(name: str, visiting: frozenset[str]) -> frozenset[str]:
        if name in out:
            return out[name]
        flow = project.flows[name]
        children = {
            s.flow
            for s in flow.steps.values()
            if isinstance(s, ir.Link) and s.flow in project.flows and s.flow not in visiting
        }
        exports = {c: compute(c, visiting | {name}) for c in children}
        known = definitely_set(flow, exports)
        live = reachable(flow)
        ends = [
            known[s.key]
            | (
                exports.get(s.flow, frozenset())
                if isinstance(s, ir.Link) and label == "next"
                else s.assigns(label)
            )
            for s, label, target in flow.edges()
            if target == ir.END and s.key in live
        ]
        ends += [
            known[s.key] for s in flow.steps.values() if isinstance(s, ir.End) and s.key in live
        ]
        result = frozenset.intersection(*ends) - BUILTIN_VARIABLES if ends else frozenset()
        out[name] = result
        return result

    for name in project.flows:
        compute(name, frozenset())
    return out


def check_unset_variables(flow: ir.Flow, project: ir.Project) -> Iterator[Diagnostic]:
    """E110: a template or condition reads a variable some path leaves unset."""
    known = definitely_set(flow, flow_exports(project))
    live = reachable(flow)
    for key, step in flow.steps.items():
        if key not in live:
            continue
        for name in sorted(step.reads() - known[key]):
            yield _diag(
                flow,
                "E110",
                f"step '{key}' uses '{name}', which may be unset when this step runs",
                step.path,
                hint=f"set '{name}' on every path to this step (an `ask`, `call ... save_as` "
                f"or `set`), or guard it with `if: {name} is defined`",
            )


def check_translations(flow: ir.Flow, project: ir.Project, doc: Document) -> Iterator[Diagnostic]:
    """W201: text missing a locale the flow declares."""
    declared = list(flow.locales)
    if len(declared) < 2:
        return

    def walk(value: Any, path: tuple[Any, ...], text_key: bool) -> Iterator[Diagnostic]:
        if text_key:
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                p = (*path, i) if isinstance(value, list) else path
                if isinstance(item, str):
                    if re.search(r"[^\W\d_]", re.sub(r"\{\{.*?\}\}|\{%.*?%\}", "", item)):
                        yield _diag(
                            flow,
                            "W201",
                            "text has no translations",
                            p,
                            severity=Severity.WARNING,
                            hint="write it as a map: {"
                            + ", ".join(f"{loc}: ..." for loc in declared)
                            + "}",
                        )
                elif isinstance(item, dict):
                    have = {k.lower() for k in item}
                    missing = [loc for loc in declared if loc not in have]
                    if missing:
                        yield _diag(
                            flow,
                            "W201",
                            "missing translation for " + ", ".join(missing),
                            p,
                            severity=Severity.WARNING,
                            hint=f"the flow declares the locales {', '.join(declared)}",
                        )
            return
        if isinstance(value, dict):
            for k, v in value.items():
                if k in ("with", "set", "switch", "if", "cases"):
                    if k == "cases":
                        for case, branch in v.items():
                            yield from walk(branch, (*path, k, case), False)
                    continue
                yield from walk(v, (*path, k), k in TEXT_KEYS and not _is_template_key(path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from walk(v, (*path, i), False)

    yield from walk(doc.data, (), False)


def _is_template_key(path: tuple[Any, ...], key: str) -> bool:
    # `choices_from.label` is a per-item template, not shopper-facing text with translations.
    return key == "label" and bool(path) and path[-1] == "choices_from"


def _always_waits(project: ir.Project) -> dict[str, bool]:
    """Does every path from a flow's start to its end stop to wait for the shopper?"""
    result: dict[str, bool] = {}

    def waits(name: str, visiting: frozenset[str]) -> bool:
        if name in result:
            return result[name]
        flow = project.flows.get(name)
        if flow is None or name in visiting:
            return True
        todo, seen, reaches_end = [flow.start], set(), False
        while todo and not reaches_end:
            key = todo.pop()
            if key == ir.END:
                reaches_end = True
            if key in seen or key not in flow.steps:
                continue
            seen.add(key)
            step = flow.steps[key]
            if step.waits or (isinstance(step, ir.Link) and waits(step.flow, visiting | {name})):
                continue
            if isinstance(step, ir.End):
                reaches_end = True
            todo.extend(step.edges.values())
        result[name] = not reaches_end
        return result[name]

    for name in project.flows:
        waits(name, frozenset())
    return result


def check_busy_loops(project: ir.Project) -> Iterator[Diagnostic]:
    """E111: a cycle of steps none of which waits for the shopper."""
    waits = _always_waits(project)
    nodes: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for flow in project.flows.values():
        for key, step in flow.steps.items():
            if step.waits or (isinstance(step, ir.Link) and waits.get(step.flow, True)):
                continue
            succ = [(flow.name, t) for t in step.edges.values() if t in flow.steps]
            if isinstance(step, ir.Link) and step.flow in project.flows:
                succ.append((step.flow, project.flows[step.flow].start))
            nodes[(flow.name, key)] = succ
    for component in _cycles(nodes):
        first = min(component, key=lambda n: (n[0], project.flows[n[0]].steps[n[1]].path))
        flow = project.flows[first[0]]
        ring = " -> ".join(k for _, k in sorted(component)) + f" -> {sorted(component)[0][1]}"
        yield _diag(
            flow,
            "E111",
            f"steps loop without ever waiting for the shopper: {ring}",
            flow.steps[first[1]].path,
            hint="put a menu or an ask in the loop, or give it a way out",
        )


def _cycles(graph: dict[tuple[str, str], list[tuple[str, str]]]) -> list[list[tuple[str, str]]]:
    """Strongly connected components with a cycle (Tarjan's algorithm, iterative)."""
    index: dict[tuple[str, str], int] = {}
    low: dict[tuple[str, str], int] = {}
    stack: list[tuple[str, str]] = []
    on_stack: set[tuple[str, str]] = set()
    out: list[list[tuple[str, str]]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            succ = [s for s in graph.get(node, []) if s in graph]
            if i < len(succ):
                work.append((node, i + 1))
                nxt = succ[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    n = stack.pop()
                    on_stack.discard(n)
                    comp.append(n)
                    if n == node:
                        break
                if len(comp) > 1 or node in graph.get(node, []):
                    out.append(comp)
    return out


FLOW_CHECKS: tuple[FlowCheck, ...] = (check_unreachable, check_flow_targets, check_unset_variables)
