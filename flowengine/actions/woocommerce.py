"""The WooCommerce order backend: a shop's own orders over the WooCommerce REST API (v3), in the
order shape the rules in `orders.py` read (docs/actions.md, "WooCommerce").

    GET  /wp-json/wc/v3/orders/{id}                 the order, when the number typed is its id
    GET  /wp-json/wc/v3/orders?search=…&page=…      else, a custom order number (paged)
    GET  /wp-json/wc/v3/products?include=…          the products' tags: `final-sale`
    GET  /wp-json/wc-shipment-tracking/v3/orders/{id}/shipment-trackings
                                                    a carrier's tracking link, when the order's
                                                    tracking item names a predefined carrier
    PUT  /wp-json/wc/v3/orders/{id}                 {"status": "cancelled"}
    POST /wp-json/wc/v3/orders/{id}/notes           the cancel reason; a return request

WooCommerce core knows payment and "completed", not parcels: tracking comes from the Shipment
Tracking extension's order meta, delivery progress from TrackShip's, a backordered line item
is one still to ship. `woocommerce_order` below is the whole mapping, a pure function.

The consumer key and secret travel as HTTP Basic credentials, so only over HTTPS (plain HTTP
is allowed to this machine only, for tests). Errors become `BackendError` with messages that
name the route and WooCommerce's error code, never an order number, an email or a credential.
A 429 is waited out (its Retry-After, through the injected `sleep`) and retried.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import secrets
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from .orders import BackendError

log = logging.getLogger("flowengine.actions.woocommerce")

API = "/wp-json/wc/v3"
TRACKING_API = "/wp-json/wc-shipment-tracking/v3"
FINAL_SALE_TAG = "final-sale"  # a product tag's slug
TRACKING_META = "_wc_shipment_tracking_items"  # the Shipment Tracking extension's order meta
TRACKSHIP_META = "shipment_status"  # TrackShip's, one entry per tracking item
BACKORDERED_META = "backordered"  # a line item's, added by WooCommerce (compared casefolded)
MAX_SEARCH_PAGES = 10
MAX_RETRY_WAIT = 10.0  # seconds: a longer Retry-After outlasts any action's timeout
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

# WooCommerce's statuses (and the custom ones tracking plugins add) that need no parcel data.
_GONE = frozenset({"trash", "checkout-draft", "auto-draft"})  # not an order to a shopper
_SETTLED = {
    "pending": "unfulfilled",  # Pending payment: nothing paid, nothing packed
    "on-hold": "unfulfilled",  # awaiting payment confirmation
    "cancelled": "cancelled",
    "failed": "cancelled",  # the payment failed: nothing will ship
    "refunded": "refunded",
}
_DONE = frozenset({"completed", "delivered"})  # `delivered`: Advanced Shipment Tracking's
# TrackShip's statuses of a parcel still on its way (others: delivered, or trouble).
_ON_ITS_WAY = {
    "pre_transit": "shipped",
    "in_transit": "shipped",
    "available_for_pickup": "shipped",
    "out_for_delivery": "out_for_delivery",
}
_CODE = re.compile(r"[a-z0-9_.-]{1,64}")


def _store_url(store_url: str) -> str:
    """The store's base URL, checked: HTTPS, or plain HTTP to this machine only."""
    parts = urlsplit(store_url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(
            "the WooCommerce store URL must be a full address such as https://shop.example"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(
            "the WooCommerce store URL must be the site's address only (no login, query or #)"
        )
    if parts.scheme == "http" and parts.hostname not in LOCAL_HOSTS:
        raise ValueError(
            "the WooCommerce store URL must use https://: the REST API key and secret would "
            "otherwise travel in clear text"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


class WooCommerceBackend:
    def __init__(
        self,
        store_url: str,
        key: str,
        secret: str,
        *,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_retries: int = 3,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        base = _store_url(store_url)
        if not key.strip() or not secret.strip():
            raise ValueError("the WooCommerce REST API consumer key and secret are both needed")
        self._client = httpx.AsyncClient(
            base_url=base,
            auth=httpx.BasicAuth(key.strip(), secret.strip()),
            headers={"Accept": "application/json", "User-Agent": "flowengine"},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )
        self._max_retries = max_retries
        self._sleep = sleep
        self._ids: OrderedDict[str, int] = OrderedDict()  # order number -> WooCommerce id
        self.tickets: deque[dict[str, Any]] = deque(maxlen=1000)  # the latest, for a look

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- the OrderBackend -----------------------------------------------------------------

    async def get_order(self, number: str) -> dict[str, Any] | None:
        wc = await self._find(number)
        if wc is None or _text(wc.get("status")) in _GONE:
            return None
        order = woocommerce_order(wc, await self._final_sale_products(wc))
        if order is not None and order["tracking_number"] and not order["tracking_url"]:
            await self._add_tracking_link(wc, order)
        return order

    async def cancel_order(self, number: str, reason: str | None) -> dict[str, Any]:
        wc = await self._find(number)
        current = woocommerce_order(wc, set()) if wc is not None else None
        if wc is None or current is None:
            raise BackendError("WooCommerce no longer has the order to cancel")
        if current["status"] != "unfulfilled":
            # Paid (or packed) since the shopper looked: a person refunds those, not the bot.
            now = _text(wc.get("status"))
            raise BackendError(
                "the WooCommerce order's status changed since the lookup (now "
                f"{now if _CODE.fullmatch(now) else 'unknown'}): not cancelled by the bot"
            )
        order_id = int(wc["id"])
        updated = await self._request(
            "PUT", f"{API}/orders/{order_id}", "PUT /orders/{id}", body={"status": "cancelled"}
        )
        if not isinstance(updated, dict):
            raise BackendError("WooCommerce answered the cancel with something not an order")
        why = _clean(reason) if reason else "no reason given"
        await self._note(order_id, f"Cancelled by the customer in the chat. Reason: {why}.")
        order = woocommerce_order(updated, await self._final_sale_products(updated))
        if order is None:
            raise BackendError("WooCommerce answered the cancel with an order it does not show")
        return order

    async def create_return(
        self, number: str, skus: list[str], reason: str, method: str
    ) -> dict[str, Any]:
        wc = await self._find(number)
        if wc is None:
            raise BackendError("WooCommerce no longer has the order to return")
        order_id = int(wc["id"])
        names = {
            _sku(li): f"{_text(li.get('name'))} ×{_int(li.get('quantity')) or 1}"
            for li in _dicts(wc.get("line_items"))
        }
        items = "; ".join(f"{names.get(sku, 'item')} (SKU {_clean(sku)})" for sku in skus)
        details = (
            f"items: {items}. Reason: {_clean(reason)}. "
            f"Method: {_RETURN_METHODS.get(method, _clean(method))}."
        )
        note = await self._request(
            "POST",
            f"{API}/orders/{order_id}/notes",
            "POST /orders/{id}/notes",
            body={"note": f"Return requested by the customer in the chat: {details}"},
        )
        note_id = _int(note.get("id")) if isinstance(note, dict) else None
        if note_id is None:
            raise BackendError("WooCommerce created the return note without an id")
        rma = f"R-{note_id}"
        await self._note(
            order_id,
            f"We have your return request {rma}: {details} "
            "We will be in touch about the next steps.",
            customer=True,
        )
        return {"rma": rma, "label_url": None}

    async def create_ticket(self, ticket: dict[str, Any]) -> dict[str, Any]:
        """WooCommerce has no tickets: they stay here (and go out as `ticket.created`)."""
        ticket_id = f"T-{secrets.token_hex(4).upper()}"
        self.tickets.append({"ticket_id": ticket_id, **ticket})
        return {"ticket_id": ticket_id}

    # -- finding an order -----------------------------------------------------------------

    async def _find(self, number: str) -> dict[str, Any] | None:
        """The WooCommerce order whose number is `number`: by id when the number is one (and
        the order's number agrees), else by a search, page after page."""
        wanted = number.strip().casefold()
        if not wanted:
            return None
        order_id = self._ids.get(wanted)
        if order_id is None and wanted.isascii() and wanted.isdigit() and len(wanted) <= 18:
            order_id = int(wanted)
        if order_id is not None:
            wc = await self._get_by_id(order_id)
            if wc is not None and _number(wc) == wanted:
                return self._remember(wanted, wc)
        for page in range(1, MAX_SEARCH_PAGES + 1):
            found, more = await self._search(wanted, page)
            if found is not None:
                return self._remember(wanted, found)
            if not more:
                return None
        log.warning("order search stopped after %d pages", MAX_SEARCH_PAGES)
        return None

    async def _get_by_id(self, order_id: int) -> dict[str, Any] | None:
        data = await self._request(
            "GET", f"{API}/orders/{order_id}", "GET /orders/{id}", missing_ok=True
        )
        if data is None:
            return None
        if not isinstance(data, dict):
            raise BackendError("WooCommerce sent an order that is not an object")
        return data

    async def _search(self, wanted: str, page: int) -> tuple[dict[str, Any] | None, bool]:
        """(The order numbered `wanted` on this page of the search, is there a next page?)"""
        response = await self._send(
            "GET",
            f"{API}/orders",
            "GET /orders?search",
            params={"search": wanted, "per_page": 100, "page": page},
        )
        data = _json(response, "GET /orders?search")
        if not isinstance(data, list):
            raise BackendError("WooCommerce sent an order search that is not a list")
        for wc in _dicts(data):
            if _number(wc) == wanted:
                return wc, False
        pages = _int(response.headers.get("X-WP-TotalPages"))
        if pages is not None:
            return None, bool(data) and page < pages
        return None, bool(data) and 'rel="next"' in response.headers.get("Link", "")

    def _remember(self, wanted: str, wc: dict[str, Any]) -> dict[str, Any]:
        order_id = _int(wc.get("id"))
        if order_id is None:
            raise BackendError("WooCommerce sent an order without an id")
        self._ids[wanted] = order_id
        self._ids.move_to_end(wanted)
        while len(self._ids) > 1024:
            self._ids.popitem(last=False)
        return wc

    # -- what an order needs besides itself ---------------------------------------------

    async def _final_sale_products(self, wc: Mapping[str, Any]) -> set[int]:
        """The order's products tagged `final-sale`."""
        ids = sorted(
            {pid for li in _dicts(wc.get("line_items")) if (pid := _int(li.get("product_id")))}
        )
        final: set[int] = set()
        for start in range(0, len(ids), 100):
            chunk = ids[start : start + 100]
            data = await self._request(
                "GET",
                f"{API}/products",
                "GET /products?include",
                params={
                    "include": ",".join(map(str, chunk)),
                    "per_page": 100,
                    "_fields": "id,tags",
                },
            )
            if not isinstance(data, list):
                raise BackendError("WooCommerce sent a product list that is not a list")
            for product in _dicts(data):
                slugs = {_text(t.get("slug")) for t in _dicts(product.get("tags"))}
                if FINAL_SALE_TAG in slugs and (pid := _int(product.get("id"))):
                    final.add(pid)
        return final

    async def _add_tracking_link(self, wc: Mapping[str, Any], order: dict[str, Any]) -> None:
        """A predefined carrier's tracking item holds no link: the Shipment Tracking extension
        builds it. Without the extension's API (another plugin wrote the meta), no link."""
        try:
            data = await self._request(
                "GET",
                f"{TRACKING_API}/orders/{int(wc['id'])}/shipment-trackings",
                "GET /shipment-trackings",
                missing_ok=True,
            )
        except BackendError as exc:
            log.info("no tracking link: %s", exc)
            return
        for item in _dicts(data if isinstance(data, list) else []):
            if _text(item.get("tracking_number")) == order["tracking_number"]:
                order["tracking_url"] = _text(item.get("tracking_link")) or None
                order["carrier"] = _text(item.get("tracking_provider")) or order["carrier"]

    async def _note(self, order_id: int, text: str, *, customer: bool = False) -> None:
        """A note after the change itself: the change stands if the note fails."""
        try:
            await self._request(
                "POST",
                f"{API}/orders/{order_id}/notes",
                "POST /orders/{id}/notes",
                body={"note": text, "customer_note": customer},
            )
        except BackendError as exc:
            log.warning("order note not added: %s", exc)

    # -- HTTP -----------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        route: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        missing_ok: bool = False,
    ) -> Any:
        """The answer's JSON; None for a missing order (`missing_ok`). `route` names the call
        in errors (and so in logs) without the order's id."""
        response = await self._send(method, path, route, params=params, body=body)
        if response.status_code == 404:  # the order's id: WooCommerce has no such order
            if missing_ok:
                return None
            raise BackendError(f"WooCommerce has no such order (404) on {route}")
        return _json(response, route)

    async def _send(
        self,
        method: str,
        path: str,
        route: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> httpx.Response:
        """One call, a 429 waited out and retried; any other failure is a `BackendError`."""
        for attempt in range(self._max_retries + 1):
            try:
                response = await self._client.request(method, path, params=params, json=body)
            except httpx.TimeoutException:
                raise BackendError(f"WooCommerce timed out on {route}") from None
            except httpx.HTTPError as exc:
                raise BackendError(
                    f"WooCommerce unreachable on {route}: {type(exc).__name__}"
                ) from None
            if response.status_code != 429:
                break
            if attempt == self._max_retries:
                raise BackendError(
                    f"WooCommerce still throttling (429) on {route} after "
                    f"{self._max_retries} retries"
                )
            wait = _retry_after(response.headers.get("Retry-After"), attempt)
            if wait > MAX_RETRY_WAIT:
                raise BackendError(
                    f"WooCommerce throttling (429) on {route}: asked to wait {wait:.0f}s"
                )
            await self._sleep(wait)
        status = response.status_code
        if status < 300 or (status == 404 and _missing(response)):
            return response
        if status in (401, 403):
            raise BackendError(
                f"WooCommerce refused the REST API key ({status} {_code(response)}) on {route}: "
                "check the consumer key and secret, and that the key has Read/Write permissions"
            )
        if status < 400:
            raise BackendError(
                f"WooCommerce redirected ({status}) on {route}: "
                "use the store URL the site redirects to"
            )
        if status == 404:
            raise BackendError(
                f"WooCommerce answered 404 {_code(response)} on {route}: check the store URL "
                "and that WordPress permalinks are not 'Plain'"
            )
        raise BackendError(f"WooCommerce answered {status} {_code(response)} on {route}")


# -- WooCommerce's order, in flowengine's shape -------------------------------------------


def woocommerce_order(wc: Mapping[str, Any], final_sale: set[int]) -> dict[str, Any] | None:
    """The order as `orders.py` reads it, from a WooCommerce order object and the ids of its
    products tagged final sale; None for what is no order to a shopper (trash, a draft)."""
    wc_status = _text(wc.get("status"))
    if wc_status in _GONE:
        return None
    lines = _dicts(wc.get("line_items"))
    tracking = _tracking_items(wc)
    latest = tracking[-1] if tracking else None
    progress = _trackship(wc, len(tracking) - 1) if tracking else {}
    parcel = _text(progress.get("status"))
    delivered_on = _day(progress.get("status_date")) if parcel == "delivered" else None
    waiting = [li for li in lines if _backordered(li)]

    if wc_status in _SETTLED:
        status = _SETTLED[wc_status]
    elif wc_status in _DONE:
        # "Completed" is the shop's word for done: delivered, unless TrackShip sees the parcel
        # still on its way (a shop that completes orders when they leave).
        status = _ON_ITS_WAY.get(parcel, "delivered")
    elif wc_status == "partial-shipped" or (latest is not None and waiting):
        status = "partially_fulfilled"
    elif latest is None and wc_status != "shipped":
        status = "processing"  # processing (paid, being packed), or a plugin's own status
    elif parcel == "delivered":
        status = "delivered"
    else:
        status = _ON_ITS_WAY.get(parcel, "shipped")

    delivered_at = None
    if status in ("delivered", "cancelled", "refunded"):
        delivered_at = delivered_on or _day(wc.get("date_completed"))
        if status == "delivered" and delivered_at is None:
            delivered_at = _day(wc.get("date_modified"))
    on_its_way = status in ("shipped", "out_for_delivery", "partially_fulfilled")
    billing: Mapping[str, Any] = wc["billing"] if isinstance(wc.get("billing"), dict) else {}
    name = " ".join(
        part for k in ("first_name", "last_name") if (part := _text(billing.get(k)).strip())
    )
    items = [
        {
            "sku": _sku(li),
            "name": html.unescape(_text(li.get("name"))),
            "qty": _int(li.get("quantity")) or 1,
            "price": _money(li.get("price")),
            "final_sale": _int(li.get("product_id")) in final_sale,
            "fulfilled": _fulfilled(status, li),
        }
        for li in lines
    ]
    return {
        "number": _text(wc.get("number")) or _text(wc.get("id")),
        "status": status,
        "email": _text(billing.get("email")),
        "name": name,
        "placed_at": _day(wc.get("date_created")),
        "delivered_at": delivered_at,
        "eta": (_day(progress.get("est_delivery_date")) if on_its_way else None),
        "carrier": _carrier(latest) if latest else None,
        "tracking_number": (_text(latest.get("tracking_number")) or None) if latest else None,
        "tracking_url": _tracking_link(latest) if latest else None,
        "items": items,
        "total": _money(wc.get("total")),
        "currency": _text(wc.get("currency")),
    }


_RETURN_METHODS = {
    "drop_off": "drop it at a parcel shop",
    "pickup": "courier pickup",
    "label": "a prepaid return label",
}


def _tracking_items(wc: Mapping[str, Any]) -> list[dict[str, Any]]:
    return _dicts(_listed(_meta(wc.get("meta_data"), TRACKING_META)))


def _trackship(wc: Mapping[str, Any], index: int) -> dict[str, Any]:
    """TrackShip's entry for the tracking item at `index` (its list runs parallel)."""
    entries = _meta(wc.get("meta_data"), TRACKSHIP_META)
    if isinstance(entries, dict):
        entry = entries.get(str(index))
    elif isinstance(entries, list) and 0 <= index < len(entries):
        entry = entries[index]
    else:
        entry = None
    return entry if isinstance(entry, dict) else {}


def _carrier(item: Mapping[str, Any]) -> str | None:
    for key in ("custom_tracking_provider", "formatted_tracking_provider", "tracking_provider"):
        if value := _text(item.get(key)).strip():
            return value
    return None


def _tracking_link(item: Mapping[str, Any]) -> str | None:
    number = _text(item.get("tracking_number"))
    for key in ("custom_tracking_link", "formatted_tracking_link", "ast_tracking_link"):
        if link := _text(item.get(key)).strip():
            # The extension's placeholders: %1$s the number (postcode and country not known).
            return link.replace("%1$s", number).replace("%number%", number)
    return None


def _backordered(line: Mapping[str, Any]) -> bool:
    return any(
        _text(m.get("key")).strip().casefold() == BACKORDERED_META
        for m in _dicts(line.get("meta_data"))
    )


def _meta(entries: Any, key: str) -> Any:
    value = None
    for entry in _dicts(entries):
        if entry.get("key") == key:
            value = entry.get("value")
    return value


def _listed(value: Any) -> list[Any]:
    """A PHP array as JSON: a list, or an object when its keys are not 0, 1, 2…"""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [
            value[k] for k in sorted(value, key=lambda k: (_int(k) is None, _int(k) or 0, str(k)))
        ]
    return []


def _number(wc: Mapping[str, Any]) -> str:
    return (_text(wc.get("number")) or _text(wc.get("id"))).strip().lstrip("#").casefold()


def _sku(line: Mapping[str, Any]) -> str:
    """The line's SKU, or its line item id where the product has none."""
    return _text(line.get("sku")).strip() or f"line-{_text(line.get('id'))}"


def _missing(response: httpx.Response) -> bool:
    """A 404 about the order itself (not a URL with no REST API behind it)."""
    return _code(response).endswith("_invalid_id")


def _json(response: httpx.Response, route: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise BackendError(f"WooCommerce sent invalid JSON on {route}") from None


def _code(response: httpx.Response) -> str:
    """WooCommerce's error code (`woocommerce_rest_…`), if the body has a plausible one."""
    try:
        body = response.json()
    except ValueError:
        return "(not JSON)"
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else "(no code)"


def _retry_after(value: str | None, attempt: int) -> float:
    """Seconds to wait: Retry-After's seconds or date, else 1, 2, 4… s."""
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            pass
        else:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max((when - datetime.now(UTC)).total_seconds(), 0.0)
    return float(2**attempt)


def _clean(text: Any) -> str:
    """Shopper-given text for an order note: one line, short, no markup."""
    return html.escape(" ".join(str(text).split())[:300], quote=False)


def _day(value: Any) -> str | None:
    text = _text(value)
    return text[:10] if re.match(r"\d{4}-\d{2}-\d{2}", text) else None


def _money(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _dicts(value: Any) -> list[dict[str, Any]]:
    items: Iterable[Any] = value if isinstance(value, list) else ()
    return [item for item in items if isinstance(item, dict)]


def _fulfilled(status: str, line: Mapping[str, Any]) -> bool:
    """Whether a line item has left the warehouse: nothing has before the order ships, and a
    backordered item of a partly sent order has not."""
    if status in ("unfulfilled", "processing"):
        return False
    return not (status == "partially_fulfilled" and _backordered(line))
