"""Draw a compiled flow as a Mermaid or Graphviz DOT diagram, for docs and review.

Nodes are steps (shape by kind: menus and asks, which wait for the shopper, are rounded), edges
carry their labels (`ok`, `not_found`, `case:shipped`, option ids); other flows, `end` and
`handoff` appear as terminal nodes.
"""

from __future__ import annotations

import re
from typing import assert_never

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
        case _:
            assert_never(step)


def _edges(flow: ir.Flow) -> list[tuple[str, str, str]]:
    """(from node, to node, label) including menu options that start other flows."""
    out: list[tuple[str, str, str]] = []
    for step, label, target in flow.edges():
        to = {ir.END: "END", ir.HANDOFF: "HANDOFF"}.get(target, _node_id(target))
        out.append((_node_id(step.key), to, "" if label == "next" else label))
    for step in flow.steps.values():
        if isinstance(step, ir.Menu):
            for o in step.options:
                if o.action == "flow" and o.value:
                    out.append((_node_id(step.key), "flow_" + o.value, f"option:{o.id}"))
        if isinstance(step, ir.Link):
            out.append((_node_id(step.key), "flow_" + step.flow, "link"))
    return out


def _label(s: str) -> str:
    return s.replace('"', "'").replace("<", "&lt;").replace(">", "&gt;")


def render_mermaid(flow: ir.Flow) -> str:
    loc = flow.default_locale
    lines = ["flowchart TD", f'  START(["{flow.name}"]) --> {_node_id(flow.start)}']
    for key, step in flow.steps.items():
        text = _label(key) + "<br/>" + _label(_summary(step, loc)).replace("#", "#35;")
        nid = _node_id(key)
        lines.append(f'  {nid}("{text}")' if step.waits else f'  {nid}["{text}"]')
    targets = set()
    for src, dst, label in _edges(flow):
        targets.add(dst)
        lines.append(f"  {src} -->|{_label(label)}| {dst}" if label else f"  {src} --> {dst}")
    if "END" in targets:
        lines.append('  END(["end"])')
    if "HANDOFF" in targets:
        lines.append('  HANDOFF{{"handoff to a person"}}')
    for t in sorted(t for t in targets if t.startswith("flow_")):
        lines.append(f'  {t}[["flow {t.removeprefix("flow_")}"]]')
    return "\n".join(lines)


def render_dot(flow: ir.Flow) -> str:
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
        text = _label(f"{key}\\n{_summary(step, loc)}")
        lines.append(f'  {_node_id(key)} [shape={shape}, label="{text}"];')
    targets = set()
    for src, dst, label in _edges(flow):
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


def render_graph(flow: ir.Flow, fmt: str = "mermaid") -> str:
    return render_dot(flow) if fmt == "dot" else render_mermaid(flow)
