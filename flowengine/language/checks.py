"""Semantic checks over compiled flows. Each check is a small function that yields diagnostics.

Registered in `FLOW_CHECKS` (one flow at a time) and `PROJECT_CHECKS` (across flows), the way
linters register rules; `docs/flow-language.md` lists every code.

Each root cause is reported once: the flows that failed their own checks (`broken`) are still
known by name, and what they set is taken to be whatever their readers need, so a link to one
reports neither "does not exist" (E103) nor "may be unset" (E110) in every file that uses it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import fields
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, nodes

from ..intents import checks as intent_checks
from . import ir
from .diagnostics import Diagnostic, Position, Severity, did_you_mean
from .source import Document
from .templates import ENV
from .text import Text

# Variables every conversation has, filled from the session's context by the engine.
BUILTIN_VARIABLES = frozenset({"shopper", "page", "locale", "context", "handoff"})
TEXT_KEYS = frozenset({"say", "menu", "prompt", "label", "title", "retry"})
# Keys whose text is a condition or a value expression, not a template.
EXPRESSION_KEYS = frozenset({"if", "switch", "items"})
# What Jinja offers and flow templates do not have (templates.py leaves them out).
MISSING_GLOBALS = frozenset({"range", "lipsum", "cycler", "joiner", "namespace", "dict"})

# The longest text of each kind, in characters written outside `{{ }}` / `{% %}` tags
# (docs/flow-language.md, "Text length"). A button is one line on a phone.
BUTTON_LABEL_MAX = 40
TITLE_MAX = 60
MENU_TEXT_MAX = 600
MESSAGE_MAX = 1000
TEXT_LIMITS = {
    "label": ("a button label", BUTTON_LABEL_MAX),
    "choice": ("a button label", BUTTON_LABEL_MAX),
    "title": ("a title", TITLE_MAX),
    "menu": ("a menu text", MENU_TEXT_MAX),
    "say": ("a message", MESSAGE_MAX),
    "prompt": ("a message", MESSAGE_MAX),
    "retry": ("a message", MESSAGE_MAX),
}
_WORDS = re.compile(r"[^\W\d_]")
_TAGS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)

FlowCheck = Callable[[ir.Flow, ir.Project, frozenset[str]], Iterator[Diagnostic]]


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


def check_unreachable(
    flow: ir.Flow, project: ir.Project, broken: frozenset[str]
) -> Iterator[Diagnostic]:
    """E105: a step nothing leads to."""
    if any(t not in flow.steps and t not in ir.RESERVED_TARGETS for _, _, t in flow.edges()):
        return  # a target that does not exist (E104) may have been meant for any step
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


def check_flow_targets(
    flow: ir.Flow, project: ir.Project, broken: frozenset[str]
) -> Iterator[Diagnostic]:
    """E103: a menu option or link names a flow that does not exist (a broken one exists)."""
    for step in flow.steps.values():
        refs: list[tuple[str, tuple[Any, ...]]] = []
        if isinstance(step, ir.Link):
            refs.append((step.flow, (*step.path, "link")))
        elif isinstance(step, ir.Menu):
            refs.extend(
                (o.value or "", (*o.path, "flow")) for o in step.options if o.action == "flow"
            )
        for name, path in refs:
            if name not in project.flows and name not in broken:
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
def flow_exports(
    project: ir.Project, broken: frozenset[str] = frozenset()
) -> dict[str, frozenset[str]]:
    """Per flow, the variables set on every path that reaches its end (and so returns); a
    broken flow is taken to set every variable the project reads or sets."""
    out: dict[str, frozenset[str]] = {}
    if broken:
        everything = frozenset().union(
            *(
                step.reads() | step.assigns(label)
                for f in project.flows.values()
                for step in f.steps.values()
                for label in (*step.edges, "next")
            )
        )
        out.update(dict.fromkeys(broken, everything))

    def compute(name: str, visiting: frozenset[str]) -> frozenset[str]:
        if name in out:
            return out[name]
        flow = project.flows[name]
        children = {
            s.flow
            for s in flow.steps.values()
            if isinstance(s, ir.Link)
            and s.flow in project.flows
            and s.flow not in visiting
            and s.flow not in broken
        }
        exports = {c: compute(c, visiting | {name}) for c in children}
        exports.update((b, out[b]) for b in broken)
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


def check_unset_variables(
    flow: ir.Flow, project: ir.Project, broken: frozenset[str]
) -> Iterator[Diagnostic]:
    """E110: a template or condition reads a variable some path leaves unset."""
    known = definitely_set(flow, flow_exports(project, broken))
    live = reachable(flow)
    for key, step in flow.steps.items():
        if key not in live:
            continue
        for name in sorted(step.reads() - known[key] - MISSING_GLOBALS):  # E113 names those
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


# -- typed text: intents (flowengine.intents.checks) ---------------------------------------------


def check_intent_title(
    flow: ir.Flow, project: ir.Project, broken: frozenset[str]
) -> Iterator[Diagnostic]:
    """E122: a flow shoppers can start by typing has no name for a clarifying menu."""
    if flow.intents and flow.name not in project.intents.titles:
        yield _diag(
            flow,
            "E122",
            f"flow '{flow.name}' has intents but no title to offer it by in a clarifying menu",
            ("intents",),
            key=True,
            hint="give the flow a `title:` in every locale (or an option of the start flow's "
            "menu that leads to it)",
        )


def check_intents(project: ir.Project) -> Iterator[Diagnostic]:
    """W203 examples of two intents too close, W204 a locale without examples, W205 an example
    that starts another intent: checked on the flows' intents, and on each menu's options
    beside them (reporting only what involves an option there)."""
    flows = project.intents.flows
    places = _example_places(project)
    for flow in project.flows.values():
        for step in flow.steps.values():
            if isinstance(step, ir.Menu):
                for o in step.options:
                    for miss in intent_checks.missing_locales(
                        {o.id: o.intents} if o.intents else {}, flow.locales
                    ):
                        yield _missing_locale(flow, (*o.path, "intents"), f"option '{o.id}'", miss)
        if flow.intents:
            for miss in intent_checks.missing_locales({flow.name: flow.intents}, flow.locales):
                yield _missing_locale(flow, ("intents",), f"flow '{flow.name}'", miss)
    indexes = [(flows, False)] if flows is not None else []
    indexes += [(index, True) for index in project.intents.menus.values()]
    for index, options_only in indexes:
        for close in intent_checks.too_close(index):
            if options_only and not _any_option(close.intent, close.other):
                continue
            here = places.get((close.intent, close.locale, close.index))
            there = places.get((close.other, close.locale, close.other_index))
            if here is None or there is None:
                continue
            flow, path, text = here
            _, _, other_text = there
            yield _diag(
                flow,
                "W203",
                f"'{text}' ({_name(close.intent)}) and '{other_text}' ({_name(close.other)}) "
                f"are {close.score:.0%} alike: typed, either could start either",
                path,
                severity=Severity.WARNING,
                hint=f"the other is at {_where(there)}; reword one, or drop it",
            )
        for other in intent_checks.matches_other(index):
            if options_only and not _any_option(other.intent, other.other):
                continue
            here = places.get((other.intent, other.locale, other.index))
            if here is None:
                continue
            flow, path, text = here
            yield _diag(
                flow,
                "W205",
                f"'{text}' ({_name(other.intent)}) starts {_name(other.other)} when typed "
                f"({other.other_score:.2f}, its own {other.own_score:.2f})",
                path,
                severity=Severity.WARNING,
                hint="reword it with the words that set its own flow apart (the action, not only "
                "the object), or move it to the flow it fits",
            )


def _any_option(*intents: str) -> bool:
    return any(i.startswith(ir.OPTION_INTENT) for i in intents)


def _name(intent: str) -> str:
    kind, _, name = intent.partition(":")
    return f"flow '{name}'" if kind == "flow" else f"option '{name}'"


def _where(place: tuple[ir.Flow, tuple[Any, ...], str]) -> str:
    flow, path, _ = place
    pos = flow.source.value(path)
    return f"{flow.file}:{pos.line}:{pos.column}"


def _example_places(
    project: ir.Project,
) -> dict[tuple[str, str, int], tuple[ir.Flow, tuple[Any, ...], str]]:
    """(intent id, locale, index) -> the flow, the path and the text of that example."""
    out: dict[tuple[str, str, int], tuple[ir.Flow, tuple[Any, ...], str]] = {}

    def add(intent: str, flow: ir.Flow, base: tuple[Any, ...], examples: ir.Examples) -> None:
        for locale, phrases in examples.items():  # (a locale written `en-US` is placed at
            for i, text in enumerate(phrases):  # its `intents:`; lower case is the rule)
                out[(intent, locale, i)] = (flow, (*base, locale, i), text)

    for flow in project.flows.values():
        if flow.intents:
            add(f"{ir.FLOW_INTENT}{flow.name}", flow, ("intents",), flow.intents)
        for step in flow.steps.values():
            if isinstance(step, ir.Menu):
                for o in step.options:
                    if o.intents:
                        add(f"{ir.OPTION_INTENT}{o.id}", flow, (*o.path, "intents"), o.intents)
    return out


def _missing_locale(
    flow: ir.Flow, path: tuple[Any, ...], what: str, miss: intent_checks.MissingLocale
) -> Diagnostic:
    return _diag(
        flow,
        "W204",
        f"{what} has no examples in '{miss.locale}': text typed in it never reaches it",
        path,
        key=True,
        severity=Severity.WARNING,
        hint=f"add `{miss.locale}: [...]` with what shoppers write in that language",
    )


FLOW_CHECKS: tuple[FlowCheck, ...] = (
    check_unreachable,
    check_flow_targets,
    check_unset_variables,
    check_intent_title,
)


def _strings(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Every string of a document, with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))


def _text_kind(path: tuple[Any, ...]) -> str | None:
    """Which kind of shopper-facing text the string at `path` is (a key of TEXT_LIMITS)."""
    p = list(path)
    in_retry = len(p) >= 3 and isinstance(p[-2], int) and p[-3] == "retry"
    if len(p) >= 2 and isinstance(p[-1], str) and (p[-2] in TEXT_KEYS or in_retry):
        p.pop()  # the locale of a text map
    if p and p[-1] in TEXT_KEYS:
        return None if len(p) >= 2 and p[-2] == "choices_from" else str(p[-1])
    if len(p) >= 2 and isinstance(p[-1], int) and p[-2] in ("retry", "choices"):
        return "retry" if p[-2] == "retry" else "choice"
    return None


def _locate(flow: ir.Flow, path: tuple[Any, ...], needle: str) -> Position:
    """Where `needle` is written in the value at `path`: the template's own line and column."""
    start = flow.source.value(path)
    lines = flow.source.lines
    for number in range(start.line, min(len(lines), start.line + 200) + 1):
        line = lines[number - 1]
        at = line.find(needle, start.column - 1 if number == start.line else 0)
        if at >= 0:
            return Position(number, at + 1, len(needle))
    return start


def _template_problems(ast: nodes.Node, assigned: str | None) -> Iterator[tuple[str, str, str]]:
    """(message, the text to point at, hint) for what a template must not do."""
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        name = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value if isinstance(node.arg.value, str) else None
        if name is not None and name.startswith("_"):
            yield (
                f"'{name}' is private: a template reads the fields of a value, never names "
                "starting with '_'",
                name,
                "read the field you mean, e.g. {{ order.status }}",
            )
        if isinstance(node, nodes.Name) and node.name in MISSING_GLOBALS:
            yield (
                f"there is no '{node.name}' in flow templates",
                node.name,
                "templates show values the flow has; loop over a list with `choices_from`",
            )
    if assigned is None:
        return
    for op in ast.find_all((nodes.Concat, nodes.Add, nodes.Mul)):
        uses = [n for n in op.find_all(nodes.Name) if n.name == assigned]
        if len(uses) >= 2:
            yield (
                f"'{assigned}' is built from itself twice, so it doubles each time this runs",
                assigned,
                f"add to '{assigned}' once (`{assigned} ~ 'more'`), or build a new variable",
            )
            return


def check_template_safety(
    flow: ir.Flow, project: ir.Project, doc: Document
) -> Iterator[Diagnostic]:
    """E113: a template that reaches for private names (`__class__`, `_x`), for what flow
    templates lack (`range`), or that doubles a variable each time it runs; at the template's
    own line and column."""
    for path, text in _strings(doc.data, ()):
        key = next((k for k in reversed(path) if isinstance(k, str)), "")
        is_expression = bool(path) and path[-1] in EXPRESSION_KEYS
        if not is_expression and "{{" not in text and "{%" not in text:
            continue
        try:
            ast = ENV.parse("{{ (" + text + ") }}" if is_expression else text)
        except TemplateSyntaxError:
            continue  # the compiler reports it
        assigned = key if len(path) >= 2 and path[-2] == "set" else None
        for message, needle, hint in _template_problems(ast, assigned):
            yield Diagnostic(
                "E113",
                f"template error: {message}",
                flow.file,
                _locate(flow, path, needle),
                hint=hint,
            )


def check_text_lengths(flow: ir.Flow, project: ir.Project, doc: Document) -> Iterator[Diagnostic]:
    """E120: a text longer than its kind allows (TEXT_LIMITS)."""
    for path, text in _strings(doc.data, ()):
        kind = _text_kind(path)
        if kind is None:
            continue
        what, limit = TEXT_LIMITS[kind]
        length = len(_TAGS.sub("", text))
        if length > limit:
            yield _diag(
                flow,
                "E120",
                f"{what} is {length} characters long; at most {limit}",
                path,
                hint="shorten it; put the details in a message before it"
                if limit == BUTTON_LABEL_MAX
                else "split it into two steps",
            )


DocumentCheck = Callable[[ir.Flow, ir.Project, Document], Iterator[Diagnostic]]
DOCUMENT_CHECKS: tuple[DocumentCheck, ...] = (
    check_translations,
    check_template_safety,
    check_text_lengths,
)


def _texts(value: Any) -> Iterator[Text]:
    """The texts in a step's field: a text, or texts inside options, choices and lists."""
    if isinstance(value, Text):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, ir.Option | ir.Choice):
        yield value.label


def missing_translations(project: ir.Project) -> dict[tuple[str, str], list[str]]:
    """Per (flow, locale the flow declares), the steps whose text lacks that locale, in order.
    What `serve` logs at start and reload; `validate` says the same as W201 warnings."""
    out: dict[tuple[str, str], list[str]] = {}
    for name, flow in sorted(project.flows.items()):
        if len(flow.locales) < 2:
            continue
        # A flow without a title is titled by its name, which is no text to translate.
        untitled = flow.title.locales == {"*"} and flow.title.by_locale["*"].source == name
        titles = [] if untitled else [("title", flow.title)]
        for key, step in [*titles, *flow.steps.items()]:
            missing: set[str] = set()
            texts = (
                [step]
                if isinstance(step, Text)
                else [t for f in fields(step) for t in _texts(getattr(step, f.name))]
            )
            for text in texts:
                if "*" in text.locales:  # one text for all: words in it are in one language
                    if _WORDS.search(_TAGS.sub("", text.by_locale["*"].source)):
                        missing.update(flow.locales[1:])
                    continue
                missing.update(loc for loc in flow.locales if loc not in text.locales)
            for locale in sorted(missing, key=flow.locales.index):
                out.setdefault((name, locale), []).append(key)
    return out
