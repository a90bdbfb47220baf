"""Running an engine `CallAction` against an order backend, within its timeout: the effect
runner's action port. Whatever happens (a slow backend, an exception, a bug in an action) the
result is an `ActionResult` for the engine, never an exception that kills the session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import date

from ..engine import model as m
from .orders import BackendError, OrderBackend
from .registry import ACTIONS, ActionSpec

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
        if spec is None:
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


class FailingActions:
    """Answers the named actions with the error exit, as an order system that is down would
    (conversation tests' `failing_actions`), and those named with the suffix `:throttled` as
    the order-check throttle does (`throttled_actions`); the rest go to `inner`."""

    def __init__(self, inner: BackendActions, failing: frozenset[str]) -> None:
        self.inner = inner
        self.failing = failing

    async def perform(self, call: m.CallAction, address: str | None = None) -> m.ActionResult:
        if call.action in self.failing:
            return m.ActionResult(call.call_id, "error", {"reason": "backend"})
        if call.action + THROTTLED in self.failing:
            return m.ActionResult(call.call_id, "throttled", None)
        return await self.inner.perform(call, address)
