"""Draw a compiled flow as a Mermaid or Graphviz DOT diagram, for docs and review.

Nodes are steps (shape by kind: menus and asks, which wait for the shopper, are rounded), edges
carry their labels (`ok`, `not_found`, `case:shipped`, option ids); other flows, `end` and
`handoff` appear as terminal nodes.
"""

from __future__ import annotations

import re
from typing import Any, assert_never

from .language import ir
from .language.text import Text


def _node_id(key: str) -> str:
    return "n_" + re.sub(r"[^A-Za-z0-9_]", "_", key)


def _summary(step: ir.AnyStep, locale: str) -> str:
    def first(text: Text) -> str:
        t, _ = text.pick((locale,))
        s = " ".join(t.source.split())
        return s if len(s) <= 40 else s[:37] + "..."

    match step:
        case ir.Say():
            return f"say: {first(step.text)}"
        case ir.Menu():
            return f"menu: {first(step.text)}"
        case ir.Ask():
            return f"ask {step.var}"
        case ir.Call():
            return f"call {step.action}"
        case ir.Switch():
            return f"switch {step.subject.source if step.subject else ''}"
        case ir.If():
            return f"if {step.condition.source if step.condition else ''}"
        case ir.Set():
            return "set " + ", ".join(step.values)
        case ir.Link():
            return f"link {step.flow}"
        case ir.Handoff():
            return f"handoff {step.spec.queue or ''}"
        case ir.End():
            return f"end: {step.resolution}"
        case ir.Goto():
            return step.kind
        case ir.Csat():
            return f"csat {step.scale}"
        case _:
            assert_never(step)


def flow_edges(flow: ir.Flow) -> list[tuple[str, str, str]]:
    """(from step, to, label) of every edge, including menu options that start other flows and
    links: `to` is a step key, `end`, `handoff` or `flow:<name>`; the label is "" for `next`."""
    out: list[tuple[str, str, str]] = []
    for step, label, target in flow.edges():
        out.append((step.key, target, "" if label == "next" else label))
    for step in flow.steps.values():
        if isinstance(step, ir.Menu):
            for o in step.options:
                if o.action == "flow" and o.value:
                    out.append((step.key, "flow:" + o.value, f"option:{o.id}"))
        if isinstance(step, ir.Link):
            out.append((step.key, "flow:" + step.flow, "link"))
    return out


def _target_id(target: str) -> str:
    if target in (ir.END, ir.HANDOFF):
        return target.upper()
    if target.startswith("flow:"):
        return "flow_" + target.removeprefix("flow:")
    return _node_id(target)


def _edges(flow: ir.Flow) -> list[tuple[str, str, str]]:
    """(from node, to node, label), as drawn."""
    return [(_node_id(a), _target_id(b), label) for a, b, label in flow_edges(flow)]


def _label(s: str) -> str:
    return s.replace('"', "'").replace("<", "&lt;").replace(">", "&gt;")


class _Paint:
    """A funnel (`Insights.funnel`) laid over the drawing: entries and drop-offs per step, how
    often each edge was taken, the heaviest drop-offs highlighted. Empty: the plain graph."""

    def __init__(self, funnel: dict[str, Any] | None) -> None:
        self.steps = {s["step"]: s for s in (funnel or {}).get("steps", [])}
        self.edges = {
            (e["from"], e["to"], e["label"]): e["count"] for e in (funnel or {}).get("edges", [])
        }
        self.heaviest = set((funnel or {}).get("heaviest", []))
        self.on = funnel is not None

    def node(self, key: str) -> str:
        """The line of figures under a step's name ("" unpainted)."""
        s = self.steps.get(key)
        if not self.on or s is None:
            return ""
        rate = s.get("drop_rate")
        share = f" ({round(rate * 100)}%)" if rate is not None else ""
        return f"{s['entered']} in, {s['dropped']} dropped{share}"

    def edge(self, src: str, dst: str, label: str) -> str:
        if not self.on:
            return label
        count = self.edges.get((src, dst, label), 0)
        return f"{label}: {count}" if label else str(count)


def render_mermaid(flow: ir.Flow, funnel: dict[str, Any] | None = None) -> str:
    paint = _Paint(funnel)
    loc = flow.default_locale
    lines = ["flowchart TD", f'  START(["{flow.name}"]) --> {_node_id(flow.start)}']
    for key, step in flow.steps.items():
        text = _label(key) + "<br/>" + _label(_summary(step, loc)).replace("#", "#35;")
        if figures := paint.node(key):
            text += "<br/>" + _label(figures).replace("%", "#37;")
        nid = _node_id(key)
        lines.append(f'  {nid}("{text}")' if step.waits else f'  {nid}["{text}"]')
    targets = set()
    for (src, dst, label), (a, b) in zip(_edges(flow), _edge_keys(flow), strict=True):
        label = paint.edge(a, b, label)
        targets.add(dst)
        lines.append(f"  {src} -->|{_label(label)}| {dst}" if label else f"  {src} --> {dst}")
    if "END" in targets:
        lines.append('  END(["end"])')
    if "HANDOFF" in targets:
        lines.append('  HANDOFF{{"handoff to a person"}}')
    for t in sorted(t for t in targets if t.startswith("flow_")):
        lines.append(f'  {t}[["flow {t.removeprefix("flow_")}"]]')
    heavy = [_node_id(k) for k in flow.steps if k in paint.heaviest]
    if heavy:
        lines.append("  classDef heaviest fill:#fde2e2,stroke:#c0392b,stroke-width:3px")
        lines.append(f"  class {','.join(heavy)} heaviest")
    return "\n".join(lines)


def render_dot(flow: ir.Flow, funnel: dict[str, Any] | None = None) -> str:
    paint = _Paint(funnel)
    loc = flow.default_locale
    lines = [
        f'digraph "{flow.name}" {{',
        "  rankdir=TB;",
        '  node [fontname="Helvetica"];',
        f'  START [shape=oval, label="{flow.name}"];',
        f"  START -> {_node_id(flow.start)};",
    ]
    for key, step in flow.steps.items():
        shape = "box, style=rounded" if step.waits else "box"
        figures = paint.node(key)
        text = _label(f"{key}\\n{_summary(step, loc)}" + (f"\\n{figures}" if figures else ""))
        if key in paint.heaviest:
            style = "rounded,filled" if step.waits else "filled"
            shape = f'box, style="{style}", fillcolor="#fde2e2", color="#c0392b", penwidth=3'
        lines.append(f'  {_node_id(key)} [shape={shape}, label="{text}"];')
    targets = set()
    for (src, dst, label), (a, b) in zip(_edges(flow), _edge_keys(flow), strict=True):
        label = paint.edge(a, b, label)
        targets.add(dst)
        lines.append(f"  {src} -> {dst}" + (f' [label="{_label(label)}"];' if label else ";"))
    if "END" in targets:
        lines.append('  END [shape=doublecircle, label="end"];')
    if "HANDOFF" in targets:
        lines.append('  HANDOFF [shape=hexagon, label="handoff"];')
    for t in sorted(t for t in targets if t.startswith("flow_")):
        lines.append(f'  {t} [shape=component, label="flow {t.removeprefix("flow_")}"];')
    lines.append("}")
    return "\n".join(lines)


def _edge_keys(flow: ir.Flow) -> list[tuple[str, str]]:
    return [(a, b) for a, b, _ in flow_edges(flow)]


def render_graph(flow: ir.Flow, fmt: str = "mermaid", funnel: dict[str, Any] | None = None) -> str:
    """The flow drawn; with a funnel (`Insights.funnel` of this flow), painted with it."""
    return render_dot(flow, funnel) if fmt == "dot" else render_mermaid(flow, funnel)
