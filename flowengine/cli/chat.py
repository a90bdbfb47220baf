"""`flowengine chat`: talk to the flows in a terminal, against the demo order backend.

Options are numbered: type the number (or the label) to click. `/person` asks for a person,
`/restart` starts over, `/agent OUTCOME` plays the agent's side (assigned, offline, timeout,
closed, handed_back), `/vars` shows what the flow collected, `/quit` leaves.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import date

from ..actions.demo_backend import DemoBackend
from ..conversation import Conversation, Turn
from ..engine import model as m
from ..language import load_project

AGENT_OUTCOMES: dict[str, m.HandoffOutcome] = {o: o for o in m.HANDOFF_OUTCOMES}


def _show(turn: Turn, conv: Conversation) -> None:
    for msg in turn.messages:
        if msg.sender == "shopper":
            continue
        who = "bot" if msg.sender == "bot" else "--"
        print(f"{who}> {msg.text}")
        for i, o in enumerate(msg.options, 1):
            suffix = f"  ({o['url']})" if "url" in o else ""
            print(f"     [{i}] {o['label']}{suffix}")
    for e in turn.effects:
        if isinstance(e, m.RequestHandoff):
            print(
                f"--  handoff to queue '{e.queue}' (priority {e.priority}, reason {e.reason!r});"
                " play the agent with /agent assigned|offline|timeout|closed|handed_back"
            )
    if turn.error is not None:
        print(f"!!  {turn.error.message} [{turn.error.code}]")
    if conv.state is not None and conv.state.waiting == "ended":
        print(f"--  conversation ended ({conv.state.resolution}); /restart to start over")


def _event(line: str, state: m.State) -> m.Event | None:
    if line.isdigit() and state.options and 1 <= int(line) <= len(state.options):
        return m.Choose(state.options[int(line) - 1][0])
    return m.Text(line)


async def _loop(conv: Conversation, flow: str | None) -> int:
    _show(await conv.start(flow), conv)
    while True:
        try:
            line = await asyncio.to_thread(input, "you> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        line = line.strip()
        if not line:
            continue
        assert conv.state is not None
        if line in ("/quit", "/exit"):
            return 0
        if line == "/vars":
            print(json.dumps(conv.state.vars, indent=2, ensure_ascii=False, default=str))
            continue
        if line == "/person":
            event: m.Event | None = m.AskForPerson()
        elif line == "/restart":
            event = m.Restart()
        elif line.startswith("/agent"):
            outcome = AGENT_OUTCOMES.get(line.removeprefix("/agent").strip())
            if outcome is None:
                print("!!  /agent takes one of: " + ", ".join(AGENT_OUTCOMES))
                continue
            event = m.HandoffUpdate(outcome)
        else:
            event = _event(line, conv.state)
        if event is not None:
            _show(await conv.send(event), conv)


def run_chat(*, flows_dir: str, flow: str | None, locale: str) -> int:
    loaded = load_project([flows_dir])
    if not loaded.ok or loaded.project is None:
        print(loaded.render(include_warnings=False), file=sys.stderr)
        return 1
    project = loaded.project
    if flow is not None and flow not in project.flows:
        print(f"no flow '{flow}'; flows: {', '.join(sorted(project.flows))}", file=sys.stderr)
        return 2
    today = date.today()
    conv = Conversation(project, DemoBackend(today), locale=locale, today=today)
    print("flowengine chat: numbers click options; /person /restart /agent /vars /quit")
    return asyncio.run(_loop(conv, flow))
