"""The Starlette application: shopper socket, health, metrics, the demo page and the widget.

create_app(ServerConfig(...))   -> an ASGI app (the server's state lives on app.state.server)
flowengine serve                -> runs it on uvicorn (websockets, no per-message deflate)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute

from ..actions.demo_backend import DemoBackend
from ..actions.http_backend import HttpBackend
from ..actions.orders import OrderBackend
from ..handoff import config as handoff_config
from ..handoff.accounts import open_accounts
from ..store import open_store
from . import redact
from .agent_socket import agent_socket, login, logout
from .analytics import Analytics
from .config import ServerConfig
from .flows import FlowRegistry
from .guard import ClientLimits, TokenBucket
from .handoffs import HandoffService
from .metrics import Metrics
from .sessions import SessionService
from .shopper_socket import Connection, Watcher, shopper_socket
from .webhooks import Webhooks

log = logging.getLogger("flowengine.server")


def _widget_dir() -> Path:
    """The widget beside the package (a source checkout), else ./widget (an installed package)."""
    beside = Path(__file__).resolve().parents[2] / "widget"
    return beside if (beside / "widget.js").is_file() else Path.cwd() / "widget"


class Server:
    """Everything one process holds: config, store, flows, sessions, sockets by session."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store = open_store(config.redis_url, max_connections=config.redis_max_connections)
        self.flows = FlowRegistry(
            config.flows_dir, self.store, version_ttl=config.session_ttl + 3600
        )
        self.metrics = Metrics()
        self.analytics = Analytics(self.store)
        self.limits = ClientLimits(config.ip_rate, config.ip_burst, config.max_sockets_per_ip)
        self.backend: OrderBackend = (
            HttpBackend(config.orders_api) if config.orders_api else DemoBackend(date.today())
        )
        self.sessions = SessionService(
            self.store, self.flows, self.backend, config, self.metrics, self.analytics
        )
        self.handoff_config = handoff_config.load(config.handoff_config)
        self.accounts = open_accounts(config.redis_url, config.agents_file)
        self.webhooks = Webhooks(self.store, self.handoff_config.webhooks)  # type: ignore[arg-type]
        self.handoffs = HandoffService(
            self.store, self.sessions, self.handoff_config, self.webhooks, ttl=config.session_ttl
        )
        self.sessions.handoffs = self.handoffs
        self.login_buckets: dict[str, TokenBucket] = {}
        # Who on this process wants news of a session: shopper sockets and agent consoles.
        self.watchers: dict[str, set[Watcher]] = {}
        self.store.set_listener(self._on_commit)
        self._background: list[asyncio.Task[None]] = []

    async def attach(self, sid: str, watcher: Watcher) -> None:
        first = sid not in self.watchers
        self.watchers.setdefault(sid, set()).add(watcher)
        if first:
            with contextlib.suppress(Exception):
                await self.store.watch(sid)

    async def detach(self, sid: str, watcher: Watcher) -> None:
        watchers = self.watchers.get(sid)
        if watchers is None:
            return
        watchers.discard(watcher)
        if not any(isinstance(w, Connection) for w in watchers):
            self.sessions.left(sid)
        if not watchers:
            del self.watchers[sid]
            with contextlib.suppress(Exception):
                await self.store.unwatch(sid)

    def _on_commit(self, sid: str, seq: int, payload: dict[str, Any] | None = None) -> None:
        for watcher in list(self.watchers.get(sid, ())):
            if payload is not None:
                self.sessions.spawn(_quietly(watcher.signal(sid, payload)))
            else:
                self.sessions.spawn(_quietly(watcher.news(sid, seq)))

    async def startup(self) -> None:
        self.flows.load()  # raises with the validator's errors: never serve broken flows
        kind = (
            "Redis at " + _safe_url(self.config.redis_url)
            if self.config.redis_url
            else ("the embedded in-process store (one process; nothing survives a restart)")
        )
        log.info(
            "flowengine serving flows version %s on %s",
            self.flows.current.version  # type: ignore[union-attr]
            if self.flows.current
            else "-",
            kind,
        )
        try:
            await self.flows.publish()
        except Exception:
            log.warning("store not reachable at start; serving, and retrying per session")
        self.analytics.start()
        self.handoffs.start()
        self.webhooks.start()
        if self.config.watch_flows:
            self._background.append(asyncio.create_task(self.flows.watch()))
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGHUP, lambda: self.sessions.spawn(self.flows.reload())
            )

    async def shutdown(self) -> None:
        for task in self._background:
            task.cancel()
        await self.handoffs.stop()
        await self.webhooks.stop()
        await self.sessions.drain()
        await self.analytics.stop()
        await self.store.close()
        if isinstance(self.backend, HttpBackend):
            await self.backend.aclose()


async def _quietly(coro: Any) -> None:
    with contextlib.suppress(Exception):
        await coro


def _safe_url(url: str | None) -> str:
    if not url:
        return "-"
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> Response:
    server: Server = request.app.state.server
    store_ok = await server.store.ping()
    body = {
        "status": "ready" if store_ok else "unavailable",
        "store": server.store.kind,
        "store_reachable": store_ok,
        "flows_version": server.flows.current.version if server.flows.current else None,
    }
    return JSONResponse(body, status_code=200 if store_ok else 503)


async def metrics(request: Request) -> Response:
    server: Server = request.app.state.server
    return Response(server.metrics.render(), media_type="text/plain; version=0.0.4")


async def demo_page(request: Request) -> Response:
    return _static(request, "demo.html", "text/html; charset=utf-8")


async def widget_js(request: Request) -> Response:
    return _static(request, "widget.js", "application/javascript; charset=utf-8")


def _static(request: Request, name: str, media_type: str) -> Response:
    server: Server = request.app.state.server
    root = Path(server.config.static_dir) if server.config.static_dir else _widget_dir()
    path = root / name
    if not path.is_file():
        return PlainTextResponse(f"{name} is not installed", status_code=404)
    response = FileResponse(path, media_type=media_type)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


CONSOLE_DIR = Path(__file__).resolve().parent / "console"
# The console shows text from shoppers: it may run only its own script and style, and talk
# only to this server.
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; "
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


def create_app(config: ServerConfig | None = None) -> Starlette:
    config = config or ServerConfig()
    server = Server(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await server.startup()
        yield
        await server.shutdown()

    app = Starlette(
        routes=[
            Route("/", demo_page),
            Route("/widget.js", widget_js),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            WebSocketRoute("/ws", shopper_socket),
            Route("/agent", console_page),
            Route("/agent/console.js", console_js),
            Route("/agent/console.css", console_css),
            Route("/agent/api/login", login, methods=["POST"]),
            Route("/agent/api/logout", logout, methods=["POST"]),
            WebSocketRoute("/agent/ws", agent_socket),
        ],
        lifespan=lifespan,
    )
    app.state.server = server
    return app


def app_from_env() -> Starlette:
    """The factory `flowengine serve` gives uvicorn (each worker builds its own)."""
    redact.install()
    raw = os.environ.get("FLOWENGINE_SERVER_CONFIG")
    options: dict[str, Any] = json.loads(raw) if raw else {}
    if "allowed_origins" in options:
        options["allowed_origins"] = tuple(options["allowed_origins"])
    return create_app(ServerConfig(**options))
