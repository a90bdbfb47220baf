"""The agent console over HTTP: its page and files (with a strict CSP), login and logout, and
the routes the app mounts for handoff (the socket is in `agent_socket`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..server.runtime import Runtime
from ..store import StoreUnavailable
from .agent_socket import agent_socket
from .service import TOKEN_TTL, Throttled

log = logging.getLogger("flowengine.agents")

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
# The console shows text from shoppers: it may run only its own script and style, and talk
# only to this server (CSP3 'self' covers its own ws:// and wss://, and no other host).
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def _console(name: str, media_type: str) -> Response:
    response = FileResponse(CONSOLE_DIR / name, media_type=media_type)
    response.headers["Content-Security-Policy"] = CONSOLE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response


async def console_page(request: Request) -> Response:
    return _console("console.html", "text/html; charset=utf-8")


async def console_js(request: Request) -> Response:
    return _console("console.js", "application/javascript; charset=utf-8")


async def console_css(request: Request) -> Response:
    return _console("console.css", "text/css; charset=utf-8")


LOGIN_BODY_LIMIT = 4096  # bytes: a username and a password, with room to spare


async def _body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it passes `limit` bytes (nothing bigger is kept in
    memory, whatever Content-Length says or does not say)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def login(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    ip = request.client.host if request.client else "-"
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        # Also what a cross-site form or text/plain POST would send: refused before anything.
        return JSONResponse({"error": "send JSON (Content-Type: application/json)"}, 415)
    raw = await _body(request, LOGIN_BODY_LIMIT)
    if raw is None:
        return JSONResponse({"error": f"at most {LOGIN_BODY_LIMIT} bytes"}, status_code=413)
    try:
        body = json.loads(raw)
        username, password = str(body["username"]).strip().lower(), str(body["password"])
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"error": "send {username, password}"}, status_code=400)
    try:
        granted = await runtime.handoffs.login(username, password, ip)
    except Throttled:
        return JSONResponse(
            {"error": "too many failed attempts; wait a few minutes"}, status_code=429
        )
    except StoreUnavailable:
        return _unavailable()
    if granted is None:
        log.warning("failed console login")
        return JSONResponse({"error": "wrong username or password"}, status_code=401)
    token, account = granted
    return JSONResponse({"token": token, "agent": account.public(), "expires_in": TOKEN_TTL})


async def logout(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if token:
        try:
            await runtime.handoffs.logout(token)
        except StoreUnavailable:
            return _unavailable()  # the console forgets the token either way
    return JSONResponse({"ok": True})


def _unavailable() -> Response:
    """The store is away (Redis restarting, failing over): nothing was decided, try again."""
    return JSONResponse(
        {"error": "the service is briefly unavailable; try again in a few seconds"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


ROUTES: list[BaseRoute] = [
    Route("/agent", console_page),
    Route("/agent/console.js", console_js),
    Route("/agent/console.css", console_css),
    Route("/agent/api/login", login, methods=["POST"]),
    Route("/agent/api/logout", logout, methods=["POST"]),
]
SOCKETS = {"/agent/ws": agent_socket}  # served straight from the app (`server.app.App`)
