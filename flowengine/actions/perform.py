"""Running an engine `CallAction` against an order backend, within its timeout: the effect
runner's action port. Whatever happens (a slow backend, an exception, a bug in an action) the
result is an `ActionResult` for the engine, never an exception that kills the session.

`ScriptedActions` answers from a conversation test's script instead, for built-in and declared
actions alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from ..engine import model as m
from .orders import BackendError, OrderBackend
from .registry import ACTIONS, ActionSpec

if TYPE_CHECKING:
    from ..effects import ActionPort, DeclaredPort

log = logging.getLogger("flowengine.actions")


class BackendActions:
    """Runs `CallAction` effects against an order backend, each within its timeout."""

    def __init__(
        self,
        backend: OrderBackend,
        today: Callable[[], date] = date.today,
        registry: Mapping[str, ActionSpec] = ACTIONS,
    ) -> None:
        self.backend = backend
        self.today = today
        self.registry = registry

    async def perform(self, call: m.CallAction, address: str | None = None) -> m.ActionResult:
        """Run `call`; `address` (the client's, when known) is for the throttle around this."""
        spec = self.registry.get(call.action)
        if spec is None or spec.run is None:
            log.error("unknown action %s", call.action)
            return m.ActionResult(call.call_id, "error", {"reason": "unknown_action"})
        try:
            outcome = await asyncio.wait_for(
                spec.run(self.backend, call.args, self.today()), call.timeout
            )
        except TimeoutError:
            log.warning("action %s timed out after %.1fs", call.action, call.timeout)
            return m.ActionResult(call.call_id, "error", {"reason": "timeout"})
        except BackendError as exc:
            log.warning("action %s failed: %s", call.action, exc)
            return m.ActionResult(call.call_id, "error", {"reason": "backend"})
        except Exception:  # an action bug must not end the conversation
            log.exception("action %s raised", call.action)
            return m.ActionResult(call.call_id, "error", {"reason": "internal"})
        return m.ActionResult(call.call_id, outcome.outcome, outcome.data)


THROTTLED = ":throttled"  # `orders.lookup:throttled` in `failing`: answer as the throttle does

Outcome = Literal["ok", "not_found", "error", "throttled"]


@dataclass(frozen=True, slots=True)
class Answer:
    """What a conversation test says an action answers."""

    outcome: Outcome
    data: Any = None


def failing_script(failing: Iterable[str]) -> dict[str, list[Answer]]:
    """Conversation tests' `failing_actions` as a script: each named action takes its error exit,
    as an order system that is down would; one named with the suffix `:throttled` answers as the
    order-check throttle does (`throttled_actions`)."""
    script: dict[str, list[Answer]] = {}
    for name in failing:
        if name.endswith(THROTTLED):
            script[name.removesuffix(THROTTLED)] = [Answer("throttled")]
        else:
            script[name] = [Answer("error", {"reason": "backend"})]
    return script


class ScriptedActions:
    """Answers the calls of the actions `script` names, each with its answers in turn (the last
    one repeats), for conversation tests (`action_results`, `failing_actions`,
    `throttled_actions`). Other built-in actions go to `inner`; other declared ones to
    `declared`, or, without one, take the error exit and are listed in `unscripted` (a test
    never calls a merchant's API: it says what the API answers)."""

    def __init__(
        self,
        inner: ActionPort,
        script: Mapping[str, Sequence[Answer]],
        declared: DeclaredPort | None = None,
    ) -> None:
        self.inner = inner
        self.script = script
        self.declared = declared
        self.calls: dict[str, int] = {}
        self.unscripted: list[str] = []

    def _answer(self, call: m.CallAction) -> m.ActionResult | None:
        answers = self.script.get(call.action)
        if not answers:
            return None
        n = self.calls[call.action] = self.calls.get(call.action, 0) + 1
        answer = answers[min(n, len(answers)) - 1]
        return m.ActionResult(call.call_id, answer.outcome, answer.data)

    async def perform(self, call: m.CallAction, address: str | None = None) -> m.ActionResult:
        return self._answer(call) or await self.inner.perform(call, address)

    async def perform_declared(self, sid: str, call: m.CallAction) -> m.ActionResult:
        answer = self._answer(call)
        if answer is not None:
            return answer
        if self.declared is not None:
            return await self.declared.perform_declared(sid, call)
        self.unscripted.append(call.action)
        return m.ActionResult(call.call_id, "error", {"reason": "not_scripted"})
