"""The Shopify order backend: a shop's orders through the Admin GraphQL API (docs/actions.md).

Every call is one named GraphQL operation against the pinned `SHOPIFY_API_VERSION`:

    ShopOrderNameFormat   the shop's order name prefix and suffix (read once)
    FindOrder             orders(query: "name:…"): the order's id from the number the shopper typed
    OrderDetails          the order, its fulfilments with tracking, a first page of line items
    OrderLineItems        the next pages of line items
    OrderCancel           orderCancel (refund to the original payment, restock, notify)
    ReturnableItems       returnableFulfillments: what can still be returned, per fulfilment item
    ReturnRequest         returnRequest: a return the merchant approves or declines in the admin

`get_order` answers the raw order shape of the demo and HTTP backends, so the rules in
`orders.py` (email check, cancel, return window) run unchanged. Shopify's statuses are mapped in
`order_status`; the table is in docs/actions.md. Cost-based throttling (a `THROTTLED` error, or
HTTP 429) is waited out as the answer's throttle status says, up to `max_retries` times.

Two ways to authenticate: a static Admin API access token (an app made in the Shopify admin
before 2026), or the app's client ID and secret (a Dev Dashboard app): the backend then obtains
a token with the OAuth client credentials grant (`POST https://{shop}/admin/oauth/access_token`,
form-encoded `grant_type=client_credentials`, `client_id`, `client_secret`; the answer is
`{access_token, scope, expires_in}`, a token that lasts 24 hours), keeps it, renews it when less
than `RENEW_MARGIN` seconds or a tenth of its lifetime is left (whichever is shorter), and once
more when Shopify answers 401 to it (a renewal ahead of time that fails keeps the token until it
expires). One grant is in flight at a time: callers waiting for it share its token, or its
failure.

Errors become `BackendError` with a message naming the operation and what went wrong, never the
order number, the email, the token or the client secret: those messages are logged.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import httpx

from ..language.validators import BUILTIN
from .orders import BackendError

# Pinned: Shopify supports a stable version for at least 12 months after its release.
SHOPIFY_API_VERSION = "2026-10"

LINE_ITEMS_PAGE = 25  # line items per request (each page costs query points)
MAX_LINE_ITEM_PAGES = 40  # a thousand line items: past that the answer is not believed
FULFILLMENTS = 10  # fulfilments read per order
MAX_THROTTLE_WAIT = 10.0  # seconds: never wait longer than this for the bucket to refill
DEFAULT_THROTTLE_WAIT = 1.0  # when a throttled answer does not say how long
FINAL_SALE_TAG = "final-sale"
FINAL_SALE_ATTRIBUTES = frozenset({"final_sale", "final-sale", "final sale"})
TRUE_WORDS = frozenset({"true", "yes", "1", "y"})
RENEW_MARGIN = 300.0  # seconds: a granted token is renewed when less than this is left ...
RENEW_FRACTION = 0.1  # ... or less than this part of its lifetime, whichever is shorter
DEFAULT_TOKEN_LIFETIME = 86399.0  # a grant's answer without a usable expires_in: 24 hours

_SHOP = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")
_OAUTH_ERROR = re.compile(r"^[a-z_]{1,40}$")  # an OAuth error code, safe to log

# The flow's return reasons (flows/return_order.yaml) as Shopify's ReturnReason.
RETURN_REASONS = {
    "too_small": "SIZE_TOO_SMALL",
    "too_big": "SIZE_TOO_LARGE",
    "not_as_described": "NOT_AS_DESCRIBED",
    "changed_mind": "UNWANTED",
    "damaged": "DEFECTIVE",
    "wrong_item": "WRONG_ITEM",
}

_LINE_ITEM_FIELDS = """
fragment LineItemFields on LineItem {
  id
  name
  sku
  quantity
  unfulfilledQuantity
  isGiftCard
  originalUnitPriceSet { presentmentMoney { amount currencyCode } }
  customAttributes { key value }
  product { tags }
}
"""

SHOP_ORDER_NAME_FORMAT = """
query ShopOrderNameFormat {
  shop { orderNumberFormatPrefix orderNumberFormatSuffix }
}
"""

FIND_ORDER = """
query FindOrder($query: String!) {
  orders(first: 5, query: $query) {
    nodes { id name }
  }
}
"""

ORDER_DETAILS = (
    """
query OrderDetails($id: ID!, $lineItems: Int!, $fulfillments: Int!) {
  order(id: $id) {
    id
    name
    email
    processedAt
    cancelledAt
    displayFinancialStatus
    displayFulfillmentStatus
    currentTotalPriceSet { presentmentMoney { amount currencyCode } }
    billingAddress { firstName lastName }
    shippingAddress { firstName lastName }
    fulfillments(first: $fulfillments) {
      status
      displayStatus
      createdAt
      updatedAt
      deliveredAt
      estimatedDeliveryAt
      trackingInfo(first: 1) { company number url }
    }
    lineItems(first: $lineItems) {
      pageInfo { hasNextPage endCursor }
      nodes { ...LineItemFields }
    }
  }
}
"""
    + _LINE_ITEM_FIELDS
)

ORDER_LINE_ITEMS = (
    """
query OrderLineItems($id: ID!, $lineItems: Int!, $after: String!) {
  order(id: $id) {
    lineItems(first: $lineItems, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { ...LineItemFields }
    }
  }
}
"""
    + _LINE_ITEM_FIELDS
)

ORDER_CANCEL = """
mutation OrderCancel(
  $orderId: ID!
  $reason: OrderCancelReason!
  $refundMethod: OrderCancelRefundMethodInput!
  $restock: Boolean!
  $notifyCustomer: Boolean
  $staffNote: String
) {
  orderCancel(
    orderId: $orderId
    reason: $reason
    refundMethod: $refundMethod
    restock: $restock
    notifyCustomer: $notifyCustomer
    staffNote: $staffNote
  ) {
    job { id done }
    orderCancelUserErrors { field message code }
  }
}
"""

RETURNABLE_ITEMS = """
query ReturnableItems($orderId: ID!) {
  returnableFulfillments(orderId: $orderId, first: 5) {
    nodes {
      returnableFulfillmentLineItems(first: 25) {
        nodes {
          quantity
          fulfillmentLineItem { id lineItem { id sku } }
        }
      }
    }
  }
}
"""

RETURN_REQUEST = """
mutation ReturnRequest($input: ReturnRequestInput!) {
  returnRequest(input: $input) {
    return { id name status }
    userErrors { field message code }
  }
}
"""


def _validate_shop(shop: str) -> str:
    host = shop.strip().lower()
    if "://" in host or "/" in host:
        raise ValueError(
            "the Shopify shop is a bare domain like my-shop.myshopify.com, "
            "without https:// or a path"
        )
    if not _SHOP.match(host):
        raise ValueError(
            "the Shopify shop must be its permanent domain, like my-shop.myshopify.com "
            "(Settings > Domains in the Shopify admin), not a custom domain"
        )
    return host


def _credential(value: str, what: str) -> str:
    value = value.strip()
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"the Shopify {what} is empty or has spaces in it")
    return value


class _Unauthorized(BackendError):
    """Shopify answered 401 to the access token sent: with client credentials, renewed once."""


class _GrantFailed(BackendError):
    """The client credentials grant failed: callers that waited for it get the same error."""


class ShopifyBackend:
    """Implements `orders.OrderBackend` over one shop's Admin GraphQL API."""

    def __init__(
        self,
        shop: str,
        token: str | None = None,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        timeout: float = 5.0,
        endpoint: str | None = None,
        token_endpoint: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_retries: int = 3,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`shop`: its permanent domain, `my-shop.myshopify.com`. Either `token`, a static Admin
        API access token, or `client_id` and `client_secret`, a Dev Dashboard app's credentials
        (a token is then obtained and renewed as needed). `endpoint`: instead of
        `https://{shop}/admin/api/{SHOPIFY_API_VERSION}/graphql.json`, and `token_endpoint`
        instead of `https://{shop}/admin/oauth/access_token` (a local stand-in). `clock`: seconds,
        monotonic, for the granted token's expiry."""
        self.shop = _validate_shop(shop)
        has_id, has_secret = client_id is not None, client_secret is not None
        if token is not None and (has_id or has_secret):
            raise ValueError(
                "give the Shopify backend either an Admin API access token or a client ID and "
                "client secret, not both"
            )
        if token is None and not (has_id and has_secret):
            if has_id or has_secret:
                missing = "client secret" if has_id else "client ID"
                raise ValueError(
                    f"the Shopify app's {missing} is missing: client credentials need both the "
                    "client ID and the client secret"
                )
            raise ValueError(
                "the Shopify backend needs an Admin API access token, or the app's client ID "
                "and client secret"
            )
        self._static_token: str | None = None
        self._credentials: tuple[str, str] | None = None
        if token is not None:
            self._static_token = _credential(token, "Admin API access token")
        else:
            assert client_id is not None and client_secret is not None
            self._credentials = (
                _credential(client_id, "client ID"),
                _credential(client_secret, "client secret"),
            )
        self.endpoint = (
            endpoint or f"https://{self.shop}/admin/api/{SHOPIFY_API_VERSION}/graphql.json"
        )
        self.token_endpoint = token_endpoint or f"https://{self.shop}/admin/oauth/access_token"
        self._client = httpx.AsyncClient(
            headers={"Accept": "application/json", "User-Agent": "flowengine"},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )
        self._max_retries = max(0, max_retries)
        self._sleep = sleep
        self._clock = clock
        self._name_format: tuple[str, str] | None = None
        self._ids: OrderedDict[str, str] = OrderedDict()  # order name -> gid, oldest first
        # The granted token (client credentials only).
        self._token: str | None = None
        self._renew_at = -math.inf  # clock time from which the token is renewed before use
        self._expires_at = -math.inf  # clock time from which Shopify no longer takes it
        self.granted_scopes: frozenset[str] = frozenset()  # the last grant's `scope`
        self._grant_lock = asyncio.Lock()
        self._grants = 0  # grants done: a caller that waited sees whether one ended meanwhile
        self._grant_error: _GrantFailed | None = None  # the last grant's failure

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- the OrderBackend ---------------------------------------------------------------------

    async def get_order(self, number: str) -> dict[str, Any] | None:
        order_id = await self._find(number)
        if order_id is None:
            return None
        order = await self._details(order_id)
        if order is None:  # deleted since its id was remembered
            self._ids = OrderedDict((k, v) for k, v in self._ids.items() if v != order_id)
            return None
        return order_from_shopify(order)

    async def cancel_order(self, number: str, reason: str | None) -> dict[str, Any]:
        order_id = await self._require(number)
        note = "Cancelled by the shopper in the flowengine chat"
        if reason:
            note = f"{note}: {reason}"
        data = await self._call(
            "OrderCancel",
            ORDER_CANCEL,
            {
                "orderId": order_id,
                "reason": "CUSTOMER",
                "refundMethod": {"originalPaymentMethodsRefund": True},
                "restock": True,
                "notifyCustomer": True,
                "staffNote": note[:255],
            },
        )
        payload = _object(data.get("orderCancel"), "OrderCancel", "orderCancel")
        _refuse_on(payload.get("orderCancelUserErrors"), "cancel the order")
        found = await self._details(order_id)
        if found is None:
            raise BackendError("Shopify no longer finds the order it cancelled")
        order = order_from_shopify(found)
        # Shopify cancels in a background job: the order may not show it yet.
        order["status"] = "cancelled"
        return order

    async def create_return(
        self, number: str, skus: list[str], reason: str, method: str
    ) -> dict[str, Any]:
        if not skus:
            raise BackendError("a return needs at least one item")
        order_id = await self._require(number)
        data = await self._call("ReturnableItems", RETURNABLE_ITEMS, {"orderId": order_id})
        returnable = _object(
            data.get("returnableFulfillments"), "ReturnableItems", "returnableFulfillments"
        )
        wanted = set(skus)
        items: list[dict[str, Any]] = []
        found: set[str] = set()
        for fulfillment in _nodes(returnable, "ReturnableItems"):
            for node in _nodes(
                fulfillment.get("returnableFulfillmentLineItems"), "ReturnableItems"
            ):
                line = node.get("fulfillmentLineItem") or {}
                sku = _sku(line.get("lineItem") or {})
                quantity = node.get("quantity")
                if sku in wanted and isinstance(quantity, int) and quantity > 0 and line.get("id"):
                    found.add(sku)
                    items.append(
                        {
                            "fulfillmentLineItemId": line["id"],
                            "quantity": quantity,
                            "returnReason": RETURN_REASONS.get(reason, "OTHER"),
                            "customerNote": f"{reason} (return method: {method})"[:300],
                        }
                    )
        if found != wanted:
            raise BackendError("Shopify has nothing returnable left for an item asked to return")
        data = await self._call(
            "ReturnRequest",
            RETURN_REQUEST,
            {"input": {"orderId": order_id, "returnLineItems": items}},
        )
        payload = _object(data.get("returnRequest"), "ReturnRequest", "returnRequest")
        _refuse_on(payload.get("userErrors"), "open the return")
        created = payload.get("return")
        if not isinstance(created, dict) or not (created.get("name") or created.get("id")):
            raise BackendError("Shopify answered ReturnRequest without the return")
        return {"rma": str(created.get("name") or created["id"]), "label_url": None}

    async def create_ticket(self, ticket: dict[str, Any]) -> dict[str, Any]:
        """Shopify has no tickets: they stay in flowengine (the console's inbox, webhooks)."""
        return {"ticket_id": f"T-{secrets.token_hex(4).upper()}"}

    # -- finding orders -----------------------------------------------------------------------

    async def _require(self, number: str) -> str:
        order_id = await self._find(number)
        if order_id is None:
            raise BackendError("Shopify no longer finds the order")
        return order_id

    async def _find(self, number: str) -> str | None:
        """The order's id for what the shopper typed: `1001`, `#1001`, or the whole name with
        the shop's prefix or suffix. None when there is no such order."""
        typed = BUILTIN["order_number"].check(str(number))
        if typed is None:
            return None
        prefix, suffix = await self._order_name_format()
        full = f"{prefix}{typed}{suffix}" if typed.isdigit() else typed
        accepted = {_canonical(full), _canonical(typed)}
        cached = self._ids.get(_canonical(full))
        if cached is not None:
            self._ids.move_to_end(_canonical(full))
            return cached
        data = await self._call("FindOrder", FIND_ORDER, {"query": f'name:"{full}"'})
        orders = _object(data.get("orders"), "FindOrder", "orders")
        for node in _nodes(orders, "FindOrder"):
            name, order_id = node.get("name"), node.get("id")
            if isinstance(name, str) and isinstance(order_id, str) and _canonical(name) in accepted:
                self._remember(_canonical(full), order_id)
                return order_id
        return None

    def _remember(self, name: str, order_id: str) -> None:
        self._ids[name] = order_id
        while len(self._ids) > 1024:
            self._ids.popitem(last=False)

    async def _order_name_format(self) -> tuple[str, str]:
        if self._name_format is None:
            data = await self._call("ShopOrderNameFormat", SHOP_ORDER_NAME_FORMAT, {})
            shop = _object(data.get("shop"), "ShopOrderNameFormat", "shop")
            self._name_format = (
                str(shop.get("orderNumberFormatPrefix") or ""),
                str(shop.get("orderNumberFormatSuffix") or ""),
            )
        return self._name_format

    async def _details(self, order_id: str) -> dict[str, Any] | None:
        """The order with all its line items (the pages after the first fetched in turn), or
        None when there is no order with that id (any more)."""
        data = await self._call(
            "OrderDetails",
            ORDER_DETAILS,
            {"id": order_id, "lineItems": LINE_ITEMS_PAGE, "fulfillments": FULFILLMENTS},
        )
        if data.get("order", ...) is None:
            return None
        order = _object(data.get("order"), "OrderDetails", "order")
        page = _object(order.get("lineItems"), "OrderDetails", "lineItems")
        lines = _nodes(page, "OrderDetails")
        pages = 1
        while (page.get("pageInfo") or {}).get("hasNextPage"):
            if pages >= MAX_LINE_ITEM_PAGES:
                raise BackendError("Shopify answered more line item pages than flowengine reads")
            pages += 1
            cursor = page["pageInfo"].get("endCursor")
            if not isinstance(cursor, str) or not cursor:
                raise BackendError("Shopify answered OrderDetails with a next page but no cursor")
            data = await self._call(
                "OrderLineItems",
                ORDER_LINE_ITEMS,
                {"id": order_id, "lineItems": LINE_ITEMS_PAGE, "after": cursor},
            )
            more = _object(data.get("order"), "OrderLineItems", "order")
            page = _object(more.get("lineItems"), "OrderLineItems", "lineItems")
            lines.extend(_nodes(page, "OrderLineItems"))
        return {**order, "lineItems": {"nodes": lines}}

    # -- the wire -----------------------------------------------------------------------------

    async def _call(
        self, operation: str, query: str, variables: Mapping[str, Any]
    ) -> dict[str, Any]:
        """POST one operation; its `data`. Throttled answers are retried after the wait the
        throttle status asks for; a 401 to a granted token renews it once and tries again; every
        other failure is a `BackendError`."""
        body = {"query": query, "variables": dict(variables), "operationName": operation}
        renewed = False
        throttled = 0
        while True:
            token = await self._access_token()
            try:
                wait = await self._attempt(operation, body, token)
            except _Unauthorized:
                if self._credentials is None or renewed:
                    raise
                renewed = True
                await self._access_token(stale=token)
                continue
            if isinstance(wait, dict):
                return wait
            if throttled == self._max_retries:
                break
            throttled += 1
            await self._sleep(wait)
        raise BackendError(f"Shopify throttled {operation} {self._max_retries + 1} times in a row")

    async def _attempt(
        self, operation: str, body: dict[str, Any], token: str
    ) -> dict[str, Any] | float:
        """One request: its `data`, or how long to wait before trying again (throttled)."""
        try:
            response = await self._client.post(
                self.endpoint,
                json=body,
                headers={"X-Shopify-Access-Token": token, "Content-Type": "application/json"},
            )
        except httpx.TimeoutException as exc:
            raise BackendError(f"Shopify timed out on {operation}") from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"Shopify unreachable on {operation}: {type(exc).__name__}") from exc
        status = response.status_code
        if status == 401:
            raise _Unauthorized(
                f"Shopify refused the access token (401 on {operation}): it is wrong, revoked "
                "or expired, or the app was uninstalled"
            )
        if status == 403:
            raise BackendError(
                f"Shopify refused access (403 on {operation}): the app lacks an access scope, "
                "or the shop is unavailable"
            )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if status == 429:
            return throttle_wait(answer, response.headers.get("Retry-After"))
        if status >= 300:
            raise BackendError(f"Shopify answered {status} to {operation}")
        if not isinstance(answer, dict):
            raise BackendError(f"Shopify sent no JSON object for {operation}")
        errors = answer.get("errors")
        if errors:
            codes = _error_codes(errors)
            if "THROTTLED" in codes:
                return throttle_wait(answer, response.headers.get("Retry-After"))
            raise BackendError(f"Shopify answered {operation} with errors: {', '.join(codes)}")
        data = answer.get("data")
        if not isinstance(data, dict):
            raise BackendError(f"Shopify answered {operation} without data")
        return data

    # -- the access token ---------------------------------------------------------------------

    def _usable(self, stale: str | None) -> str | None:
        """The granted token, unless it is due for renewal or is the one Shopify refused."""
        token = self._token
        if token is None or token == stale or self._clock() >= self._renew_at:
            return None
        return token

    async def _access_token(self, stale: str | None = None) -> str:
        """The token to send: the static one, else the granted one, obtained or renewed first
        when there is none yet, it is due for renewal, or it is `stale` (Shopify answered 401
        to it). One grant at a time: whoever waited for it takes its token, or its error."""
        if self._static_token is not None:
            return self._static_token
        token = self._usable(stale)
        if token is not None:
            return token
        grants = self._grants
        async with self._grant_lock:
            token = self._usable(stale)
            if token is not None:
                return token
            # A grant that failed while this caller waited is not tried again at once.
            failed = self._grant_error if self._grants != grants else None
            mine = failed is None
            if mine:
                try:
                    token = await self._grant()
                except _GrantFailed as exc:
                    self._grant_error = failed = exc
                else:
                    self._grant_error = None
                    return token
                finally:
                    self._grants += 1
            assert failed is not None
            # A renewal ahead of time that failed: the token still works until it expires.
            token = self._token
            if token is not None and token != stale and self._clock() < self._expires_at:
                return token
            if mine:
                raise failed
            raise _GrantFailed(str(failed))

    async def _grant(self) -> str:
        """The client credentials grant: a new token, kept with the time to renew it."""
        assert self._credentials is not None
        client_id, client_secret = self._credentials
        started = self._clock()
        try:
            response = await self._client.post(
                self.token_endpoint,
                data={
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": client_secret,
                },
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        except httpx.TimeoutException as exc:
            raise _GrantFailed("Shopify timed out on the access token request") from exc
        except httpx.HTTPError as exc:
            raise _GrantFailed(
                f"Shopify unreachable on the access token request: {type(exc).__name__}"
            ) from exc
        try:
            answer = response.json()
        except ValueError:
            answer = None
        status = response.status_code
        if status != 200:
            error = answer.get("error") if isinstance(answer, dict) else None
            code = error if isinstance(error, str) and _OAUTH_ERROR.match(error) else None
            if status in (400, 401) and code in ("invalid_client", "invalid_request", None):
                raise _GrantFailed(
                    self._redact(
                        f"Shopify refused the client credentials ({status}"
                        f"{' ' + code if code else ''}): the client ID or secret is wrong or "
                        "was rotated, or the app is not installed on the shop"
                    )
                )
            raise _GrantFailed(
                self._redact(
                    f"Shopify answered {status}{' ' + code if code else ''} to the access token "
                    "request"
                )
            )
        if not isinstance(answer, dict):
            raise _GrantFailed("Shopify sent no JSON object for the access token request")
        token = answer.get("access_token")
        if not isinstance(token, str) or not token.strip() or any(c.isspace() for c in token):
            raise _GrantFailed("Shopify answered the access token request without a token")
        lifetime = _number(answer.get("expires_in"))
        if lifetime is None or not 0 < lifetime < math.inf:
            lifetime = DEFAULT_TOKEN_LIFETIME
        scope = answer.get("scope")
        self.granted_scopes = frozenset(
            s.strip() for s in (scope if isinstance(scope, str) else "").split(",") if s.strip()
        )
        self._token = token
        # From when it was asked for: the token's clock started no earlier.
        self._expires_at = started + lifetime
        self._renew_at = self._expires_at - min(RENEW_MARGIN, RENEW_FRACTION * lifetime)
        return token

    def _redact(self, message: str) -> str:
        """Never the secret or a token in a message, whatever Shopify echoed."""
        for secret in (self._credentials[1] if self._credentials else None, self._token):
            if secret:
                message = message.replace(secret, "…")
        return message


# -- reading answers --------------------------------------------------------------------------


def throttle_wait(answer: Any, retry_after: str | None = None) -> float:
    """Seconds until the bucket holds the cost asked for: (requested - available) / restore
    rate, from the answer's `extensions.cost`; else the Retry-After header; else a second."""
    extensions = answer.get("extensions") if isinstance(answer, dict) else None
    cost = extensions.get("cost") if isinstance(extensions, dict) else None
    if isinstance(cost, dict):
        status = cost.get("throttleStatus") or {}
        numbers = [
            _number(cost.get("requestedQueryCost")),
            _number(status.get("currentlyAvailable")),
            _number(status.get("restoreRate")),
        ]
        match numbers:
            case [float(requested), float(available), float(rate)] if rate > 0:
                return min(max((requested - available) / rate, 0.0), MAX_THROTTLE_WAIT)
    if retry_after:
        try:
            return min(max(float(retry_after), 0.0), MAX_THROTTLE_WAIT)
        except ValueError:
            pass
    return DEFAULT_THROTTLE_WAIT


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _error_codes(errors: Any) -> list[str]:
    """The errors' `extensions.code`s (never their messages: those can quote the variables)."""
    if not isinstance(errors, list):
        return ["error"]
    codes: list[str] = []
    for error in errors:
        extensions = error.get("extensions") if isinstance(error, dict) else None
        code = extensions.get("code") if isinstance(extensions, dict) else None
        code = str(code) if code else "error"
        if code not in codes:
            codes.append(code)
    return codes[:5]


def _refuse_on(user_errors: Any, what: str) -> None:
    if user_errors:
        codes = sorted(
            {
                str(e.get("code") or "INVALID") if isinstance(e, dict) else "INVALID"
                for e in (user_errors if isinstance(user_errors, list) else [user_errors])
            }
        )
        raise BackendError(f"Shopify refused to {what}: {', '.join(codes)}")


def _object(value: Any, operation: str, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BackendError(f"Shopify answered {operation} without {field}")
    return value


def _nodes(connection: Any, operation: str) -> list[dict[str, Any]]:
    nodes = connection.get("nodes") if isinstance(connection, dict) else None
    if not isinstance(nodes, list):
        raise BackendError(f"Shopify answered {operation} with a list that is not one")
    return [n for n in nodes if isinstance(n, dict)]


def _canonical(name: str) -> str:
    return re.sub(r"\s+", "", name).lstrip("#").casefold()


def _sku(line: Mapping[str, Any]) -> str:
    """A line item's SKU; a line without one is named by its id, so it can still be returned."""
    sku = line.get("sku")
    if isinstance(sku, str) and sku.strip():
        return sku.strip()
    return "item-" + str(line.get("id", "")).rsplit("/", 1)[-1]


def _day(value: Any) -> str | None:
    return value[:10] if isinstance(value, str) and len(value) >= 10 else None


def _money(money_set: Any) -> tuple[float | None, str]:
    money = money_set.get("presentmentMoney") if isinstance(money_set, dict) else None
    if not isinstance(money, dict):
        return None, ""
    try:
        amount: float | None = float(str(money.get("amount")))
    except ValueError:
        amount = None
    return amount, str(money.get("currencyCode") or "")


# -- Shopify's order as flowengine's ------------------------------------------------------------

_UNFULFILLED = frozenset({"UNFULFILLED", "OPEN", "RESTOCKED"})
_PROCESSING = frozenset(
    {"IN_PROGRESS", "PENDING_FULFILLMENT", "ON_HOLD", "SCHEDULED", "REQUEST_DECLINED"}
)
_DELIVERED = frozenset({"DELIVERED", "PICKED_UP"})
_LAST_MILE = frozenset({"OUT_FOR_DELIVERY", "READY_FOR_PICKUP"})
_INACTIVE_FULFILLMENT = frozenset({"CANCELLED", "ERROR", "FAILURE"})
_INACTIVE_DISPLAY = frozenset({"CANCELED", "LABEL_VOIDED"})


def active_fulfillments(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The shipments that are on their way or arrived (not cancelled, failed or voided)."""
    found = order.get("fulfillments")
    return [
        f
        for f in (found if isinstance(found, list) else [])
        if isinstance(f, dict)
        and f.get("status") not in _INACTIVE_FULFILLMENT
        and f.get("displayStatus") not in _INACTIVE_DISPLAY
    ]


def _delivered(fulfillment: Mapping[str, Any]) -> bool:
    return fulfillment.get("displayStatus") in _DELIVERED or bool(fulfillment.get("deliveredAt"))


def order_status(order: Mapping[str, Any]) -> str:
    """Shopify's order state as one of flowengine's statuses (the table in docs/actions.md)."""
    if order.get("cancelledAt"):
        return "cancelled"
    financial = order.get("displayFinancialStatus")
    if financial == "REFUNDED":
        return "refunded"
    if financial == "VOIDED":  # an authorised payment released: the order was cancelled
        return "cancelled"
    fulfillment = order.get("displayFulfillmentStatus")
    if fulfillment in _UNFULFILLED:
        return "unfulfilled"
    if fulfillment == "PARTIALLY_FULFILLED":
        return "partially_fulfilled"
    if fulfillment == "FULFILLMENT_NOT_REQUIRED":
        return "delivered"
    if fulfillment == "FULFILLED":
        shipments = active_fulfillments(order)
        if shipments and all(_delivered(f) for f in shipments):
            return "delivered"
        if any(f.get("displayStatus") in _LAST_MILE for f in shipments if not _delivered(f)):
            return "out_for_delivery"
        return "shipped"
    # IN_PROGRESS, ON_HOLD, SCHEDULED, …, and values newer than this code: being handled, and
    # nothing the bot may cancel on its own.
    return "processing"


def _is_final_sale(line: Mapping[str, Any]) -> bool:
    if line.get("isGiftCard"):
        return True
    product = line.get("product")
    tags = product.get("tags") if isinstance(product, dict) else None
    for tag in tags if isinstance(tags, list) else []:
        if re.sub(r"[\s_]+", "-", str(tag).strip().casefold()) == FINAL_SALE_TAG:
            return True
    attributes = line.get("customAttributes")
    for attribute in attributes if isinstance(attributes, list) else []:
        if not isinstance(attribute, dict):
            continue
        key = str(attribute.get("key") or "").strip().lstrip("_").casefold()
        value = str(attribute.get("value") or "").strip().casefold()
        if key in FINAL_SALE_ATTRIBUTES and value in TRUE_WORDS:
            return True
    return False


def _line_item(line: Mapping[str, Any]) -> dict[str, Any]:
    price, _ = _money(line.get("originalUnitPriceSet"))
    quantity = line.get("quantity")
    unfulfilled = line.get("unfulfilledQuantity")
    return {
        "sku": _sku(line),
        "name": str(line.get("name") or ""),
        "qty": quantity if isinstance(quantity, int) and quantity > 0 else 1,
        "price": price,
        "final_sale": _is_final_sale(line),
        "fulfilled": unfulfilled == 0,
    }


def _person(order: Mapping[str, Any]) -> str:
    for key in ("billingAddress", "shippingAddress"):
        address = order.get(key)
        if isinstance(address, dict):
            name = " ".join(
                str(address.get(part) or "").strip() for part in ("firstName", "lastName")
            ).strip()
            if name:
                return name
    return ""


def order_from_shopify(order: Mapping[str, Any]) -> dict[str, Any]:
    """A Shopify `Order` (as OrderDetails selects it) in the raw shape of the other backends."""
    status = order_status(order)
    shipments = active_fulfillments(order)
    on_the_way = [f for f in shipments if not _delivered(f)]
    newest_first = sorted(shipments, key=lambda f: str(f.get("createdAt") or ""), reverse=True)
    tracked = next((f for f in sorted(newest_first, key=_delivered) if f.get("trackingInfo")), None)
    infos = tracked.get("trackingInfo") if tracked else None
    tracking = infos[0] if isinstance(infos, list) and isinstance(infos[0], dict) else {}
    delivered_at: str | None = None
    if shipments and not on_the_way:  # every parcel arrived (refunded orders too)
        days = [_day(f.get("deliveredAt") or f.get("updatedAt")) for f in shipments]
        delivered_at = max((d for d in days if d), default=None)
    elif status == "delivered":  # FULFILLMENT_NOT_REQUIRED: nothing to ship
        delivered_at = _day(order.get("processedAt"))
    eta: str | None = None
    if status in ("shipped", "out_for_delivery", "partially_fulfilled"):
        etas = [_day(f.get("estimatedDeliveryAt")) for f in on_the_way]
        eta = max((d for d in etas if d), default=None)
    total, currency = _money(order.get("currentTotalPriceSet"))
    lines = order.get("lineItems")
    nodes = lines.get("nodes") if isinstance(lines, dict) else None
    name = str(order.get("name") or "")
    return {
        "number": name.lstrip("#"),
        "status": status,
        "email": str(order.get("email") or ""),
        "name": _person(order),
        "placed_at": _day(order.get("processedAt")),
        "delivered_at": delivered_at,
        "eta": eta,
        "carrier": tracking.get("company") or None,
        "tracking_number": tracking.get("number") or None,
        "tracking_url": tracking.get("url") or None,
        "items": [_line_item(n) for n in _iter_dicts(nodes)],
        "total": total,
        "currency": currency,
    }


def _iter_dicts(values: Any) -> Iterable[dict[str, Any]]:
    return (v for v in (values if isinstance(values, list) else []) if isinstance(v, dict))
