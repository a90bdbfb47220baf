"""Run a conversation in this process: the engine plus a shell that performs its action effects.

Used by `flowengine chat`, `flowengine test` and the benchmarks. Handoffs are not performed here
(there is no agent queue in a terminal); they are returned for the caller to show or assert, and
the caller feeds the outcome back with `HandoffUpdate`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .actions.orders import OrderBackend
from .actions.registry import perform
from .engine import model as m
from .engine.step import start, step
from .language import ir

MAX_CHAINED_ACTIONS = 20


@dataclass
class Turn:
    """Everything one shopper action produced, actions included."""

    messages: list[m.Message] = field(default_factory=list)
    effects: list[m.Effect] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    visited: list[tuple[str, str, str]] = field(default_factory=list)
    error: m.EngineError | None = None

    def add(self, result: m.Result) -> None:
        self.messages.extend(result.messages)
        self.effects.extend(e for e in result.effects if not isinstance(e, m.CallAction))
        self.events.extend(result.events)
        self.visited.extend(result.visited)
        if result.error is not None:
            self.error = result.error


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
    ) -> None:
        self.project = project
        self.backend = backend
        self.locale = locale
        self.context = dict(context or {})
        self.today = today or date.today()
        self.clock = clock
        self.state: m.State | None = None
        # Actions to answer with the error exit, as an order system that is down would.
        self.failing_actions = failing_actions

    async def start(self, flow: str | None = None) -> Turn:
        result = start(
            self.project, now=self.clock(), locale=self.locale, context=self.context, flow=flow
        )
        return await self._settle(result)

    async def send(self, event: m.Event) -> Turn:
        assert self.state is not None, "start the conversation first"
        return await self._settle(step(self.project, self.state, event, self.clock()))

    async def _settle(self, result: m.Result) -> Turn:
        turn = Turn()
        for _ in range(MAX_CHAINED_ACTIONS):
            turn.add(result)
            self.state = result.state
            calls = [e for e in result.effects if isinstance(e, m.CallAction)]
            if not calls:
                break
            call = calls[0]
            if call.action in self.failing_actions:
                outcome = m.ActionResult(call.call_id, "error", {"reason": "backend"})
            else:
                outcome = await perform(call, self.backend, self.today)
            result = step(self.project, self.state, outcome, self.clock())
        return turn
