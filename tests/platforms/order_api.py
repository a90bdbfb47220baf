"""A merchant's own order API, speaking flowengine's HTTP contract (docs/actions.md, "The HTTP
backend"), over the demo orders: the HTTP backend's side of the backend contract test."""

from __future__ import annotations

from datetime import date

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowengine.actions.demo_backend import DemoBackend
from flowengine.actions.http_backend import HttpBackend
from tests.app_server import InLoop
from tests.redis_server import free_port


class LocalOrderApi(InLoop):
    def __init__(self, today: date) -> None:
        self.orders = DemoBackend(today)  # the shop's data, changed by cancels and returns
        self.port = free_port()
        app = Starlette(
            routes=[
                Route("/api/orders/{number}", self._order, methods=["GET"]),
                Route("/api/orders/{number}/cancel", self._cancel, methods=["POST"]),
                Route("/api/returns", self._return, methods=["POST"]),
                Route("/api/tickets", self._ticket, methods=["POST"]),
            ]
        )
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )

    def backend(self) -> HttpBackend:
        return HttpBackend(f"http://127.0.0.1:{self.port}/api", auth_env=None)

    async def _order(self, request: Request) -> Response:
        order = await self.orders.get_order(request.path_params["number"])
        return JSONResponse(order) if order is not None else JSONResponse({}, 404)

    async def _cancel(self, request: Request) -> Response:
        body = await request.json()
        number = request.path_params["number"]
        return JSONResponse(await self.orders.cancel_order(number, body.get("reason")))

    async def _return(self, request: Request) -> Response:
        b = await request.json()
        made = await self.orders.create_return(b["number"], b["skus"], b["reason"], b["method"])
        return JSONResponse(made, 201)

    async def _ticket(self, request: Request) -> Response:
        return JSONResponse(await self.orders.create_ticket(await request.json()), 201)
