"""The handoff packet: what the agent sees and what webhooks send (schema in docs/handoff.md)."""

from __future__ import annotations

from typing import Any

from ..engine import model as m

PACKET_VERSION = 1


def build(
    sid: str,
    state: m.State,
    team: str,
    priority: str,
    reason: str | None,
    transcript: list[dict[str, Any]],
    now: float,
) -> dict[str, Any]:
    shopper = state.context.get("shopper", {})
    variables = dict(state.vars)
    return {
        "version": PACKET_VERSION,
        "session": sid,
        "flow": state.flow,
        "step": state.step,
        "flow_version": state.version,
        "team": team,
        "priority": priority,
        "reason": reason,
        "locale": state.locale,
        "page": state.context.get("page", {}),
        "context": state.context.get("context", {}),  # what the shop's page told (cart_total)
        "shopper": {
            "name": shopper.get("name"),
            "email": shopper.get("email") or variables.get("email"),
            "verified": bool(shopper.get("verified")),
        },
        "collected": variables,
        "order": variables.get("order") if isinstance(variables.get("order"), dict) else None,
        "created_at": now,
        "transcript": transcript,
    }
