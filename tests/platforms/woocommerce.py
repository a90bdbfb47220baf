"""A local WooCommerce: the REST API v3 routes flowengine's WooCommerce backend calls, answering
in the request and response shapes of WooCommerce's REST API reference (examples recorded from
it are in tests/fixtures/woocommerce/, and tests check these answers against them).

The shop is the demo orders translated into WooCommerce orders (`woocommerce_orders`), so each
demo scenario comes out the same through the WooCommerce backend:

| demo status | here |
|---|---|
| unfulfilled | `on-hold` (1014: `pending`, Pending payment) |
| processing | `processing`, no tracking |
| shipped | `processing` with a Shipment Tracking item, TrackShip `in_transit` and its ETA |
| out_for_delivery | the same, TrackShip `out_for_delivery` |
| partially_fulfilled | the same as shipped, the unshipped line items carrying `Backordered` |
| delivered | `completed` on the delivery day (1005: TrackShip `delivered` too), its tracking item |
| cancelled, refunded | `cancelled`, `refunded` |

Final-sale items are products tagged `final-sale`. Served by uvicorn in the test's own event
loop on a free port. Knobs: `throttle(n)` (429 with Retry-After), `fail_auth`, `permissions`
("read": writes refused as WooCommerce refuses a read-only key), `max_per_page` (a host that
pages small), `broken` (every answer a 500, a login page…), and `requests`, every request seen.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowengine.actions.demo_backend import load_demo_orders
from flowengine.actions.woocommerce import WooCommerceBackend
from tests.app_server import InLoop
from tests.redis_server import free_port

KEY = "ck_5f0e4b7c2a9d41e8b3c6a0f17d2e9b4c8a1f6e3d"
SECRET = "cs_9a2c7e4f1b8d3a6c0e5f2b9d4a7c1e8f3b6d0a2c"
API = "/wp-json/wc/v3"
STATUSES = (
    "pending",
    "processing",
    "on-hold",
    "completed",
    "cancelled",
    "refunded",
    "failed",
    "trash",
    "checkout-draft",
    # Registered by tracking plugins (Advanced Shipment Tracking):
    "partial-shipped",
    "shipped",
    "delivered",
)
_LABELS = {"on-hold": "On hold", "pending": "Pending payment", "checkout-draft": "Draft"}
# The Shipment Tracking extension's predefined carriers (a few): name and link format.
PROVIDERS = {
    "ups": ("UPS", "https://www.ups.com/track?tracknum=%1$s"),
    "usps": ("USPS", "https://tools.usps.com/tracking/%1$s"),
    "dhl": ("DHL", "https://www.dhl.com/track?id=%1$s"),
}


@dataclass(frozen=True)
class Seen:
    """One request as the shop received it."""

    method: str
    path: str
    params: dict[str, str]
    body: Any
    authorization: str | None


def _error(status: int, code: str, message: str, **data: Any) -> JSONResponse:
    return JSONResponse(
        {"code": code, "message": message, "data": {"status": status, **data}}, status
    )


def _money(value: float) -> str:
    return f"{value:.2f}"


def _stamp(day: str | None, hour: int = 10) -> str | None:
    return f"{day}T{hour:02d}:00:00" if day else None


def _links(base: str, path: str, **more: str) -> dict[str, list[dict[str, str]]]:
    links = {
        "self": [{"href": f"{base}{path}"}],
        "collection": [{"href": f"{base}{path.rsplit('/', 1)[0]}"}],
    }
    links.update({rel: [{"href": f"{base}{href}"}] for rel, href in more.items()})
    return links


class LocalWooCommerce(InLoop):
    def __init__(
        self,
        today: date,
        *,
        id_offset: int = 0,
        number_prefix: str = "",
        max_per_page: int = 100,
        permissions: str = "read_write",
    ) -> None:
        """`id_offset`, `number_prefix`: order ids apart from their numbers, as a shop with
        Sequential Order Numbers has them (order "1003" is id 1003 + offset, number
        prefix + "1003")."""
        self.today = today
        self.port = free_port()
        self.max_per_page = max_per_page
        self.permissions = permissions
        self.fail_auth = False
        self.retry_after: str | None = "2"
        # Every request answered this (status, body, headers) while set: a host in trouble.
        self.broken: tuple[int, str, dict[str, str]] | None = None
        self.requests: list[Seen] = []
        self.orders: dict[int, dict[str, Any]] = {}
        self.products: dict[int, dict[str, Any]] = {}
        self.notes: dict[int, list[dict[str, Any]]] = {}
        self._throttled = 0
        self._next_id = {"line": 500, "meta": 9000, "note": 300, "product": 100}
        self._seed(id_offset, number_prefix)
        self.app = Starlette(
            routes=[
                Route(f"{API}/orders", self._guard(self._list_orders), methods=["GET"]),
                Route(
                    f"{API}/orders/{{id:int}}",
                    self._guard(self._order),
                    methods=["GET", "PUT", "POST", "PATCH"],
                ),
                Route(
                    f"{API}/orders/{{id:int}}/notes",
                    self._guard(self._notes),
                    methods=["GET", "POST"],
                ),
                Route(f"{API}/products", self._guard(self._list_products), methods=["GET"]),
                Route(
                    "/wp-json/wc-shipment-tracking/v3/orders/{id:int}/shipment-trackings",
                    self._guard(self._trackings),
                    methods=["GET"],
                ),
            ],
            exception_handlers={404: self._no_route, 405: self._no_route},
        )
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def backend(self, **options: Any) -> WooCommerceBackend:
        """A WooCommerce backend with this shop's key and secret."""
        return WooCommerceBackend(self.url, KEY, SECRET, **options)

    def throttle(self, count: int, retry_after: str | None = "2") -> None:
        """Answer the next `count` requests 429, with this Retry-After (None: without one)."""
        self._throttled = count
        self.retry_after = retry_after

    def order(self, number: str) -> dict[str, Any]:
        """The WooCommerce order numbered `number` (the object itself: change it to taste)."""
        return next(o for o in self.orders.values() if o["number"] == number)

    def add_order(self, order: dict[str, Any]) -> dict[str, Any]:
        self.orders[order["id"]] = order
        return order

    def copy_order(
        self, number: str, new_id: int, new_number: str, **changes: Any
    ) -> dict[str, Any]:
        """A copy of a demo order under another id and number, with `changes`."""
        order = copy.deepcopy(self.order(number))
        order.update(id=new_id, number=new_number, **changes)
        order["_links"] = _links(self.url, f"{API}/orders/{new_id}")
        return self.add_order(order)

    # -- the demo orders as WooCommerce orders ----------------------------------------------

    def _id(self, kind: str) -> int:
        self._next_id[kind] += 1
        return self._next_id[kind]

    def _seed(self, id_offset: int, number_prefix: str) -> None:
        skus: dict[str, int] = {}
        for number, demo in load_demo_orders(self.today).items():
            for item in demo["items"]:
                if item["sku"] not in skus:
                    skus[item["sku"]] = pid = self._id("product")
                    self.products[pid] = self._product(pid, item)
            order_id = int(number) + id_offset
            self.orders[order_id] = self._order_from_demo(
                order_id, number_prefix + number, demo, skus
            )
            self.notes[order_id] = []

    def _product(self, pid: int, item: dict[str, Any]) -> dict[str, Any]:
        slug = item["sku"].lower()
        tags = (
            [{"id": 51, "name": "Final sale", "slug": "final-sale"}] if item["final_sale"] else []
        )
        created = _stamp((self.today - timedelta(days=200)).isoformat())
        return {
            "id": pid,
            "name": item["name"],
            "slug": slug,
            "permalink": f"{self.url}/product/{slug}/",
            "date_created": created,
            "date_created_gmt": created,
            "date_modified": created,
            "date_modified_gmt": created,
            "type": "simple",
            "status": "publish",
            "featured": False,
            "catalog_visibility": "visible",
            "description": f"<p>{item['name']}</p>\n",
            "short_description": "",
            "sku": item["sku"],
            "price": _money(item["price"]),
            "regular_price": _money(item["price"]),
            "sale_price": "",
            "date_on_sale_from": None,
            "date_on_sale_from_gmt": None,
            "date_on_sale_to": None,
            "date_on_sale_to_gmt": None,
            "price_html": f'<span class="amount">{_money(item["price"])}</span>',
            "on_sale": False,
            "purchasable": True,
            "total_sales": 1,
            "virtual": False,
            "downloadable": False,
            "downloads": [],
            "download_limit": -1,
            "download_expiry": -1,
            "external_url": "",
            "button_text": "",
            "tax_status": "taxable",
            "tax_class": "",
            "manage_stock": False,
            "stock_quantity": None,
            "stock_status": "instock",
            "backorders": "notify",
            "backorders_allowed": True,
            "backordered": False,
            "sold_individually": False,
            "weight": "",
            "dimensions": {"length": "", "width": "", "height": ""},
            "shipping_required": True,
            "shipping_taxable": True,
            "shipping_class": "",
            "shipping_class_id": 0,
            "reviews_allowed": True,
            "average_rating": "0.00",
            "rating_count": 0,
            "related_ids": [],
            "upsell_ids": [],
            "cross_sell_ids": [],
            "parent_id": 0,
            "purchase_note": "",
            "categories": [{"id": 9, "name": "Clothing", "slug": "clothing"}],
            "tags": tags,
            "images": [],
            "attributes": [],
            "default_attributes": [],
            "variations": [],
            "grouped_products": [],
            "menu_order": 0,
            "meta_data": [],
            "_links": _links(self.url, f"{API}/products/{pid}"),
        }

    def _meta(self, key: str, value: Any) -> dict[str, Any]:
        return {"id": self._id("meta"), "key": key, "value": value}

    def _order_from_demo(
        self, order_id: int, number: str, demo: dict[str, Any], skus: dict[str, int]
    ) -> dict[str, Any]:
        status = demo["status"]
        placed = demo["placed_at"]
        first, _, last = demo["name"].partition(" ")
        shipped = status in ("shipped", "out_for_delivery", "partially_fulfilled", "delivered")
        wc_status = {
            "unfulfilled": "pending" if demo["number"] == "1014" else "on-hold",
            "processing": "processing",
            "shipped": "processing",
            "out_for_delivery": "processing",
            "partially_fulfilled": "processing",
            "delivered": "completed",
            "cancelled": "cancelled",
            "refunded": "refunded",
        }[status]
        meta = [self._meta("_order_stock_reduced", "yes")]
        if shipped and not demo.get("tracking_number") and status != "delivered":
            # Sent without a tracking number: no tracking item to show it, so the shop marks
            # it with a shipping plugin's status.
            wc_status = "shipped"
        elif shipped:
            day_shipped = min(date.fromisoformat(placed) + timedelta(days=1), self.today)
            when = datetime.combine(day_shipped, time(9), tzinfo=UTC)
            meta.append(
                self._meta(
                    "_wc_shipment_tracking_items",
                    [
                        {
                            "tracking_provider": "",
                            "custom_tracking_provider": demo["carrier"],
                            "custom_tracking_link": demo.get("tracking_url") or "",
                            "tracking_number": demo["tracking_number"],
                            "date_shipped": str(int(when.timestamp())),
                            "tracking_id": hashlib.md5(
                                demo["tracking_number"].encode()
                            ).hexdigest(),
                        }
                    ],
                )
            )
        trackship = {
            "shipped": "in_transit",
            "partially_fulfilled": "in_transit",
            "out_for_delivery": "out_for_delivery",
        }.get(status)
        if trackship or demo["number"] == "1005":
            meta.append(
                self._meta(
                    "shipment_status",
                    [
                        {
                            "status": trackship or "delivered",
                            "status_date": f"{demo.get('delivered_at') or self.today} 14:00:00",
                            "est_delivery_date": demo.get("eta") or "",
                        }
                    ],
                )
            )
        lines = []
        for item in demo["items"]:
            line_total = _money(item["price"] * item["qty"])
            waiting = status == "partially_fulfilled" and not item["fulfilled"]
            lines.append(
                {
                    "id": self._id("line"),
                    "name": item["name"],
                    "product_id": skus[item["sku"]],
                    "variation_id": 0,
                    "quantity": item["qty"],
                    "tax_class": "",
                    "subtotal": line_total,
                    "subtotal_tax": "0.00",
                    "total": line_total,
                    "total_tax": "0.00",
                    "taxes": [],
                    "meta_data": [self._meta("Backordered", item["qty"])] if waiting else [],
                    "sku": item["sku"],
                    "price": item["price"],
                }
            )
        completed = (
            _stamp(demo.get("delivered_at"), 15) if status in ("delivered", "refunded") else None
        )
        paid = None if wc_status in ("pending", "on-hold") else _stamp(placed, 11)
        address = {
            "first_name": first,
            "last_name": last,
            "company": "",
            "address_1": "Náměstí Míru 1",
            "address_2": "",
            "city": "Praha",
            "state": "",
            "postcode": "12000",
            "country": "CZ",
        }
        return {
            "id": order_id,
            "parent_id": 0,
            "number": number,
            "order_key": f"wc_order_{hashlib.md5(number.encode()).hexdigest()[:13]}",
            "created_via": "checkout",
            "version": "9.4.2",
            "status": wc_status,
            "currency": demo["currency"],
            "date_created": _stamp(placed),
            "date_created_gmt": _stamp(placed),
            "date_modified": completed or _stamp(placed, 12),
            "date_modified_gmt": completed or _stamp(placed, 12),
            "discount_total": "0.00",
            "discount_tax": "0.00",
            "shipping_total": "0.00",
            "shipping_tax": "0.00",
            "cart_tax": "0.00",
            "total": _money(demo["total"]),
            "total_tax": "0.00",
            "prices_include_tax": True,
            "customer_id": 0,
            "customer_ip_address": "",
            "customer_user_agent": "",
            "customer_note": "",
            "billing": {**address, "email": demo["email"], "phone": "+420 601 000 000"},
            "shipping": address,
            "payment_method": "bacs" if wc_status == "on-hold" else "stripe",
            "payment_method_title": "Direct bank transfer" if wc_status == "on-hold" else "Card",
            "transaction_id": "",
            "date_paid": paid,
            "date_paid_gmt": paid,
            "date_completed": completed,
            "date_completed_gmt": completed,
            "cart_hash": hashlib.md5(f"cart{number}".encode()).hexdigest(),
            "meta_data": meta,
            "line_items": lines,
            "tax_lines": [],
            "shipping_lines": [
                {
                    "id": self._id("line"),
                    "method_title": "Free shipping",
                    "method_id": "free_shipping",
                    "total": "0.00",
                    "total_tax": "0.00",
                    "taxes": [],
                    "meta_data": [],
                }
            ],
            "fee_lines": [],
            "coupon_lines": [],
            "refunds": [{"id": order_id + 5000, "reason": "", "total": f"-{_money(demo['total'])}"}]
            if status == "refunded"
            else [],
            "_links": _links(self.url, f"{API}/orders/{order_id}"),
        }

    # -- the HTTP side ----------------------------------------------------------------------

    def _guard(self, handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            try:
                body = await request.json() if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            self.requests.append(
                Seen(
                    request.method,
                    request.url.path,
                    dict(request.query_params),
                    body,
                    request.headers.get("authorization"),
                )
            )
            if self._throttled > 0:
                self._throttled -= 1
                headers = {"Retry-After": self.retry_after} if self.retry_after else {}
                return JSONResponse(
                    {
                        "code": "woocommerce_rest_too_many_requests",
                        "message": "Too many requests. Please wait and try again.",
                        "data": {"status": 429},
                    },
                    429,
                    headers=headers,
                )
            if self.broken is not None:
                status, text, headers = self.broken
                return Response(text, status, headers=headers, media_type="text/html")
            denied = self._denied(request)
            if denied is not None:
                return denied
            response: Response = await handler(request, body)
            return response

        return endpoint

    def _denied(self, request: Request) -> JSONResponse | None:
        """WooCommerce's answers to missing, wrong and read-only credentials."""
        header = request.headers.get("authorization", "")
        write = request.method in ("POST", "PUT", "PATCH", "DELETE")
        if not header.startswith("Basic "):
            if write:
                return _error(
                    401,
                    "woocommerce_rest_cannot_create",
                    "Sorry, you are not allowed to create resources.",
                )
            return _error(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        try:
            key, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            key, secret = "", ""
        if self.fail_auth or key != KEY:
            return _error(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        if secret != SECRET:
            return _error(
                401, "woocommerce_rest_authentication_error", "Consumer secret is invalid."
            )
        if write and self.permissions == "read":
            return _error(
                401,
                "woocommerce_rest_authentication_error",
                "The API key provided does not have write permissions.",
            )
        return None

    async def _no_route(self, request: Request, exc: Exception) -> Response:
        return _error(
            404, "rest_no_route", "No route was found matching the URL and request method."
        )

    def _paged(self, request: Request, items: list[dict[str, Any]]) -> Response:
        params = request.query_params
        try:
            page = int(params.get("page", "1"))
            per_page = int(params.get("per_page", "10"))
        except ValueError:
            return _error(400, "rest_invalid_param", "Invalid parameter(s): page")
        if not 1 <= per_page <= 100:
            return _error(
                400,
                "rest_invalid_param",
                "Invalid parameter(s): per_page",
                params={"per_page": "per_page must be between 1 (inclusive) and 100 (inclusive)"},
            )
        size = min(per_page, self.max_per_page)
        total = len(items)
        pages = max((total + size - 1) // size, 1) if total else 0
        if page > max(pages, 1):
            return _error(
                400,
                "woocommerce_rest_invalid_page_number",
                "The page number requested is larger than the number of pages available.",
            )
        chosen = items[(page - 1) * size : page * size]
        fields = [f for f in params.get("_fields", "").split(",") if f]
        if fields:
            chosen = [{k: v for k, v in item.items() if k in fields} for item in chosen]
        links = []
        if page > 1:
            links.append(f'<{request.url.include_query_params(page=page - 1)}>; rel="prev"')
        if page < pages:
            links.append(f'<{request.url.include_query_params(page=page + 1)}>; rel="next"')
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
        if links:
            headers["Link"] = ", ".join(links)
        return JSONResponse(chosen, headers=headers)

    async def _list_orders(self, request: Request, body: Any) -> Response:
        term = request.query_params.get("search", "").casefold()
        wanted = request.query_params.get("status", "any").split(",")

        def matches(order: dict[str, Any]) -> bool:
            if "any" in wanted:
                if order["status"] in ("trash", "checkout-draft"):
                    return False
            elif order["status"] not in wanted:
                return False
            if not term:
                return True
            billing = order["billing"]
            fields = [
                str(order["id"]),
                order["number"],
                billing["email"],
                billing["first_name"],
                billing["last_name"],
                *(li["name"] for li in order["line_items"]),
            ]
            return any(term in field.casefold() for field in fields)

        found = sorted(
            (o for o in self.orders.values() if matches(o)),
            key=lambda o: (o["date_created"], o["id"]),
            reverse=True,
        )
        return self._paged(request, found)

    async def _order(self, request: Request, body: Any) -> Response:
        order = self.orders.get(request.path_params["id"])
        if order is None:
            return _error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
        if request.method == "GET":
            return JSONResponse(order)
        if not isinstance(body, dict):
            return _error(400, "rest_invalid_json", "Invalid JSON body passed.")
        status = body.get("status")
        if status is not None:
            if status not in STATUSES:
                return _error(
                    400,
                    "rest_invalid_param",
                    "Invalid parameter(s): status",
                    params={"status": f"status is not one of {', '.join(STATUSES)}."},
                )
            if status != order["status"]:
                self._add_note(
                    order["id"],
                    f"Order status changed from {self._label(order['status'])} to "
                    f"{self._label(status)}.",
                    customer=False,
                    author="system",
                )
                order["status"] = status
                order["date_modified"] = order["date_modified_gmt"] = _stamp(
                    self.today.isoformat(), 16
                )
        return JSONResponse(order)

    @staticmethod
    def _label(status: str) -> str:
        return _LABELS.get(status, status.replace("-", " ").capitalize())

    def _add_note(self, order_id: int, text: str, *, customer: bool, author: str) -> dict[str, Any]:
        note_id = self._id("note")
        created = _stamp(self.today.isoformat(), 16)
        note = {
            "id": note_id,
            "author": author,
            "date_created": created,
            "date_created_gmt": created,
            "note": text,
            "customer_note": customer,
            "_links": _links(
                self.url,
                f"{API}/orders/{order_id}/notes/{note_id}",
                up=f"{API}/orders/{order_id}",
            ),
        }
        self.notes.setdefault(order_id, []).insert(0, note)
        return note

    async def _notes(self, request: Request, body: Any) -> Response:
        order_id = request.path_params["id"]
        if order_id not in self.orders:
            return _error(404, "woocommerce_rest_order_invalid_id", "Invalid order ID.")
        if request.method == "GET":
            return JSONResponse(self.notes.get(order_id, []))
        if not isinstance(body, dict) or not body.get("note"):
            return _error(
                400, "rest_missing_callback_param", "Missing parameter(s): note", params=["note"]
            )
        note = self._add_note(
            order_id, str(body["note"]), customer=bool(body.get("customer_note")), author="system"
        )
        return JSONResponse(note, 201)

    async def _list_products(self, request: Request, body: Any) -> Response:
        include = request.query_params.get("include", "")
        ids = {int(i) for i in include.split(",") if i.strip().isdigit()}
        found = [p for pid, p in sorted(self.products.items()) if not ids or pid in ids]
        return self._paged(request, found)

    async def _trackings(self, request: Request, body: Any) -> Response:
        """The Shipment Tracking extension's own API: items with their links built."""
        order = self.orders.get(request.path_params["id"])
        if order is None:
            return _error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
        items = next(
            (m["value"] for m in order["meta_data"] if m["key"] == "_wc_shipment_tracking_items"),
            [],
        )
        answer = []
        for item in items:
            name, link = PROVIDERS.get(
                item["tracking_provider"],
                (item["custom_tracking_provider"], item["custom_tracking_link"]),
            )
            shipped = datetime.fromtimestamp(int(item["date_shipped"]), UTC).date().isoformat()
            answer.append(
                {
                    "tracking_id": item["tracking_id"],
                    "tracking_provider": name,
                    "tracking_link": link.replace("%1$s", item["tracking_number"]),
                    "tracking_number": item["tracking_number"],
                    "date_shipped": shipped,
                    "_links": _links(
                        self.url,
                        f"/wp-json/wc-shipment-tracking/v3/orders/{order['id']}/shipment-trackings/{item['tracking_id']}",
                        up=f"{API}/orders/{order['id']}",
                    ),
                }
            )
        return JSONResponse(answer)
