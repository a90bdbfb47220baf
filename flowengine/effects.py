"""The one effect runner: performs what `engine.step` asked for and feeds the outcomes back.

Every shell uses it: `flowengine serve` (sessions over the store), `flowengine chat` and
`flowengine test` (a conversation in this process). Only the ports differ:

* `ActionPort` runs `CallAction` (the order backend, or one that fails on purpose in tests),
  told the client's address when the shell knows it (the order-check throttle counts by it;
  the engine never sees it);
* `DeclaredPort` runs calls of the actions a project declares (`actions:` in flowengine.yaml:
  HTTP requests, `actions/declared.py`, or scripted answers in tests), as declared by the flow
  version the session runs; they are not order checks, so the throttle never sees them;
* `HandoffPort` takes `RequestHandoff`, `CancelHandoff` and `ForwardToAgent` (the live queue in
  the server; a recorder in a terminal or a test, where the test itself plays the agent);
* `feed` applies the engine to the session's current state, wherever it lives, and returns the
  effects that step produced, which join the queue.

So `flowengine test` exercises the same effect loop as production.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, assert_never

from .actions.registry import ACTIONS
from .engine import model as m

# An engine run for `sid`: given the current state, the event to apply (None: nothing to do).
Decide = Callable[[m.State], m.Event | None]
Feed = Callable[[Decide], Awaitable[tuple[m.Effect, ...]]]

MAX_CHAINED_EFFECTS = 50  # a flow cannot call actions for ever (the validator's E111 backs this)


class ActionPort(Protocol):
    async def perform(self, call: m.CallAction, address: str | None = None) -> m.ActionResult: ...


class DeclaredPort(Protocol):
    async def perform_declared(self, sid: str, call: m.CallAction) -> m.ActionResult:
        """Run a call of an action declared by the project that session `sid` runs."""
        ...


class HandoffPort(Protocol):
    async def request(self, sid: str, effect: m.RequestHandoff) -> tuple[m.Effect, ...]:
        """Queue the chat for a person; the effects of any step this caused (an offline exit)."""
        ...

    async def cancel(self, sid: str) -> None: ...

    async def forward(self, sid: str, effect: m.ForwardToAgent) -> None: ...

    async def emit(self, event: str, data: dict[str, Any]) -> None:
        """An action's outcome worth telling the outside (`emits` in the action registry)."""
        ...


def answer(call: m.CallAction, result: m.ActionResult) -> Decide:
    """Deliver an action's result only to the state still waiting for that very call."""
    return lambda s: result if s.waiting == "action" and s.pending == call.call_id else None


class EffectRunner:
    def __init__(
        self, actions: ActionPort, handoffs: HandoffPort, declared: DeclaredPort | None = None
    ) -> None:
        """Without `declared`, a call of an action that is not built in answers `error`."""
        self.actions = actions
        self.handoffs = handoffs
        self.declared = declared

    async def run(
        self, sid: str, effects: Iterable[m.Effect], feed: Feed, address: str | None = None
    ) -> None:
        """Run `effects` in order, and the effects their outcomes cause, until none is left.
        `address`: the client whose action caused them (None: not a client's, or unknown)."""
        queue: deque[m.Effect] = deque(effects)
        for _ in range(MAX_CHAINED_EFFECTS):
            if not queue:
                return
            queue.extend(await self.run_one(sid, queue.popleft(), feed, address))
        raise RuntimeError(f"more than {MAX_CHAINED_EFFECTS} chained effects")

    async def run_one(
        self, sid: str, effect: m.Effect, feed: Feed, address: str | None = None
    ) -> tuple[m.Effect, ...]:
        match effect:
            case m.CallAction():
                if self.declared is not None and effect.action not in ACTIONS:
                    result = await self.declared.perform_declared(sid, effect)
                else:
                    result = await self.actions.perform(effect, address)
                spec = ACTIONS.get(effect.action)
                if spec is not None and spec.emits is not None and result.outcome == "ok":
                    event, key = spec.emits
                    await self.handoffs.emit(
                        event, {"session": sid, key: result.data, "request": effect.args}
                    )
                return await feed(answer(effect, result))
            case m.RequestHandoff():
                return await self.handoffs.request(sid, effect)
            case m.CancelHandoff():
                await self.handoffs.cancel(sid)
                return ()
            case m.ForwardToAgent():
                await self.handoffs.forward(sid, effect)
                return ()
            case _:
                assert_never(effect)
