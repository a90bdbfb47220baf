"""What actions exist and what they take: the part of the action registry the validator needs.

Pure data, no backends: `flowengine validate` checks `call:` steps against it without touching
an order system. The implementations live in `flowengine.actions.orders`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ActionSpec:
    name: str
    required: frozenset[str]
    optional: frozenset[str] = frozenset()
    description: str = ""
    has_not_found: bool = True

    @property
    def params(self) -> frozenset[str]:
        return self.required | self.optional


CATALOG: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec(
            "orders.lookup",
            frozenset({"number", "email"}),
            description="Find an order by number; the email must match the one on the order. "
            "ok: the order; not_found: no such order, or the email does not match.",
        ),
        ActionSpec(
            "orders.cancel",
            frozenset({"number", "email"}),
            frozenset({"reason"}),
            description="Cancel an order that is not yet fulfilled. ok: {cancelled, reason}.",
        ),
        ActionSpec(
            "returns.check",
            frozenset({"number", "email"}),
            description="Which items of an order can be returned. "
            "ok: {eligible, reason, items, window_days, days_left}.",
        ),
        ActionSpec(
            "returns.create",
            frozenset({"number", "email", "reason", "method"}),
            frozenset({"sku"}),
            description="Open a return for one item (sku) or every eligible item. "
            "ok: {created, rma, items, method, reason}.",
        ),
        ActionSpec(
            "tickets.create",
            frozenset({"kind", "details"}),
            frozenset({"number", "email", "name"}),
            description="Open a support ticket. ok: {ticket_id}.",
            has_not_found=False,
        ),
    )
}
