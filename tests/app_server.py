"""flowengine's real app served by uvicorn inside the test's own event loop, on a free port.

The same app, routes, sockets and store as `flowengine serve`, without a process to start: tests
talk to it over real WebSockets and HTTP (never by calling handlers), and can reach into
`runtime` to move a clock or count store calls. Use `ServerProcess` where a separate process is
the point (signals, a crash, the command line).

Blocking HTTP (urllib) would stall the loop the server runs on: use `get`/`post` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Self

import httpx
import uvicorn

from flowengine.server.app import create_app
from flowengine.server.config import ServerConfig
from flowengine.server.http_limits import guarded_websocket_protocol, header_timeout_protocol
from flowengine.server.runtime import Runtime
from tests.redis_server import free_port
from tests.server_process import Listening


class Clock:
    """A wall clock that stands still until the test moves it: give the same one to every
    instance of a test (so they agree), and `advance` it instead of sleeping."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InLoop:
    """Something served by uvicorn in the test's own loop (`self._server`): started and
    stopped, or used as `async with`. The app here, and the shop platforms' stand-ins."""

    _server: uvicorn.Server
    _task: asyncio.Task[None] | None = None

    async def start(self) -> Self:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError(f"{type(self).__name__} stopped before it started")
            await asyncio.sleep(0.005)
        return self

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._task = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class AppServer(InLoop, Listening):
    def __init__(
        self,
        config: ServerConfig,
        clock: Callable[[], float] = time.time,
        *,
        port: int | None = None,
        forwarded_allow_ips: str | None = None,
    ) -> None:
        """`port`: a given one (a restarted server where the last one was), else a free one.
        `forwarded_allow_ips`: the proxies whose X-Forwarded-For is believed, as `serve
        --forwarded-allow-ips` (default: uvicorn's, this machine)."""
        self.port = port or free_port()
        self.app = create_app(config, clock)
        self.runtime: Runtime = self.app.state.runtime
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=self.port,
                ws=guarded_websocket_protocol(config.header_timeout),
                ws_per_message_deflate=False,
                lifespan="on",
                log_level="warning",
                timeout_graceful_shutdown=5,  # as `serve`: a stuck socket cannot hang a test
                # The HTTP edge as `serve` has it: the header deadline, the keep-alive, proxies.
                http=header_timeout_protocol(config.header_timeout),
                timeout_keep_alive=config.keep_alive_timeout,
                proxy_headers=True,
                forwarded_allow_ips=forwarded_allow_ips,
            )
        )
        self._task: asyncio.Task[None] | None = None

    async def get(self, path: str) -> tuple[int, str]:
        async with httpx.AsyncClient() as client:
            r = await client.get(self.http + path, timeout=5)
            return r.status_code, r.text

    async def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with httpx.AsyncClient() as client:
            r = await client.post(self.http + path, json=body, headers=headers, timeout=10)
            return r.status_code, r.json()


@contextlib.asynccontextmanager
async def running(*servers: AppServer) -> AsyncIterator[None]:
    """Several instances of one deployment, started and stopped together (their waits overlap:
    uvicorn takes a moment to notice it should stop)."""
    try:
        await asyncio.gather(*(server.start() for server in servers))
        yield
    finally:
        await asyncio.gather(*(server.stop() for server in servers))
