"""The one action registry: what each action takes (the validator checks `call:` steps against
it), what runs it, and what an `ok` tells the outside. Data and functions only: the language
imports it without the engine; `actions.perform` runs the calls.

Actions a project declares in flowengine.yaml (`actions:`) get an `ActionSpec` too, made by the
compiler, without `run`: `actions.declared` runs them as HTTP requests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from . import orders
from .orders import ActionOutcome, OrderBackend

ActionFunction = Callable[[OrderBackend, Mapping[str, Any], date], Awaitable[ActionOutcome]]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    name: str
    required: frozenset[str]
    optional: frozenset[str]
    run: ActionFunction | None  # None: declared by the project, run by `actions.declared`
    has_not_found: bool = True  # can it answer `not_found` (else only ok / error)?
    # Does it check `number` against `email`? Its `not_found` is then a failed verification,
    # counted by the lookup throttle (actions/throttle.py), which can answer `throttled`.
    verifies: bool = False
    # The webhook an `ok` result sends: (event, the key its result goes under), docs/handoff.md.
    emits: tuple[str, str] | None = None
    timeout: float = 5.0  # a call's `timeout` when the step gives none

    @property
    def params(self) -> frozenset[str]:
        return self.required | self.optional


def _spec(
    name: str,
    required: str,
    optional: str,
    run: ActionFunction,
    *,
    has_not_found: bool = True,
    verifies: bool = False,
    emits: tuple[str, str] | None = None,
) -> ActionSpec:
    return ActionSpec(
        name,
        frozenset(required.split()),
        frozenset(optional.split()),
        run,
        has_not_found,
        verifies,
        emits,
    )


# What each action answers is in docs/actions.md.
ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        _spec("orders.lookup", "number email", "", orders.lookup, verifies=True),
        _spec("orders.cancel", "number email", "reason", orders.cancel, verifies=True),
        _spec("returns.check", "number email", "", orders.check_return, verifies=True),
        _spec(
            "returns.create",
            "number email reason method",
            "sku",
            orders.create_return,
            verifies=True,
        ),
        _spec(
            "tickets.create",
            "kind details",
            "number email name",
            orders.create_ticket,
            has_not_found=False,
            emits=("ticket.created", "ticket"),
        ),
    )
}
