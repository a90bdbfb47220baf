"""A local Shopify: the Admin GraphQL endpoint, served by uvicorn in the test's own loop.

It answers `POST /admin/api/{version}/graphql.json` the way Shopify does for the named
operations flowengine's Shopify backend sends (`FindOrder`, `OrderDetails`, `OrderCancel`, …):
the `X-Shopify-Access-Token` header is checked (401 otherwise), and every answer has the shape of
the recorded reference answers in `tests/fixtures/shopify/` (a test holds the two together).
It also answers `POST /admin/oauth/access_token`, the client credentials grant of a Dev Dashboard
app: a form-encoded `grant_type=client_credentials`, `client_id`, `client_secret` gets
`{access_token, scope, expires_in}` (400 `invalid_client` for wrong credentials), and the token
it issued is taken until `token_lifetime` seconds have passed on `clock`, besides the static
`token`.

The shop's orders are the demo orders (`load_demo_orders(today)`) as Shopify objects, so a flow
scenario ends the same on this shop as on the demo backend. Knobs for tests: `throttle` (the
next requests are answered THROTTLED, or HTTP 429), `fail_auth`, `fail_next` (any HTTP status),
`deny` (ACCESS_DENIED: a missing scope), `page_size` (line items per page, to force
pagination), `refuse_cancel`, `cancel_in_background`, `revoke_tokens` (the issued tokens answer
401), `fail_next_grant`; `requests` records what was asked, `grants` the token requests.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flowengine.actions.demo_backend import load_demo_orders
from flowengine.actions.shopify import SHOPIFY_API_VERSION, ShopifyBackend
from tests.app_server import InLoop
from tests.redis_server import free_port

SHOP = "flowengine-demo.myshopify.com"
TOKEN = "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"
# A Dev Dashboard app's credentials (Settings: Client ID, Secret).
CLIENT_ID = "7d3f0b9e21c84a6f95e0d1c2b3a4f5e6"
CLIENT_SECRET = "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"
GRANTED_SCOPES = "read_orders,write_orders,read_products,read_returns,write_returns,read_all_orders"
UNAUTHORIZED = "[API] Invalid API key or access token (unrecognized login or wrong password)"
# What a Standard plan's bucket looks like when nothing is throttled.
BUCKET = {"maximumAvailable": 2000.0, "currentlyAvailable": 1990.0, "restoreRate": 100.0}


@dataclass
class Throttle:
    count: int
    http_429: bool = False
    requested: int = 752
    available: float = 666.0
    restore_rate: float = 50.0
    retry_after: str = "2.0"


def _at(day: str | None, clock: str) -> str | None:
    return f"{day}T{clock}Z" if day else None


def _money(amount: Any, currency: str) -> dict[str, Any]:
    return {"presentmentMoney": {"amount": str(amount), "currencyCode": currency}}


def _cursor(index: int) -> str:
    return base64.b64encode(f'{{"last_index":{index}}}'.encode()).decode()


def _index(cursor: str) -> int:
    found = re.search(rb"\d+", base64.b64decode(cursor.encode()))
    return int(found.group()) if found else 0


class LocalShopify(InLoop):
    def __init__(
        self,
        today: date,
        *,
        token: str = TOKEN,
        prefix: str = "#",
        suffix: str = "",
        page_size: int = 250,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        token_lifetime: int = 86399,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.today = today
        self.token = token  # the static Admin API access token, always taken
        self.client_id, self.client_secret = client_id, client_secret
        self.token_lifetime = token_lifetime  # seconds: the grant's expires_in
        self.clock = clock  # a granted token is refused from its expiry on this clock
        self.grants: list[dict[str, Any]] = []  # the token requests, without the secret
        self.issued: dict[str, float] = {}  # granted token -> when it expires
        self._grant_failures: list[int] = []
        self.prefix, self.suffix = prefix, suffix
        self.page_size = page_size  # at most this many line items a page, whatever is asked
        self.orders: dict[str, dict[str, Any]] = {}  # gid -> Shopify order
        for demo in load_demo_orders(today).values():
            order = self._from_demo(demo)
            self.orders[order["id"]] = order
        self.requests: list[dict[str, Any]] = []
        self.cancellations: list[dict[str, Any]] = []
        self.returns: list[dict[str, Any]] = []
        self.fail_auth = False
        self.refuse_cancel: str | None = None  # an OrderCancelUserErrorCode to answer with
        self.cancel_in_background = False  # the cancel job has not run when the order is read
        self.deny: set[str] = set()  # operations answered ACCESS_DENIED (a missing scope)
        self._throttle: Throttle | None = None
        self._operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "ShopOrderNameFormat": self._shop_order_name_format,
            "FindOrder": self._find_order,
            "OrderDetails": self._order_details,
            "OrderLineItems": self._order_line_items,
            "OrderCancel": self._order_cancel,
            "ReturnableItems": self._returnable_items,
            "ReturnRequest": self._return_request,
        }
        self._failures: list[int] = []
        self.port = free_port()
        app = Starlette(
            routes=[
                Route("/admin/api/{version}/graphql.json", self._graphql, methods=["POST"]),
                Route("/admin/oauth/access_token", self._access_token, methods=["POST"]),
            ]
        )
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )

    # -- test knobs -------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/admin/api/{SHOPIFY_API_VERSION}/graphql.json"

    @property
    def token_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/admin/oauth/access_token"

    def backend(self, *, credentials: bool = False, **options: Any) -> ShopifyBackend:
        """A backend on this shop: with the static token, or (`credentials=True`) with the
        client ID and secret, the token endpoint and the shop's clock."""
        options.setdefault("endpoint", self.endpoint)
        if credentials:
            options.setdefault("client_id", self.client_id)
            options.setdefault("client_secret", self.client_secret)
            options.setdefault("token_endpoint", self.token_endpoint)
            options.setdefault("clock", self.clock)
            return ShopifyBackend(SHOP, **options)
        token = options.pop("token", self.token)
        return ShopifyBackend(SHOP, token, **options)

    def revoke_tokens(self) -> None:
        """Every granted token answers 401 from now on (the static token still works)."""
        self.issued.clear()

    def fail_next_grant(self, status: int, count: int = 1) -> None:
        self._grant_failures.extend([status] * count)

    def granted(self, token: str | None) -> bool:
        return token is not None and self.clock() < self.issued.get(token, -1.0)

    def throttle(self, count: int, **shape: Any) -> Throttle:
        """Answer the next `count` requests as throttled (`http_429=True`: with HTTP 429)."""
        self._throttle = Throttle(count, **shape)
        return self._throttle

    def fail_next(self, status: int, count: int = 1) -> None:
        self._failures.extend([status] * count)

    def operations(self) -> list[str]:
        return [r["operation"] for r in self.requests]

    def order(self, number: str) -> dict[str, Any]:
        return next(o for o in self.orders.values() if o["name"] == self._name(number))

    # -- serving ----------------------------------------------------------------------------

    async def _graphql(self, request: Request) -> JSONResponse:
        body = await request.json()
        query = str(body.get("query", ""))
        found = re.search(r"\b(?:query|mutation)\s+(\w+)", query)
        operation = found.group(1) if found else ""
        variables = body.get("variables") or {}
        self.requests.append(
            {
                "operation": operation,
                "variables": variables,
                "query": query,
                "token": request.headers.get("X-Shopify-Access-Token"),
                "version": request.path_params["version"],
            }
        )
        token = request.headers.get("X-Shopify-Access-Token")
        if self.fail_auth or (token != self.token and not self.granted(token)):
            return JSONResponse({"errors": UNAUTHORIZED}, status_code=401)
        if self._failures:
            status = self._failures.pop(0)
            return JSONResponse({"errors": f"HTTP {status}"}, status_code=status)
        if self._throttle is not None and self._throttle.count > 0:
            return self._throttled(self._throttle)
        handler = self._operations.get(operation)
        if handler is None or body.get("operationName", operation) != operation:
            error = {"message": f"No operation named '{operation}'", "extensions": {}}
            return JSONResponse({"errors": [error]})
        data = handler(variables)
        if operation in self.deny:
            field = next(iter(data))
            error = {
                "message": f"Access denied for {field} field.",
                "locations": [{"line": 3, "column": 3}],
                "path": [field],
                "extensions": {
                    "code": "ACCESS_DENIED",
                    "documentation": "https://shopify.dev/api/usage/access-scopes",
                    "requiredAccess": "`read_orders` access scope.",
                },
            }
            return JSONResponse(
                {"errors": [error], "data": {field: None}, "extensions": self._cost(10, 1)}
            )
        return JSONResponse({"data": data, "extensions": self._cost(10, 10)})

    async def _access_token(self, request: Request) -> JSONResponse:
        """The client credentials grant, form-encoded as the reference shows."""
        content_type = request.headers.get("content-type", "")
        form = content_type.split(";")[0].strip() == "application/x-www-form-urlencoded"
        fields = {
            key: values[-1]
            for key, values in (parse_qs((await request.body()).decode()) if form else {}).items()
        }
        self.grants.append(
            {
                "content_type": content_type,
                "fields": sorted(fields),
                "grant_type": fields.get("grant_type"),
                "client_id": fields.get("client_id"),
            }
        )
        if self._grant_failures:
            status = self._grant_failures.pop(0)
            return JSONResponse({"errors": f"HTTP {status}"}, status_code=status)
        if not {"grant_type", "client_id", "client_secret"} <= set(fields):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        if fields["grant_type"] != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if (fields["client_id"], fields["client_secret"]) != (self.client_id, self.client_secret):
            error = {
                "error": "invalid_client",
                "error_description": "Client authentication failed: unknown client or secret.",
            }
            return JSONResponse(error, status_code=400)
        token = f"shpat_{secrets.token_hex(16)}"
        self.issued[token] = self.clock() + self.token_lifetime
        return JSONResponse(
            {"access_token": token, "scope": GRANTED_SCOPES, "expires_in": self.token_lifetime}
        )

    def _throttled(self, throttle: Throttle) -> JSONResponse:
        throttle.count -= 1
        if throttle.http_429:
            return JSONResponse(
                {"errors": "Exceeded the rate limit. Reduce request rates to resume."},
                status_code=429,
                headers={"Retry-After": throttle.retry_after},
            )
        cost = {
            "requestedQueryCost": throttle.requested,
            "actualQueryCost": None,
            "throttleStatus": {
                "maximumAvailable": 1000.0,
                "currentlyAvailable": throttle.available,
                "restoreRate": throttle.restore_rate,
            },
        }
        error = {
            "message": "Throttled",
            "extensions": {
                "code": "THROTTLED",
                "documentation": "https://shopify.dev/api/usage/rate-limits",
            },
        }
        return JSONResponse({"errors": [error], "extensions": {"cost": cost}})

    @staticmethod
    def _cost(requested: int, actual: int) -> dict[str, Any]:
        return {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": dict(BUCKET),
            }
        }

    # -- the demo orders as Shopify's -------------------------------------------------------

    def _name(self, number: str) -> str:
        return f"{self.prefix}{number}{self.suffix}"

    def _from_demo(self, demo: dict[str, Any]) -> dict[str, Any]:
        number, status, currency = str(demo["number"]), demo["status"], demo["currency"]
        first, _, last = str(demo.get("name", "")).partition(" ")
        lines = []
        for i, item in enumerate(demo["items"], 1):
            tags = ["final-sale"] if item.get("final_sale") else []
            lines.append(
                {
                    "id": f"gid://shopify/LineItem/{number}{i:02d}",
                    "name": item["name"],
                    "sku": item["sku"],
                    "quantity": item["qty"],
                    "unfulfilledQuantity": 0,
                    "isGiftCard": False,
                    "originalUnitPriceSet": _money(item["price"], currency),
                    "customAttributes": [],
                    "product": {"tags": ["apparel", *tags]},
                }
            )
        placed, delivered, eta = demo.get("placed_at"), demo.get("delivered_at"), demo.get("eta")
        shipment = {
            "shipped": "IN_TRANSIT",
            "out_for_delivery": "OUT_FOR_DELIVERY",
            "delivered": "DELIVERED",
            "partially_fulfilled": "IN_TRANSIT",
            "refunded": "DELIVERED",
        }.get(status)
        shipped = [
            line
            for line, item in zip(lines, demo["items"], strict=True)
            if status != "partially_fulfilled" or item.get("fulfilled", True)
        ]
        fulfillments = []
        if shipment:
            # A carrier without a tracking number (or URL) is a tracking entry with nulls.
            tracking = (
                [
                    {
                        "company": demo.get("carrier"),
                        "number": demo.get("tracking_number"),
                        "url": demo.get("tracking_url"),
                    }
                ]
                if demo.get("tracking_number") or demo.get("carrier")
                else []
            )
            fulfillments.append(
                {
                    "status": "SUCCESS",
                    "displayStatus": shipment,
                    "createdAt": _at(placed, "16:00:00"),
                    "updatedAt": _at(delivered or placed, "16:00:00"),
                    "deliveredAt": _at(delivered, "15:00:00") if shipment == "DELIVERED" else None,
                    "estimatedDeliveryAt": _at(eta, "18:00:00"),
                    "trackingInfo": tracking,
                    "_lines": [
                        (f"gid://shopify/FulfillmentLineItem/{line['id'][-6:]}", line)
                        for line in shipped
                    ],
                }
            )
        if status in ("unfulfilled", "processing", "partially_fulfilled"):
            for line in lines:
                if line not in shipped or not shipment:
                    line["unfulfilledQuantity"] = line["quantity"]
        return {
            "id": f"gid://shopify/Order/5{number}",
            "name": self._name(number),
            "email": demo["email"],
            "processedAt": _at(placed, "10:00:00"),
            "cancelledAt": _at(placed, "12:00:00") if status == "cancelled" else None,
            "displayFinancialStatus": "REFUNDED" if status in ("cancelled", "refunded") else "PAID",
            "displayFulfillmentStatus": {
                "unfulfilled": "UNFULFILLED",
                "processing": "IN_PROGRESS",
                "partially_fulfilled": "PARTIALLY_FULFILLED",
                "cancelled": "UNFULFILLED",
            }.get(status, "FULFILLED"),
            "currentTotalPriceSet": _money(demo["total"], currency),
            "billingAddress": {"firstName": first, "lastName": last},
            "shippingAddress": {"firstName": first, "lastName": last},
            "fulfillments": fulfillments,
            "_lines": lines,
        }

    # -- operations -------------------------------------------------------------------------

    def _shop_order_name_format(self, variables: dict[str, Any]) -> dict[str, Any]:
        return {
            "shop": {"orderNumberFormatPrefix": self.prefix, "orderNumberFormatSuffix": self.suffix}
        }

    def _find_order(self, variables: dict[str, Any]) -> dict[str, Any]:
        """`name:` matches the whole order name, with or without its `#`, in any case."""
        found = re.search(r'name:(?:"([^"]*)"|(\S+))', str(variables.get("query", "")))
        wanted = (found.group(1) or found.group(2) or "") if found else ""
        nodes = [
            {"id": o["id"], "name": o["name"]}
            for o in self.orders.values()
            if wanted and o["name"].lstrip("#").casefold() == wanted.lstrip("#").casefold()
        ]
        return {"orders": {"nodes": nodes[:5]}}

    def _line_items(self, order: dict[str, Any], first: int, after: str | None) -> dict[str, Any]:
        start = _index(after) if after else 0
        size = max(1, min(int(first), self.page_size))
        page = order["_lines"][start : start + size]
        end = start + len(page)
        return {
            "pageInfo": {"hasNextPage": end < len(order["_lines"]), "endCursor": _cursor(end)},
            "nodes": [dict(line) for line in page],
        }

    def _order_details(self, variables: dict[str, Any]) -> dict[str, Any]:
        order = self.orders.get(str(variables.get("id")))
        if order is None:
            return {"order": None}
        fulfillments = [
            {k: v for k, v in f.items() if not k.startswith("_")}
            for f in order["fulfillments"][: int(variables.get("fulfillments", 10))]
        ]
        answer = {k: v for k, v in order.items() if not k.startswith("_")}
        answer["fulfillments"] = fulfillments
        answer["lineItems"] = self._line_items(order, variables.get("lineItems", 50), None)
        return {"order": answer}

    def _order_line_items(self, variables: dict[str, Any]) -> dict[str, Any]:
        order = self.orders.get(str(variables.get("id")))
        if order is None:
            return {"order": None}
        page = self._line_items(order, variables.get("lineItems", 50), variables.get("after"))
        return {"order": {"lineItems": page}}

    def _order_cancel(self, variables: dict[str, Any]) -> dict[str, Any]:
        order = self.orders.get(str(variables.get("orderId")))
        refusal: tuple[str, str] | None = None
        if self.refuse_cancel:
            refusal = (self.refuse_cancel, "The order can't be cancelled.")
        elif order is None:
            refusal = ("NOT_FOUND", "Order not found.")
        elif order["cancelledAt"]:
            refusal = ("INVALID", "Order has already been cancelled.")
        elif order["fulfillments"]:
            refusal = ("INVALID", "Cannot cancel an order with fulfillments.")
        if refusal is not None:
            error = {"field": ["orderId"], "message": refusal[1], "code": refusal[0]}
            return {"orderCancel": {"job": None, "orderCancelUserErrors": [error]}}
        assert order is not None
        self.cancellations.append({"orderId": order["id"], **variables})
        if not self.cancel_in_background:
            order["cancelledAt"] = f"{self.today.isoformat()}T09:00:00Z"
            if (variables.get("refundMethod") or {}).get("originalPaymentMethodsRefund"):
                order["displayFinancialStatus"] = "REFUNDED"
            for line in order["_lines"]:
                line["unfulfilledQuantity"] = 0
        job = {
            "id": f"gid://shopify/Job/{len(self.cancellations):08d}-0000-4000-8000-000000000000",
            "done": not self.cancel_in_background,
        }
        return {"orderCancel": {"job": job, "orderCancelUserErrors": []}}

    def _returned(self, fulfillment_line_id: str) -> int:
        return sum(
            i["quantity"]
            for r in self.returns
            for i in r["returnLineItems"]
            if i["fulfillmentLineItemId"] == fulfillment_line_id
        )

    def _returnable(self, order: dict[str, Any]) -> list[dict[str, Any]]:
        if order["cancelledAt"]:
            return []
        found = []
        for fulfillment in order["fulfillments"]:
            nodes = [
                {
                    "quantity": line["quantity"] - self._returned(fli),
                    "fulfillmentLineItem": {
                        "id": fli,
                        "lineItem": {"id": line["id"], "sku": line["sku"]},
                    },
                }
                for fli, line in fulfillment["_lines"]
                if line["quantity"] - self._returned(fli) > 0
            ]
            if nodes:
                found.append({"returnableFulfillmentLineItems": {"nodes": nodes}})
        return found

    def _returnable_items(self, variables: dict[str, Any]) -> dict[str, Any]:
        order = self.orders.get(str(variables.get("orderId")))
        nodes = self._returnable(order) if order is not None else []
        return {"returnableFulfillments": {"nodes": nodes}}

    def _return_request(self, variables: dict[str, Any]) -> dict[str, Any]:
        wanted = variables.get("input") or {}
        order = self.orders.get(str(wanted.get("orderId")))
        available = {
            node["fulfillmentLineItem"]["id"]: node["quantity"]
            for fulfillment in (self._returnable(order) if order is not None else [])
            for node in fulfillment["returnableFulfillmentLineItems"]["nodes"]
        }
        items = wanted.get("returnLineItems") or []
        for i, item in enumerate(items):
            if available.get(item.get("fulfillmentLineItemId"), 0) < int(item.get("quantity", 0)):
                error = {
                    "field": ["input", "returnLineItems", str(i), "quantity"],
                    "message": "Quantity is not available for return.",
                    "code": "INVALID",
                }
                return {"returnRequest": {"return": None, "userErrors": [error]}}
        if order is None or not items:
            error = {"field": ["input"], "message": "Order not found.", "code": "NOT_FOUND"}
            return {"returnRequest": {"return": None, "userErrors": [error]}}
        serial = sum(1 for r in self.returns if r["orderId"] == order["id"]) + 1
        created = {
            "id": f"gid://shopify/Return/{9450000 + len(self.returns) + 1}",
            "name": f"{order['name']}-R{serial}",
            "status": "REQUESTED",
        }
        self.returns.append({**wanted, "return": created})
        return {"returnRequest": {"return": created, "userErrors": []}}
