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
from ..store import open_store
from . import redact
from .analytics import Analytics
from .config import ServerConfig
from .flows import FlowRegistry
from .guard import ClientLimits
from .metrics import Metrics
from .sessions import SessionService
from .shopper_socket import Connection, shopper_socket

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
        self.sockets: dict[str, set[Connection]] = {}
        self.store.set_listener(self._on_commit)
        self._background: list[asyncio.Task[None]] = []

    async def attach(self, conn: Connection) -> None:
        assert conn.sid is not None
        first = conn.sid not in self.sockets
        self.sockets.setdefault(conn.sid, set()).add(conn)
        if first:
            with contextlib.suppress(Exception):
                await self.store.watch(conn.sid)

    async def detach(self, conn: Connection) -> None:
        assert conn.sid is not None
        conns = self.sockets.get(conn.sid)
        if conns is None:
            return
        conns.discard(conn)
        if not conns:
            del self.sockets[conn.sid]
            self.sessions.left(conn.sid)
            with contextlib.suppress(Exception):
                await self.store.unwatch(conn.sid)

    def _on_commit(self, sid: str, seq: int, payload: dict[str, Any] | None = None) -> None:
        if payload is not None:
            self.on_signal(sid, payload)
            return
        for conn in list(self.sockets.get(sid, ())):
            if seq < 0 or seq > conn.sent:
                self.sessions.spawn(_quiet_catch_up(conn))

    def on_signal(self, sid: str, payload: dict[str, Any]) -> None:
        """Ephemeral news for a session's sockets (typing); replaced when agents are wired."""

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
        if self.config.watch_flows:
            self._background.append(asyncio.create_task(self.flows.watch()))
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGHUP, lambda: self.sessions.spawn(self.flows.reload())
            )

    async def shutdown(self) -> None:
        for task in self._background:
            task.cancel()
        await self.sessions.drain()
        await self.analytics.stop()
        await self.store.close()
        if isinstance(self.backend, HttpBackend):
            await self.backend.aclose()


async def _quiet_catch_up(conn: Connection) -> None:
    with contextlib.suppress(Exception):
        await conn.catch_up()


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
