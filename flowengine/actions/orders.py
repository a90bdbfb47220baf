"""The order actions and the shop rules behind them (cancel, return eligibility), backend-agnostic.

Rules are pure functions of an order and today's date; the actions fetch through an
`OrderBackend` and apply them, so the demo backend and a merchant's HTTP API behave the same.
A wrong email and an unknown order number give the same `not_found`, so the bot cannot be used
to find out which order numbers exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, Protocol

from ..language.validators import BUILTIN

RETURN_WINDOW_DAYS = 30
CANCELLABLE = frozenset({"unfulfilled"})
RETURN_METHODS = frozenset({"drop_off", "pickup", "label"})

Outcome = Literal["ok", "not_found", "error"]


class BackendError(Exception):
    """The order system failed or answered nonsense; the flow takes its error exit."""


class OrderBackend(Protocol):
    async def get_order(self, number: str) -> dict[str, Any] | None: ...

    async def cancel_order(self, number: str, reason: str | None) -> dict[str, Any]: ...

    async def create_return(
        self, number: str, skus: list[str], reason: str, method: str
    ) -> dict[str, Any]: ...

    async def create_ticket(self, ticket: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    outcome: Outcome
    data: Any = None


# -- rules ----------------------------------------------------------------------------------


def _date(value: Any) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def cancel_refusal(order: Mapping[str, Any]) -> str | None:
    """Why an order cannot be cancelled, or None if it can."""
    status = order.get("status")
    return None if status in CANCELLABLE else str(status)


def return_eligibility(
    order: Mapping[str, Any], today: date, window_days: int = RETURN_WINDOW_DAYS
) -> dict[str, Any]:
    status = order.get("status")
    delivered = _date(order.get("delivered_at"))
    items = [i for i in order.get("items", []) if isinstance(i, dict)]
    returnable = [i for i in items if not i.get("final_sale") and i.get("fulfilled", True)]
    out: dict[str, Any] = {
        "eligible": False,
        "reason": None,
        "items": [],
        "window_days": window_days,
        "days_left": None,
    }
    if status in ("cancelled", "refunded"):
        out["reason"] = status
    elif status != "delivered" or delivered is None:
        out["reason"] = "not_delivered"
    else:
        days_left = window_days - (today - delivered).days
        out["days_left"] = max(days_left, 0)
        if days_left < 0:
            out["reason"] = "window_closed"
        elif not returnable:
            out["reason"] = "final_sale"
        else:
            out.update(eligible=True, items=[_item(i) for i in returnable])
    return out


def _item(i: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "sku": str(i.get("sku", "")),
        "name": str(i.get("name") or ""),
        "qty": int(i.get("qty", 1) or 1),
        "price": i.get("price"),
        "final_sale": bool(i.get("final_sale", False)),
        "fulfilled": bool(i.get("fulfilled", True)),
    }


def describe_order(order: Mapping[str, Any], today: date) -> dict[str, Any]:
    """The view of an order that flows see: the raw fields plus what the rules make of them."""
    eligibility = return_eligibility(order, today)
    delivered = _date(order.get("delivered_at"))
    name = str(order.get("name", "")).strip()
    items = [_item(i) for i in order.get("items", []) if isinstance(i, dict)]
    return {
        "number": str(order.get("number", "")),
        "status": str(order.get("status", "unknown")),
        "first_name": name.split(" ")[0] if name else "",
        "placed_at": order.get("placed_at"),
        "delivered_at": order.get("delivered_at"),
        "eta": order.get("eta"),
        "late": status_late(order, today),
        "email": str(order.get("email", "")),
        "carrier": order.get("carrier"),
        "tracking_number": order.get("tracking_number"),
        "tracking_url": order.get("tracking_url"),
        "total": order.get("total"),
        "currency": order.get("currency", ""),
        "items": items,
        "item_count": sum(i["qty"] for i in items),
        "shipped_count": sum(i["qty"] for i in items if i["fulfilled"]),
        "has_final_sale": any(i["final_sale"] for i in items),
        "cancellable": cancel_refusal(order) is None,
        "returnable": eligibility["eligible"],
        "return_reason": eligibility["reason"],
        "return_days_left": eligibility["days_left"],
        "days_since_delivery": (today - delivered).days if delivered else None,
    }


def status_late(order: Mapping[str, Any], today: date) -> bool:
    """On its way, but past the promised delivery date."""
    eta = _date(order.get("eta"))
    return (
        order.get("status") in ("shipped", "partially_fulfilled")
        and eta is not None
        and eta < today
    )


def email_matches(order: Mapping[str, Any], email: Any) -> bool:
    given = BUILTIN["email"].check(str(email or ""))
    on_order = str(order.get("email", "")).strip().casefold()
    return given is not None and on_order != "" and given.casefold() == on_order


# -- actions --------------------------------------------------------------------------------


async def _find(backend: OrderBackend, args: Mapping[str, Any]) -> dict[str, Any] | None:
    number = BUILTIN["order_number"].check(str(args.get("number") or ""))
    if number is None:
        return None
    order = await backend.get_order(number)
    if order is None or not email_matches(order, args.get("email")):
        return None
    return order


async def lookup(backend: OrderBackend, args: Mapping[str, Any], today: date) -> ActionOutcome:
    order = await _find(backend, args)
    if order is None:
        return ActionOutcome("not_found")
    return ActionOutcome("ok", describe_order(order, today))


async def cancel(backend: OrderBackend, args: Mapping[str, Any], today: date) -> ActionOutcome:
    order = await _find(backend, args)
    if order is None:
        return ActionOutcome("not_found")
    refusal = cancel_refusal(order)
    if refusal is not None:
        return ActionOutcome(
            "ok", {"cancelled": False, "reason": refusal, "order": describe_order(order, today)}
        )
    reason = args.get("reason")
    updated = await backend.cancel_order(str(order["number"]), str(reason) if reason else None)
    return ActionOutcome(
        "ok", {"cancelled": True, "reason": None, "order": describe_order(updated, today)}
    )


async def check_return(
    backend: OrderBackend, args: Mapping[str, Any], today: date
) -> ActionOutcome:
    order = await _find(backend, args)
    if order is None:
        return ActionOutcome("not_found")
    return ActionOutcome("ok", return_eligibility(order, today))


async def create_return(
    backend: OrderBackend, args: Mapping[str, Any], today: date
) -> ActionOutcome:
    order = await _find(backend, args)
    if order is None:
        return ActionOutcome("not_found")
    eligibility = return_eligibility(order, today)
    if not eligibility["eligible"]:
        return ActionOutcome("ok", {"created": False, "reason": eligibility["reason"]})
    method = str(args.get("method") or "")
    if method not in RETURN_METHODS:
        return ActionOutcome("error", {"reason": "unknown_method"})
    sku = str(args.get("sku") or "").strip()
    skus = [i["sku"] for i in eligibility["items"]]
    if sku and sku != "all":
        if sku not in skus:
            return ActionOutcome("ok", {"created": False, "reason": "item_not_returnable"})
        skus = [sku]
    reason = str(args.get("reason") or "other")[:200]
    created = await backend.create_return(str(order["number"]), skus, reason, method)
    rma = created.get("rma")
    if not rma:
        raise BackendError("the backend created a return without an RMA number")
    return ActionOutcome(
        "ok",
        {
            "created": True,
            "rma": str(rma),
            "items": skus,
            "method": method,
            "reason": reason,
            "label_url": created.get("label_url"),
        },
    )


async def create_ticket(
    backend: OrderBackend, args: Mapping[str, Any], today: date
) -> ActionOutcome:
    ticket = {
        k: (str(args[k])[:4000] if args.get(k) is not None else None)
        for k in ("kind", "details", "number", "email", "name")
    }
    created = await backend.create_ticket(ticket)
    ticket_id = created.get("ticket_id")
    if not ticket_id:
        raise BackendError("the backend created a ticket without an id")
    return ActionOutcome("ok", {"ticket_id": str(ticket_id)})
