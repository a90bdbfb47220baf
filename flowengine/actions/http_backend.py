"""The HTTP order backend: a merchant's own order API, described in docs/actions.md.

    GET  {base}/orders/{number}          200 order JSON | 404
    POST {base}/orders/{number}/cancel   {"reason"} -> 200 order JSON
    POST {base}/returns                  {"number", "skus", "reason", "method"} -> {"rma", ...}
    POST {base}/tickets                  {"kind", "details", ...} -> 200/201 {"ticket_id"}

The auth header's value comes from an environment variable, never from a flow or a config file.
Timeouts, connection failures, 5xx and malformed JSON all become `BackendError`, which the
flow sees as its `on_error` exit.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import httpx

from .orders import BackendError


class HttpBackend:
    def __init__(
        self,
        base_url: str,
        *,
        auth_header: str = "Authorization",
        auth_env: str | None = "FLOWENGINE_ORDERS_TOKEN",
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "flowengine"}
        token = os.environ.get(auth_env) if auth_env else None
        if token:
            headers[auth_header] = token
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        missing_ok: bool = False,
        route: str | None = None,
    ) -> dict[str, Any] | None:
        """`route`: the path as errors (and so logs) name it, without the order number."""
        where = f"{method} {route or path}"
        try:
            response = await self._client.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise BackendError(f"order API timed out on {where}") from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"order API unreachable: {type(exc).__name__}") from exc
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 300:
            raise BackendError(f"order API answered {response.status_code} on {where}")
        try:
            data = response.json()
        except ValueError as exc:
            raise BackendError(f"order API sent invalid JSON on {where}") from exc
        if not isinstance(data, dict):
            raise BackendError(f"order API sent {type(data).__name__}, not an object")
        return data

    async def get_order(self, number: str) -> dict[str, Any] | None:
        return await self._request(
            "GET", f"/orders/{quote(number, safe='')}", missing_ok=True, route="/orders/{number}"
        )

    async def cancel_order(self, number: str, reason: str | None) -> dict[str, Any]:
        data = await self._request(
            "POST",
            f"/orders/{quote(number, safe='')}/cancel",
            {"reason": reason},
            route="/orders/{number}/cancel",
        )
        assert data is not None
        return data

    async def create_return(
        self, number: str, skus: list[str], reason: str, method: str
    ) -> dict[str, Any]:
        data = await self._request(
            "POST", "/returns", {"number": number, "skus": skus, "reason": reason, "method": method}
        )
        assert data is not None
        return data

    async def create_ticket(self, ticket: dict[str, Any]) -> dict[str, Any]:
        data = await self._request("POST", "/tickets", ticket)
        assert data is not None
        return data
