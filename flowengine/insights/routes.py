"""The insights dashboard over HTTP: its page and files (under the console's CSP), and what the
page reads: the report, one flow's funnel and the CSV export, for admins only.

Logging in is the console's (`/agent/api/login`): the same account, the same bearer token. No
token, or one the server no longer knows: 401; an agent without the admin role: 403, with no
numbers. Bad parameters get 400 and a message that says what to send.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..handoff.accounts import Account
from ..handoff.routes import CONSOLE_CSP
from ..server.runtime import Runtime
from .query import FLOW, FilterError, PeriodError, filters

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class BadRequest(Exception):
    """A parameter the API cannot use; the message says what to send instead."""


@dataclass(frozen=True)
class Period:
    since: date
    until: date


def _file(name: str, media_type: str) -> Response:
    response = FileResponse(DASHBOARD_DIR / name, media_type=media_type)
    return _guarded(response)


def _guarded(response: Response) -> Response:
    """The console's headers: only this server's script and style, never framed or sniffed."""
    response.headers["Content-Security-Policy"] = CONSOLE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Cache-Control", "no-cache")
    return response


async def dashboard_page(request: Request) -> Response:
    return _file("insights.html", "text/html; charset=utf-8")


async def dashboard_js(request: Request) -> Response:
    return _file("insights.js", "application/javascript; charset=utf-8")


async def dashboard_css(request: Request) -> Response:
    return _file("insights.css", "text/css; charset=utf-8")


def _error(status: int, message: str) -> Response:
    response = JSONResponse({"error": message}, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return _guarded(response)


def _json(body: dict[str, Any]) -> Response:
    response = JSONResponse(body)
    response.headers["Cache-Control"] = "no-store"  # numbers for one admin, never cached
    return _guarded(response)


async def _admin(request: Request) -> Account | Response:
    """The admin the bearer token belongs to, or the answer for a caller who is not one."""
    runtime: Runtime = request.app.state.runtime
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    account = await runtime.handoffs.agent_for(token) if token else None
    if account is None:
        return _error(401, "log in: send the console's token (Authorization: Bearer …)")
    if account.role != "admin":
        return _error(403, "admins only: insights need an account with the admin role")
    return account


def today(runtime: Runtime) -> date:
    """The server's day (UTC): the day events are counted on."""
    return datetime.fromtimestamp(runtime.clock(), UTC).date()


def _day(request: Request, name: str) -> date:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        raise BadRequest(f"{name} is required (a day, YYYY-MM-DD)")
    if not DAY.fullmatch(raw):
        raise BadRequest(f"{name} must be a day as YYYY-MM-DD, not {raw[:40]!r}")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name} is not a day of the calendar: {raw!r}") from None


def _period(request: Request, runtime: Runtime) -> Period:
    since, until = _day(request, "since"), _day(request, "until")
    if since > until:
        raise BadRequest(f"since ({since}) is after until ({until})")
    kept = runtime.config.insights_retention_days
    oldest = today(runtime) - timedelta(days=kept - 1)
    if since < oldest:
        raise BadRequest(
            f"since ({since}) is before the oldest day kept ({oldest}): "
            f"numbers are kept for {kept} days"
        )
    days = (until - since).days + 1
    if days > kept:  # only possible with days to come: nothing there, refused as a typo
        raise BadRequest(f"a period of {days} days is longer than the {kept} days kept")
    return Period(since, until)


def _filters(request: Request, runtime: Runtime) -> tuple[str | None, str | None]:
    """The `locale` and `version` filters as counted (docs/insights.md)."""
    project = runtime.flows.current
    _, locale, version = filters(
        None,
        request.query_params.get("locale") or None,
        request.query_params.get("version") or None,
        project.settings.locales if project is not None else (),
    )
    return locale, version


def _known_flows(runtime: Runtime) -> list[str]:
    project = runtime.flows.current
    return sorted(project.flows) if project is not None else []


def _unknown(flow: str, runtime: Runtime) -> BadRequest:
    return BadRequest(
        f"unknown flow {flow[:60]!r} (flows: " + ", ".join(_known_flows(runtime)) + ")"
    )


def _flow(request: Request, runtime: Runtime, *, required: bool) -> str | None:
    flow = request.query_params.get("flow") or None
    if flow is None and required:
        raise BadRequest("flow is required (one of: " + ", ".join(_known_flows(runtime)) + ")")
    if flow is not None and not FLOW.fullmatch(flow):
        raise _unknown(flow, runtime)
    return flow


Handler = Callable[[Request, Runtime, Account], Awaitable[Response]]


def _admin_api(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """An admin-only route: 401 or 403 for anyone else (`_admin`); a parameter or period it
    cannot use is a 400 with the message that says what to send."""

    @functools.wraps(handler)
    async def route(request: Request) -> Response:
        admin = await _admin(request)
        if isinstance(admin, Response):
            return admin
        try:
            return await handler(request, request.app.state.runtime, admin)
        except (BadRequest, FilterError, PeriodError) as e:
            return _error(400, str(e))

    return route


@_admin_api
async def meta(request: Request, runtime: Runtime, admin: Account) -> Response:
    """Who is looking, the server's today, how long numbers are kept, and what can be picked."""
    project = runtime.flows.current
    return _json(
        {
            "agent": admin.public(),
            "today": today(runtime).isoformat(),
            "retention_days": runtime.config.insights_retention_days,
            "flows": _known_flows(runtime),
            "locales": list(project.settings.locales) if project is not None else [],
        }
    )


@_admin_api
async def report(request: Request, runtime: Runtime, admin: Account) -> Response:
    period = _period(request, runtime)
    flow = _flow(request, runtime, required=False)
    locale, version = _filters(request, runtime)
    body = await runtime.insights.report(
        period.since, period.until, flow=flow, locale=locale, version=version
    )
    # A flow of the current flows, or one that ran in the period (since removed): else a typo.
    ran = any(row["flow"] == flow for row in body["flows"])
    if flow is not None and flow not in _known_flows(runtime) and not ran:
        raise _unknown(flow, runtime)
    return _json(body)


@_admin_api
async def funnel(request: Request, runtime: Runtime, admin: Account) -> Response:
    period = _period(request, runtime)
    flow = _flow(request, runtime, required=True)
    _, version = _filters(request, runtime)
    assert flow is not None
    try:
        body = await runtime.insights.funnel(flow, period.since, period.until, version=version)
    except KeyError:  # no version has the flow, and no shopper ran it in the period
        raise _unknown(flow, runtime) from None
    return _json(body)


@_admin_api
async def export_csv(request: Request, runtime: Runtime, admin: Account) -> Response:
    period = _period(request, runtime)
    text = await runtime.insights.export_csv(period.since, period.until)
    name = f"insights-{period.since}-{period.until}.csv"
    response = Response(text, media_type="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    return _guarded(response)


ROUTES: list[BaseRoute] = [
    Route("/insights", dashboard_page),
    Route("/insights/insights.js", dashboard_js),
    Route("/insights/insights.css", dashboard_css),
    Route("/insights/api/meta", meta),
    Route("/insights/api/report", report),
    Route("/insights/api/funnel", funnel),
    Route("/insights/export.csv", export_csv),
]
