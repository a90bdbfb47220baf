"""The Starlette application: its routes and lifespan. The shopper socket, health, metrics, the
demo page and the widget are here; the agent console's routes come from `handoff.routes`, the
insights dashboard's from `insights.routes`.

create_app(ServerConfig(...))   -> an ASGI app (the process's state is app.state.runtime)
App                             -> Starlette, with the sockets one call away from uvicorn
flowengine serve                -> runs it on uvicorn (websockets, no per-message deflate)
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from ..handoff.routes import ROUTES as HANDOFF_ROUTES
from ..handoff.routes import SOCKETS as HANDOFF_SOCKETS
from ..insights.routes import ROUTES as INSIGHTS_ROUTES
from . import redact
from .config import ServerConfig
from .connection import make_abortable
from .http_limits import BodyLimits
from .runtime import Runtime
from .shopper_socket import shopper_socket


def _widget_dir() -> Path:
    """The widget beside the package (a source checkout), else ./widget (an installed package)."""
    beside = Path(__file__).resolve().parents[2] / "widget"
    return beside if (beside / "widget.js").is_file() else Path.cwd() / "widget"


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> Response:
    """Ready when the store takes a write (Redis: a SET with a short TTL, which a replica or a
    primary demoted in place refuses); else 503 naming the problem (`store_problem`: auth_failed,
    tls, read_only, unreachable, error)."""
    runtime: Runtime = request.app.state.runtime
    problem = await runtime.store_problem()
    store_ok = problem is None
    body = {
        "status": "ready" if store_ok else "unavailable",
        "store": runtime.store.kind,
        "store_reachable": store_ok,
        "store_problem": problem,
        "flows_version": runtime.flows.current.version if runtime.flows.current else None,
    }
    return JSONResponse(body, status_code=200 if store_ok else 503)


async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")


async def demo_page(request: Request) -> Response:
    response = _static(request, "demo.html", "text/html; charset=utf-8")
    # No other site may frame the demo page (clickjacking). widget.js has no such headers:
    # shops load it with a script tag, and a script is not framed.
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    response.headers["X-Frame-Options"] = "DENY"
    return response


async def widget_js(request: Request) -> Response:
    return _static(request, "widget.js", "application/javascript; charset=utf-8")


def _static(request: Request, name: str, media_type: str) -> Response:
    runtime: Runtime = request.app.state.runtime
    root = Path(runtime.config.static_dir) if runtime.config.static_dir else _widget_dir()
    path = root / name
    if not path.is_file():
        return PlainTextResponse(f"{name} is not installed", status_code=404)
    response = FileResponse(path, media_type=media_type)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


SocketHandler = Callable[[WebSocket], Awaitable[None]]


class App(Starlette):
    """Starlette, except that a WebSocket to one of `sockets` goes straight to its handler.

    A socket lives for hours and mostly waits: each layer between uvicorn and its handler
    (Starlette's error pages, the middleware, the router, the route's session wrapper) is a
    suspended coroutine the socket holds all that time, and a wrapper each of its frames
    passes through. None of them does anything for a socket: an exception in a handler still
    reaches uvicorn, which logs it and drops the connection. 5.4 KiB less per idle socket
    (docs/benchmarks.md). Other WebSocket paths go through the router (and are refused).
    """

    def __init__(
        self,
        *,
        sockets: Mapping[str, SocketHandler],
        flooded: Callable[[Scope], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sockets = dict(sockets)
        self.flooded = flooded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.sockets.get(scope["path"]) if scope["type"] == "websocket" else None
        if handler is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self  # what `ws.app` reads, as Starlette would set it
        make_abortable(scope, send, self.flooded)
        await handler(WebSocket(scope, receive, send))


def create_app(config: ServerConfig | None = None, clock: Callable[[], float] = time.time) -> App:
    config = config or ServerConfig()
    runtime = Runtime(config, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.startup()
        yield
        await runtime.shutdown()

    app = App(
        sockets={"/ws": shopper_socket, **HANDOFF_SOCKETS},
        flooded=runtime.flooded,
        routes=[
            Route("/", demo_page),
            Route("/widget.js", widget_js),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            *HANDOFF_ROUTES,
            *INSIGHTS_ROUTES,
        ],
        # Inside Starlette's error handling, outside the routes. BodyLimits: a body over the
        # limit or too slow is answered there (413, 408), whichever route was reading it.
        middleware=[
            Middleware(BodyLimits, max_bytes=config.max_body_bytes, timeout=config.body_timeout),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app


def app_from_env() -> App:
    """The factory `flowengine serve` gives uvicorn (each worker builds its own)."""
    redact.install()
    raw = os.environ.get("FLOWENGINE_SERVER_CONFIG")
    options: dict[str, Any] = json.loads(raw) if raw else {}
    if "allowed_origins" in options:
        options["allowed_origins"] = tuple(options["allowed_origins"])
    return create_app(ServerConfig(**options))
