"""Run an engine `CallAction` effect against a backend, with its timeout.

This is the shell's side of actions: whatever happens (a slow backend, an exception, a bug in an
action) the result is an `ActionResult` event for the engine, never an exception that kills the
session.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date

from ..engine import model as m
from .orders import ACTIONS, BackendError, OrderBackend

log = logging.getLogger("flowengine.actions")


async def perform(call: m.CallAction, backend: OrderBackend, today: date) -> m.ActionResult:
    function = ACTIONS.get(call.action)
    if function is None:
        log.error("unknown action %s", call.action)
        return m.ActionResult(call.call_id, "error", {"reason": "unknown_action"})
    try:
        outcome = await asyncio.wait_for(function(backend, call.args, today), call.timeout)
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
