"""The demo order backend: orders from a JSON file shipped with the project, kept in memory.

Dates in the file are relative (`delivered_days_ago: 5`) and turned into dates against the
clock given at start, so "delivered inside the return window" stays true whenever the demo runs.
Cancellations, returns and tickets change this process's copy only.
"""

from __future__ import annotations

import copy
import json
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from .orders import BackendError

_DAYS_AGO = {"placed_days_ago": "placed_at", "delivered_days_ago": "delivered_at"}
_DAYS_AHEAD = {"eta_in_days": "eta"}


def load_demo_orders(today: date, path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    if path is None:
        text = (
            resources.files("flowengine.actions")
            .joinpath("data/demo_orders.json")
            .read_text("utf-8")
        )
    else:
        text = Path(path).read_text("utf-8")
    orders: dict[str, dict[str, Any]] = {}
    for raw in json.loads(text)["orders"]:
        order = {k: v for k, v in raw.items() if k not in _DAYS_AGO and k not in _DAYS_AHEAD}
        for key, field in _DAYS_AGO.items():
            if raw.get(key) is not None:
                order[field] = (today - timedelta(days=raw[key])).isoformat()
        for key, field in _DAYS_AHEAD.items():
            if raw.get(key) is not None:
                order[field] = (today + timedelta(days=raw[key])).isoformat()
        orders[str(order["number"])] = order
    return orders


class DemoBackend:
    def __init__(self, today: date, path: str | Path | None = None) -> None:
        self.orders = load_demo_orders(today, path)
        self.returns: list[dict[str, Any]] = []
        self.tickets: list[dict[str, Any]] = []

    async def get_order(self, number: str) -> dict[str, Any] | None:
        order = self.orders.get(number)
        return copy.deepcopy(order) if order is not None else None

    async def cancel_order(self, number: str, reason: str | None) -> dict[str, Any]:
        order = self.orders.get(number)
        if order is None:
            raise BackendError(f"no order {number}")
        order["status"] = "cancelled"
        order["cancel_reason"] = reason
        return copy.deepcopy(order)

    async def create_return(
        self, number: str, skus: list[str], reason: str, method: str
    ) -> dict[str, Any]:
        rma = f"RMA-{number}-{len(self.returns) + 1:03d}"
        record = {"rma": rma, "number": number, "skus": skus, "reason": reason, "method": method}
        if method == "label":
            record["label_url"] = f"https://shop.example/returns/{rma}/label.pdf"
        self.returns.append(record)
        return dict(record)

    async def create_ticket(self, ticket: dict[str, Any]) -> dict[str, Any]:
        ticket_id = f"T-{len(self.tickets) + 1001}"
        self.tickets.append({"ticket_id": ticket_id, **ticket})
        return {"ticket_id": ticket_id}
