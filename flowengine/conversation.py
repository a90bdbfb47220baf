"""Run a conversation in this process: the engine plus the shared effect runner.

Used by `flowengine chat`, `flowengine test` and the benchmarks. Actions run against the order
backend as in production (`EffectRunner`, the same loop `flowengine serve` uses), and the
project's declared actions against the APIs they declare, unless a script answers them (tests);
handoffs have no agent queue here, so they are recorded in the `Turn` for the caller to show or
assert, and the caller plays the agent by sending `HandoffUpdate`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .actions.declared import DeclaredActions
from .actions.orders import OrderBackend
from .actions.perform import Answer, BackendActions, ScriptedActions, failing_script
from .effects import ActionPort, Decide, DeclaredPort, EffectRunner
from .engine import model as m
from .engine.step import start, step
from .language import ir


@dataclass
class Turn:
    """Everything one shopper action produced, actions included."""

    messages: list[m.Message] = field(default_factory=list)
    effects: list[m.Effect] = field(default_factory=list)  # what went to the handoff port
    events: list[dict[str, Any]] = field(default_factory=list)
    visited: list[tuple[str, str, str]] = field(default_factory=list)
    emitted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # webhooks
    error: m.EngineError | None = None

    def add(self, result: m.Result) -> None:
        self.messages.extend(result.messages)
        self.events.extend(result.events)
        self.visited.extend(result.visited)
        if result.error is not None:
            self.error = result.error


class _Recorder:
    """The handoff port of a conversation without an agent queue: it records what was asked."""

    def __init__(self) -> None:
        self.turn = Turn()

    async def request(self, sid: str, effect: m.RequestHandoff) -> tuple[m.Effect, ...]:
        self.turn.effects.append(effect)
        return ()

    async def cancel(self, sid: str) -> None:
        self.turn.effects.append(m.CancelHandoff())

    async def forward(self, sid: str, effect: m.ForwardToAgent) -> None:
        self.turn.effects.append(effect)

    async def emit(self, event: str, data: dict[str, Any]) -> None:
        self.turn.emitted.append((event, data))


class Conversation:
    def __init__(
        self,
        project: ir.Project,
        backend: OrderBackend,
        *,
        locale: str = "",
        context: Mapping[str, Any] | None = None,
        today: date | None = None,
        clock: Callable[[], float] = time.time,
        failing_actions: frozenset[str] = frozenset(),
        action_results: Mapping[str, Sequence[Answer]] | None = None,
        call_apis: bool = True,
    ) -> None:
        """`failing_actions`: actions that take their error exit (`name:throttled`: answer
        `throttled`); `action_results`: answers for the named actions, in turn. A declared
        action no script answers calls its API, or, without `call_apis`, takes its error exit
        and is listed in `unscripted`."""
        self.project = project
        self.locale = locale
        self.context = dict(context or {})
        self.clock = clock
        self.state: m.State | None = None
        day = today or date.today()
        self._handoffs = _Recorder()
        actions: ActionPort = BackendActions(backend, lambda: day)
        declared: DeclaredPort | None = DeclaredActions(self._project) if call_apis else None
        script = {**failing_script(failing_actions), **(action_results or {})}
        self._script: ScriptedActions | None = None
        if script or not call_apis:  # the script answers first, built-in and declared alike
            actions = declared = self._script = ScriptedActions(actions, script, declared)
        self._runner = EffectRunner(actions, self._handoffs, declared)

    async def _project(self, sid: str) -> ir.Project:
        return self.project

    @property
    def unscripted(self) -> list[str]:
        """Declared actions called with no answer scripted and no API to call, in order."""
        return self._script.unscripted if self._script is not None else []

    async def start(self, flow: str | None = None) -> Turn:
        result = start(
            self.project, now=self.clock(), locale=self.locale, context=self.context, flow=flow
        )
        return await self._settle(result)

    async def send(self, event: m.Event) -> Turn:
        assert self.state is not None, "start the conversation first"
        return await self._settle(step(self.project, self.state, event, self.clock()))

    async def _settle(self, result: m.Result) -> Turn:
        turn = self._handoffs.turn = Turn()
        turn.add(result)
        self.state = result.state
        await self._runner.run("local", result.effects, self._feed)
        return turn

    async def _feed(self, decide: Decide) -> tuple[m.Effect, ...]:
        assert self.state is not None
        event = decide(self.state)
        if event is None:
            return ()
        result = step(self.project, self.state, event, self.clock())
        self._handoffs.turn.add(result)
        self.state = result.state
        return result.effects
