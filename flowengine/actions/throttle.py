"""The order-check throttle: how many wrong number/email pairs a client may try.

A failed verification is an order check (an action the registry marks `verifies`:
`orders.lookup`, `orders.cancel`, `returns.check`, `returns.create`) answered `not_found`, which
a wrong email and an unknown number give alike. Failures are counted in the store, so every
instance agrees, under two keys: the order number (normalised as the `order_number` validator
does) and the client's address, when the shell knows it (the shopper socket does; an effect
started by an agent or a resume does not, and then only the order counts).

Once either key has had its limit of failures within `window` seconds of its first, the check
is answered `throttled` without asking the order backend: the right email as well, until the
window ends, and the flow takes its `on_throttled` exit. Successes neither count nor reset a
count: a shopper who owns one order must not earn more guesses at others.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..engine import model as m
from ..language.validators import BUILTIN
from .registry import ACTIONS, ActionSpec

if TYPE_CHECKING:
    from ..effects import ActionPort

log = logging.getLogger("flowengine.actions")


class FailureCounts(Protocol):
    """The store's shared failure counters (`store.base.HandoffStore`)."""

    async def failures(self, keys: list[str]) -> list[int]: ...

    async def add_failure(self, keys: list[str], window: float) -> list[int]: ...

    async def forgive(self, keys: list[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class Limits:
    per_order: int  # failed checks of one order number
    per_address: int  # failed checks from one client address, whatever the order
    window: float  # seconds from a key's first failure until its count is forgotten


class ThrottledActions:
    """Runs calls through `inner`; the order checks among them are throttled (module doc)."""

    def __init__(
        self,
        inner: ActionPort,  # what runs the calls (`perform.BackendActions`)
        counts: FailureCounts,
        limits: Limits,
        registry: Mapping[str, ActionSpec] = ACTIONS,
    ) -> None:
        self.inner = inner
        self.counts = counts
        self.limits = limits
        self.registry = registry

    def keys(self, number: object, address: str | None) -> dict[str, int]:
        """The counters a check of `number` from `address` touches, each with its limit. A
        number that is not one has no order key: its check fails without reaching the
        backend, and counts against the address."""
        keys = {}
        normalised = BUILTIN["order_number"].check(str(number or ""))
        if normalised is not None:
            keys[f"order-check:order:{normalised}"] = self.limits.per_order
        if address:
            keys[f"order-check:addr:{address}"] = self.limits.per_address
        return keys

    async def perform(self, call: m.CallAction, address: str | None = None) -> m.ActionResult:
        spec = self.registry.get(call.action)
        if spec is None or not spec.verifies:
            return await self.inner.perform(call, address)
        keys = self.keys(call.args.get("number"), address)
        try:
            # Counted before the backend is asked, taken back unless it says not_found: a
            # hundred checks at once get counts 1..100, not a hundred reads under the limit.
            counts = await self.counts.add_failure(list(keys), self.limits.window)
        except Exception:  # the counters cannot be reached: refuse rather than check unthrottled
            log.exception("order-check throttle: failure counts unavailable")
            return m.ActionResult(call.call_id, "error", {"reason": "throttle_unavailable"})
        if any(n > limit for n, limit in zip(counts, keys.values(), strict=True)):
            log.info("action %s throttled", call.action)
            return m.ActionResult(call.call_id, "throttled", None)
        result = await self.inner.perform(call, address)
        if result.outcome != "not_found" and keys:
            try:
                await self.counts.forgive(list(keys))
            except Exception:  # the shopper still gets the answer the backend gave
                log.exception("order-check throttle: could not take back a counted check")
        return result
