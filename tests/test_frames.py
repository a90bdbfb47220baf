"""The wire vocabulary is defined once (flowengine/frames.py) and docs/protocol.md says the same.

Every JSON example in the protocol doc is checked against `frames.SHAPES` (its type exists in
that section's channel and direction, and it carries no field the shape does not know), every
shape is shown in the doc, and every constructor builds exactly its shape.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from flowengine import frames
from flowengine.engine import model as m

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"

# Which (channel, direction)s a section's examples may be: a section's heading decides.
SECTIONS = {
    "Opening": [("shopper", "in"), ("shopper", "out")],
    "Events (persisted, numbered)": [("transcript", "out")],
    "Actions (client → server)": [("shopper", "in"), ("shopper", "out")],
    "One message per answer: `batch`": [("shopper", "out")],
    "Errors": [("shopper", "out")],
    "Agent socket: `GET /agent/ws`": [("agent", "in"), ("agent", "out"), ("transcript", "out")],
    "What the shopper sees": [("transcript", "out"), ("shopper", "out")],
}


def _examples() -> list[tuple[str, dict[str, Any]]]:
    """(section, frame) for every JSON object in a ```json block or a table cell's `{...}`."""
    out: list[tuple[str, dict[str, Any]]] = []
    section = ""
    in_json = False
    buffer: list[str] = []
    for line in DOC.read_text("utf-8").splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        if line.startswith("```json"):
            in_json, buffer = True, []
            continue
        if in_json and line.startswith("```"):
            in_json = False
            for obj in _objects("\n".join(buffer)):
                out.append((section, obj))
            continue
        if in_json:
            buffer.append(line)
        elif line.startswith("|") and '{"type"' in line:
            for cell in re.findall(r"`(\{\"type\".*?\})`", line):
                out.append((section, _loose(cell)))
    return out


def _objects(text: str) -> list[dict[str, Any]]:
    """The top-level JSON objects in a block (one per line or spread over lines)."""
    objs, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "{":
            depth, start = depth + 1, (i if depth == 0 else start)
        elif ch == "}":
            depth -= 1
            if depth == 0:
                objs.append(_loose(text[start : i + 1]))
    return objs


def _loose(text: str) -> dict[str, Any]:
    """Table cells abbreviate (`{"type":"queue","waiting":[record…],...}`, `"a"|"b"`): keep
    the keys, which is what is checked."""
    try:
        parsed: dict[str, Any] = json.loads(text)
        return parsed
    except ValueError:
        pass
    items, depth, current = [], 0, ""
    for ch in text[1:-1]:  # split the top level at its commas
        depth += (ch in "{[" and 1) or (ch in "}]" and -1) or 0
        if ch == "," and depth == 0:
            current = ""
        else:
            current += ch
    items = [i for i in [*items, current] if i.strip() not in ("…", "...")]
    keys = [re.match(r'\s*"([a-z_]+)"', item) for item in items]
    kind = re.search(r'"type"\s*:\s*"([a-z_]+)"', text)
    assert kind and all(keys), text
    return {**{k.group(1): None for k in keys if k}, "type": kind.group(1)}


EXAMPLES = _examples()


def test_the_doc_has_examples_in_every_section() -> None:
    assert {s for s, _ in EXAMPLES} >= set(SECTIONS)


@pytest.mark.parametrize(("section", "frame"), EXAMPLES, ids=lambda v: str(v)[:40])
def test_every_example_in_the_doc_is_a_known_shape(section: str, frame: dict[str, Any]) -> None:
    if section not in SECTIONS:
        return
    shapes = [frames.SHAPES.get((c, d, frame["type"])) for c, d in SECTIONS[section]]
    known = [s for s in shapes if s is not None]
    assert known, f"{frame['type']!r} is no frame of {SECTIONS[section]}"
    extra = [set(frame) - s.fields for s in known]
    assert min(extra, key=len) == set(), f"{frame['type']}: unknown fields {extra}"


def test_every_shape_is_documented() -> None:
    shown = {(c, d, f["type"]) for s, f in EXAMPLES if s in SECTIONS for c, d in SECTIONS[s]}
    missing = [k for k in frames.SHAPES if k not in shown]
    assert missing == []


def _check(channel: str, direction: str, frame: frames.Frame) -> None:
    shape = frames.SHAPES[(channel, direction, frame["type"])]
    assert shape.required <= set(frame) <= shape.fields, (frame, shape)
    assert json.loads(json.dumps(frame)) == frame  # JSON as it is


def test_every_constructor_builds_its_shape() -> None:
    stored = frames.number(
        [
            frames.from_engine(m.Message("bot", "Hi", ({"id": "a", "label": "A"},), None)),
            frames.agent_message("Alice", "Hello"),
            frames.handoff_queued("orders", 1),
            frames.handoff_assigned("Alice"),
            frames.handoff_offline("orders", "no_agent"),
            frames.handoff_closed("shopper"),
            frames.handoff_closed("agent", "Alice"),
            frames.handoff_handed_back("Alice"),
            frames.ended("resolved"),
        ],
        after_seq=4,
        now=1.5,
    )
    assert [e["seq"] for e in stored] == list(range(5, 14))
    for e in stored:
        _check("transcript", "out", e)
    for f in (
        frames.session("s" * 24, resumed=False, expired=False),
        frames.ack("c1", 3, duplicate=False),
        frames.error("bad_json", "frames are JSON objects"),
        frames.error("unknown_option", "no", "c1"),
        frames.pong(),
        frames.agent_typing(),
        frames.batch([stored[0], frames.ack("c1", 5, duplicate=False)]),
    ):
        _check("shopper", "out", f)
    for f in (
        frames.welcome({"username": "a"}, ["general"], [{"title": "Hi", "text": "Hi!"}], "pull"),
        frames.queue([], [], 1.0),
        frames.chat("s" * 24, {"transcript": []}, [], None),
        frames.event("s" * 24, stored[0]),
        frames.shopper_typing("s" * 24),
        frames.note("s" * 24, {"agent": "Alice", "text": "x", "at": 1.0}),
        frames.agent_ack("g1"),
        frames.error("not_yours", "no", "g1"),
        frames.pong(),
    ):
        _check("agent", "out", f)


def test_an_engine_result_becomes_notices_then_messages_then_ended() -> None:
    before = m.State(version="v", locale="en", waiting="click")
    after = m.State(version="v", locale="en", waiting="ended", resolution="resolved")
    result = m.Result(after, messages=(m.Message("bot", "Bye"),))
    events = frames.transcript(result, before, (frames.handoff_assigned("Alice"),))
    assert [e["type"] for e in events] == ["handoff", "message", "ended"]
    assert events[-1]["resolution"] == "resolved"
