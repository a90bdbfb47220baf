"""The Shopify order backend against a local Shopify (tests/platforms/shopify.py) that answers
in the Admin GraphQL API's documented shapes (tests/fixtures/shopify/), seeded with the demo
orders: lookups, status mapping, pagination, throttling, auth failures, the client credentials
grant and its token's renewal, cancel and returns."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from flowengine.actions import orders
from flowengine.actions import shopify as sh
from flowengine.actions.demo_backend import load_demo_orders
from flowengine.actions.orders import BackendError
from flowengine.actions.perform import BackendActions
from flowengine.actions.shopify import SHOPIFY_API_VERSION, ShopifyBackend, order_status
from flowengine.engine import model as m
from tests.conftest import TODAY
from tests.platforms.shopify import CLIENT_ID, CLIENT_SECRET, SHOP, TOKEN, LocalShopify

FIXTURES = Path(__file__).parent / "fixtures" / "shopify"
DEMO = load_demo_orders(TODAY)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))


class Sleeps(list[float]):
    """The injected sleep: records the waits asked for, never sleeps."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest_asyncio.fixture
async def shop() -> AsyncIterator[LocalShopify]:
    async with LocalShopify(TODAY) as local:
        yield local


async def _run(name: str, backend: Any, **args: Any) -> m.ActionResult:
    return await BackendActions(backend, lambda: TODAY).perform(m.CallAction("1", name, args, 5.0))


# -- lookup -----------------------------------------------------------------------------------


async def test_lookup_maps_fulfilment_and_tracking(shop: LocalShopify) -> None:
    backend = shop.backend()
    try:
        order = await backend.get_order("1003")
    finally:
        await backend.aclose()
    demo = DEMO["1003"]
    assert order == {
        "number": "1003",
        "status": "shipped",
        "email": "chloe.pop@example.com",
        "name": "Chloe Pop",
        "placed_at": demo["placed_at"],
        "delivered_at": None,
        "eta": demo["eta"],
        "carrier": "DHL",
        "tracking_number": "JD014600006281234567",
        "tracking_url": "https://www.dhl.com/track?id=JD014600006281234567",
        "items": [
            {
                "sku": "JEAN-IND-32",
                "name": "Slim jeans, indigo, 32",
                "qty": 1,
                "price": 79.0,
                "final_sale": False,
                "fulfilled": True,
            }
        ],
        "total": 79.0,
        "currency": "EUR",
    }
    assert shop.operations() == ["ShopOrderNameFormat", "FindOrder", "OrderDetails"]
    assert {r["version"] for r in shop.requests} == {SHOPIFY_API_VERSION}
    assert {r["token"] for r in shop.requests} == {TOKEN}
    assert shop.grants == []  # a static token: no token request
    assert shop.requests[1]["variables"] == {"query": 'name:"#1003"'}


@pytest.mark.parametrize("number", sorted(DEMO))
async def test_every_demo_order_reads_as_on_the_demo_backend(
    shop: LocalShopify, number: str
) -> None:
    """Every status the flows know, through Shopify's statuses and back: the same order."""
    backend = shop.backend()
    try:
        order = await backend.get_order(number)
    finally:
        await backend.aclose()
    assert order is not None
    demo = DEMO[number]
    fields = ("number", "status", "email", "name", "placed_at", "delivered_at", "eta")
    fields += ("carrier", "tracking_number", "tracking_url", "total", "currency")
    assert {k: order[k] for k in fields} == {k: demo.get(k) for k in fields}
    # Shopify knows what has not shipped yet: an unfulfilled order's items are not fulfilled.
    not_shipped = demo["status"] in ("unfulfilled", "processing")
    expected = [{**i, "fulfilled": i["fulfilled"] and not not_shipped} for i in demo["items"]]
    assert order["items"] == expected
    described, on_demo = orders.describe_order(order, TODAY), orders.describe_order(demo, TODAY)
    for key in ("status", "cancellable", "returnable", "return_reason", "late", "has_final_sale"):
        assert described[key] == on_demo[key], key


async def test_unknown_order_and_garbage_are_none(shop: LocalShopify) -> None:
    backend = shop.backend()
    try:
        assert await backend.get_order("99999") is None
        assert await backend.get_order("#1001-R1") is None  # a name not of this shop's orders
        assert await backend.get_order("<script>") is None
    finally:
        await backend.aclose()
    assert shop.operations() == ["ShopOrderNameFormat", "FindOrder", "FindOrder"]


async def test_an_order_deleted_since_it_was_found_is_none(shop: LocalShopify) -> None:
    backend = shop.backend()
    try:
        assert await backend.get_order("1003") is not None
        del shop.orders[shop.order("1003")["id"]]
        assert await backend.get_order("1003") is None  # its remembered id answers no order
        assert await backend.get_order("1003") is None
    finally:
        await backend.aclose()
    assert shop.operations() == [
        "ShopOrderNameFormat",
        "FindOrder",
        "OrderDetails",
        "OrderDetails",
        "FindOrder",
    ]


async def test_wrong_email_is_not_found_like_an_unknown_order(shop: LocalShopify) -> None:
    backend = shop.backend()
    try:
        ok = await _run("orders.lookup", backend, number="#1003", email=" CHLOE.POP@example.com ")
        wrong = await _run("orders.lookup", backend, number="1003", email="other@example.com")
        unknown = await _run(
            "orders.lookup", backend, number="99999", email="chloe.pop@example.com"
        )
    finally:
        await backend.aclose()
    assert (
        ok.outcome == "ok" and ok.data["status"] == "shipped" and ok.data["first_name"] == "Chloe"
    )
    assert wrong == unknown == m.ActionResult("1", "not_found", None)


async def test_partial_fulfilment(shop: LocalShopify) -> None:
    backend = shop.backend()
    try:
        result = await _run(
            "orders.lookup", backend, number="1007", email="gina.ionescu@example.com"
        )
    finally:
        await backend.aclose()
    order = result.data
    assert order["status"] == "partially_fulfilled"
    assert [(i["sku"], i["fulfilled"]) for i in order["items"]] == [
        ("SCF-BEI", True),
        ("GLV-BRN-M", False),
    ]
    assert (order["shipped_count"], order["item_count"]) == (1, 2)
    assert order["carrier"] == "DPD" and order["eta"] == DEMO["1007"]["eta"]


async def test_shop_order_name_prefix_and_suffix() -> None:
    async with LocalShopify(TODAY, prefix="EU-", suffix="-B") as local:
        backend = local.backend()
        try:
            by_number = await backend.get_order("1003")
            by_name = await backend.get_order("eu-1003-b")
            cancelled = await _run(
                "orders.cancel", backend, number="1001", email="anna.novak@example.com"
            )
        finally:
            await backend.aclose()
    assert by_number is not None and by_number["number"] == "EU-1003-B"
    assert by_name == by_number
    assert cancelled.data["cancelled"] is True
    assert local.operations().count("ShopOrderNameFormat") == 1  # read once


async def test_line_items_are_read_page_by_page() -> None:
    async with LocalShopify(TODAY, page_size=1) as local:
        backend = local.backend()
        try:
            order = await backend.get_order("1005")
        finally:
            await backend.aclose()
    assert order is not None
    assert [i["sku"] for i in order["items"]] == ["TEE-WHT-L", "CAP-NVY"]
    assert order["items"][0]["qty"] == 2
    assert local.operations() == [
        "ShopOrderNameFormat",
        "FindOrder",
        "OrderDetails",
        "OrderLineItems",
    ]
    first, more = local.requests[2], local.requests[3]
    assert first["variables"]["lineItems"] == sh.LINE_ITEMS_PAGE
    assert more["variables"]["after"] and more["variables"]["id"] == first["variables"]["id"]


# -- status mapping ---------------------------------------------------------------------------


def _shipment(display: str, **fields: Any) -> dict[str, Any]:
    return {
        "status": "SUCCESS",
        "displayStatus": display,
        "createdAt": "2026-11-20T10:00:00Z",
    } | fields


def _order(
    fulfillment: str, *shipments: dict[str, Any], financial: str = "PAID", cancelled: bool = False
) -> dict[str, Any]:
    return {
        "cancelledAt": "2026-11-20T10:00:00Z" if cancelled else None,
        "displayFinancialStatus": financial,
        "displayFulfillmentStatus": fulfillment,
        "fulfillments": list(shipments),
    }


@pytest.mark.parametrize(
    ("order", "status"),
    [
        (_order("FULFILLED", _shipment("DELIVERED"), cancelled=True), "cancelled"),
        (_order("FULFILLED", _shipment("DELIVERED"), financial="REFUNDED"), "refunded"),
        (_order("UNFULFILLED", financial="VOIDED"), "cancelled"),
        (_order("UNFULFILLED", financial="PARTIALLY_REFUNDED"), "unfulfilled"),
        (_order("UNFULFILLED", financial="PENDING"), "unfulfilled"),
        (_order("UNFULFILLED", financial="AUTHORIZED"), "unfulfilled"),
        (_order("OPEN"), "unfulfilled"),
        (_order("RESTOCKED"), "unfulfilled"),
        (_order("IN_PROGRESS"), "processing"),
        (_order("PENDING_FULFILLMENT"), "processing"),
        (_order("ON_HOLD"), "processing"),
        (_order("SCHEDULED"), "processing"),
        (_order("REQUEST_DECLINED"), "processing"),
        (_order("SOMETHING_NEW"), "processing"),
        (_order("PARTIALLY_FULFILLED", _shipment("DELIVERED")), "partially_fulfilled"),
        (_order("FULFILLMENT_NOT_REQUIRED"), "delivered"),
        (_order("FULFILLED"), "shipped"),
        (_order("FULFILLED", _shipment("CONFIRMED")), "shipped"),
        (_order("FULFILLED", _shipment("IN_TRANSIT")), "shipped"),
        (_order("FULFILLED", _shipment("LABEL_PRINTED")), "shipped"),
        (_order("FULFILLED", _shipment("ATTEMPTED_DELIVERY")), "shipped"),
        (_order("FULFILLED", _shipment("OUT_FOR_DELIVERY")), "out_for_delivery"),
        (_order("FULFILLED", _shipment("READY_FOR_PICKUP")), "out_for_delivery"),
        (_order("FULFILLED", _shipment("DELIVERED")), "delivered"),
        (_order("FULFILLED", _shipment("PICKED_UP")), "delivered"),
        (_order("FULFILLED", _shipment("IN_TRANSIT", deliveredAt="2026-11-21")), "delivered"),
        # one parcel still on its way
        (_order("FULFILLED", _shipment("DELIVERED"), _shipment("IN_TRANSIT")), "shipped"),
        (
            _order("FULFILLED", _shipment("DELIVERED"), _shipment("OUT_FOR_DELIVERY")),
            "out_for_delivery",
        ),
        # cancelled and voided shipments do not count
        (
            _order(
                "FULFILLED",
                _shipment("DELIVERED"),
                _shipment("IN_TRANSIT", status="CANCELLED"),
                _shipment("CANCELED"),
                _shipment("LABEL_VOIDED"),
            ),
            "delivered",
        ),
    ],
)
def test_status_mapping(order: dict[str, Any], status: str) -> None:
    assert order_status(order) == status


def test_delivery_date_eta_and_final_sale() -> None:
    order = {
        "name": "#1001",
        "processedAt": "2026-11-01T08:00:00Z",
        "displayFinancialStatus": "PAID",
        "displayFulfillmentStatus": "FULFILLED",
        "fulfillments": [
            _shipment("DELIVERED", deliveredAt="2026-11-10T09:00:00Z"),
            _shipment("PICKED_UP", deliveredAt=None, updatedAt="2026-11-12T17:00:00Z"),
        ],
        "lineItems": {
            "nodes": [
                {"id": "gid://shopify/LineItem/1", "sku": "A", "product": {"tags": ["Final Sale"]}},
                {
                    "id": "gid://shopify/LineItem/2",
                    "sku": None,
                    "quantity": 2,
                    "unfulfilledQuantity": 0,
                },
                {
                    "id": "gid://shopify/LineItem/3",
                    "sku": "GC",
                    "isGiftCard": True,
                    "product": None,
                },
                {
                    "id": "gid://shopify/LineItem/4",
                    "sku": "B",
                    "customAttributes": [{"key": "_final_sale", "value": "yes"}],
                },
            ]
        },
    }
    raw = sh.order_from_shopify(order)
    assert raw["status"] == "delivered" and raw["delivered_at"] == "2026-11-12"
    assert [(i["sku"], i["final_sale"], i["qty"]) for i in raw["items"]] == [
        ("A", True, 1),
        ("item-2", False, 2),
        ("GC", True, 1),
        ("B", True, 1),
    ]
    shipping = {
        **order,
        "fulfillments": [
            _shipment("IN_TRANSIT", estimatedDeliveryAt="2026-11-25T18:00:00Z", trackingInfo=[]),
            _shipment(
                "IN_TRANSIT",
                createdAt="2026-11-21T10:00:00Z",
                estimatedDeliveryAt="2026-11-27T18:00:00Z",
                trackingInfo=[{"company": "GLS", "number": "GLS1", "url": None}],
            ),
        ],
    }
    raw = sh.order_from_shopify(shipping)
    assert (raw["status"], raw["eta"], raw["delivered_at"]) == ("shipped", "2026-11-27", None)
    assert (raw["carrier"], raw["tracking_number"], raw["tracking_url"]) == ("GLS", "GLS1", None)


# -- throttling and failures ------------------------------------------------------------------


async def test_throttled_requests_wait_as_the_bucket_says_then_retry(shop: LocalShopify) -> None:
    sleeps = Sleeps()
    backend = shop.backend(sleep=sleeps)
    shop.throttle(2, requested=752, available=666, restore_rate=50.0)
    try:
        order = await backend.get_order("1003")
    finally:
        await backend.aclose()
    assert order is not None and order["status"] == "shipped"
    assert sleeps == [pytest.approx((752 - 666) / 50.0)] * 2
    assert shop.operations() == ["ShopOrderNameFormat"] * 3 + ["FindOrder", "OrderDetails"]


async def test_http_429_waits_for_retry_after(shop: LocalShopify) -> None:
    sleeps = Sleeps()
    backend = shop.backend(sleep=sleeps)
    shop.throttle(1, http_429=True, retry_after="2.5")
    try:
        assert await backend.get_order("1001") is not None
    finally:
        await backend.aclose()
    assert sleeps == [2.5]


async def test_throttled_past_max_retries_is_an_error(shop: LocalShopify) -> None:
    sleeps = Sleeps()
    backend = shop.backend(sleep=sleeps, max_retries=2)
    shop.throttle(10, requested=1000, available=0, restore_rate=50.0)
    try:
        with pytest.raises(BackendError, match="throttled ShopOrderNameFormat 3 times"):
            await backend.get_order("1003")
    finally:
        await backend.aclose()
    assert sleeps == [sh.MAX_THROTTLE_WAIT] * 2  # 20 s asked for, capped
    assert len(shop.requests) == 3


def test_throttle_wait_reads_the_cost() -> None:
    assert sh.throttle_wait(fixture("throttled")) == pytest.approx(1.72)
    assert sh.throttle_wait({"errors": "x"}, "3") == 3.0
    assert sh.throttle_wait(None, None) == sh.DEFAULT_THROTTLE_WAIT
    assert sh.throttle_wait(None, "soon") == sh.DEFAULT_THROTTLE_WAIT


async def test_wrong_token_is_an_error_that_does_not_show_it(shop: LocalShopify) -> None:
    backend = shop.backend(token="shpat_wrong0000000000000000000000000")
    try:
        with pytest.raises(BackendError, match="401") as caught:
            await backend.get_order("1003")
    finally:
        await backend.aclose()
    assert "shpat_" not in str(caught.value)
    assert len(shop.requests) == 1 and shop.grants == []  # a static token is not renewed
    shop.fail_auth = True
    backend = shop.backend()
    try:
        result = await _run("orders.lookup", backend, number="1003", email="chloe.pop@example.com")
    finally:
        await backend.aclose()
    assert result == m.ActionResult("1", "error", {"reason": "backend"})


@pytest.mark.parametrize(("status", "words"), [(403, "scope"), (500, "500"), (502, "502")])
async def test_http_failures_are_errors(shop: LocalShopify, status: int, words: str) -> None:
    backend = shop.backend()
    shop.fail_next(status)
    try:
        with pytest.raises(BackendError, match=words):
            await backend.get_order("1003")
    finally:
        await backend.aclose()


async def test_a_missing_scope_is_an_error(shop: LocalShopify) -> None:
    shop.deny = {"OrderDetails"}
    backend = shop.backend()
    try:
        with pytest.raises(BackendError, match="OrderDetails with errors: ACCESS_DENIED"):
            await backend.get_order("1003")
    finally:
        await backend.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>Shopify is down for maintenance</html>"),
        httpx.Response(200, json=[1, 2]),
        httpx.Response(200, json={"data": None}),
        httpx.Response(200, json={"data": {"shop": "nope"}}),
        httpx.Response(301, headers={"Location": "https://example.com/"}),
    ],
)
async def test_malformed_answers_are_errors(answer: httpx.Response) -> None:
    backend = ShopifyBackend(SHOP, TOKEN, transport=httpx.MockTransport(lambda _: answer))
    try:
        with pytest.raises(BackendError, match="ShopOrderNameFormat"):
            await backend.get_order("1003")
    finally:
        await backend.aclose()


async def test_unreachable_shop_is_an_error() -> None:
    backend = ShopifyBackend(SHOP, TOKEN, endpoint="http://127.0.0.1:9/graphql.json", timeout=0.5)
    try:
        with pytest.raises(BackendError, match="unreachable"):
            await backend.get_order("1003")
    finally:
        await backend.aclose()


@pytest.mark.parametrize(
    "shop_domain",
    [
        "https://my-shop.myshopify.com",
        "my-shop.myshopify.com/admin",
        "shop.example.com",
        "my shop.myshopify.com",
        "",
    ],
)
def test_the_shop_must_be_a_bare_myshopify_domain(shop_domain: str) -> None:
    with pytest.raises(ValueError, match=r"my-shop\.myshopify\.com"):
        ShopifyBackend(shop_domain, TOKEN)


def test_the_default_endpoint_is_the_pinned_version() -> None:
    backend = ShopifyBackend(" My-Shop.myshopify.com ", f"{TOKEN}\n")
    assert (
        backend.endpoint
        == f"https://my-shop.myshopify.com/admin/api/{SHOPIFY_API_VERSION}/graphql.json"
    )
    assert re.fullmatch(r"\d{4}-(01|04|07|10)", SHOPIFY_API_VERSION)
    with pytest.raises(ValueError, match="token"):
        ShopifyBackend(SHOP, "  ")


# -- client credentials (Dev Dashboard apps) --------------------------------------------------


class Clock:
    """The injected monotonic clock, moved by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _tokens(shop: LocalShopify) -> list[str]:
    """The tokens the GraphQL requests carried, in order."""
    return [r["token"] for r in shop.requests]


async def test_the_first_call_obtains_a_token_then_reuses_it() -> None:
    async with LocalShopify(TODAY, clock=Clock()) as local:
        backend = local.backend(credentials=True)
        try:
            order = await backend.get_order("1003")
            other = await backend.get_order("1005")
        finally:
            await backend.aclose()
    assert order is not None and order["status"] == "shipped"
    assert other is not None and other["number"] == "1005"
    assert local.grants == [
        {
            "content_type": "application/x-www-form-urlencoded",
            "fields": ["client_id", "client_secret", "grant_type"],
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
        }
    ]
    (granted,) = local.issued
    assert set(_tokens(local)) == {granted} and granted != TOKEN
    assert {"read_orders", "write_orders", "read_all_orders"} <= backend.granted_scopes


@pytest.mark.parametrize(
    ("lifetime", "kept_until", "renewed_from"),
    [
        (86399, 86399 - 301, 86399 - 300),  # Shopify's day: renewed in its last 5 minutes
        (600, 539, 540),  # a short-lived token: in the last tenth of its life
    ],
)
async def test_the_token_is_renewed_before_it_expires(
    lifetime: int, kept_until: float, renewed_from: float
) -> None:
    clock = Clock()
    async with LocalShopify(TODAY, clock=clock, token_lifetime=lifetime) as local:
        backend = local.backend(credentials=True)
        start = clock.now
        try:
            assert await backend.get_order("1003") is not None
            clock.now = start + kept_until
            assert await backend.get_order("1003") is not None
            assert len(local.grants) == 1
            clock.now = start + renewed_from
            assert await backend.get_order("1003") is not None
            assert await backend.get_order("1005") is not None
        finally:
            await backend.aclose()
    assert len(local.grants) == 2
    first, second = dict.fromkeys(_tokens(local))  # in the order they were used
    assert _tokens(local).count(first) == 4  # the first lookup, and 1003 again while kept
    assert local.issued[second] == start + renewed_from + lifetime
    assert _tokens(local).count(second) == 3  # OrderDetails, FindOrder and OrderDetails of 1005


async def test_a_401_to_a_kept_token_renews_it_once_and_tries_again() -> None:
    async with LocalShopify(TODAY, clock=Clock()) as local:
        backend = local.backend(credentials=True)
        try:
            assert await backend.get_order("1003") is not None
            local.revoke_tokens()  # revoked in the admin, or expired early
            order = await backend.get_order("1003")
            assert order is not None and order["number"] == "1003"
            assert len(local.grants) == 2
            assert local.operations()[-2:] == ["OrderDetails", "OrderDetails"]
            revoked, renewed = _tokens(local)[-2:]
            assert revoked != renewed and renewed in local.issued
            # Still refused with the new token (the app was uninstalled): one renewal, no loop.
            local.fail_auth = True
            with pytest.raises(BackendError, match="401 on OrderDetails") as caught:
                await backend.get_order("1003")
        finally:
            await backend.aclose()
    assert len(local.grants) == 3
    assert local.operations()[-2:] == ["OrderDetails", "OrderDetails"]
    assert CLIENT_SECRET not in str(caught.value) and "shpat_" not in str(caught.value)


async def test_concurrent_lookups_share_one_grant() -> None:
    async with LocalShopify(TODAY, clock=Clock()) as local:
        backend = local.backend(credentials=True)
        numbers = [sorted(DEMO)[i % len(DEMO)] for i in range(20)]
        try:
            found = await asyncio.gather(*(backend.get_order(n) for n in numbers))
            assert len(local.grants) == 1
            local.revoke_tokens()  # all 20 answered 401 at once: still one renewal
            again = await asyncio.gather(*(backend.get_order(n) for n in numbers))
        finally:
            await backend.aclose()
    assert [o and o["number"] for o in found] == numbers
    assert again == found
    assert len(local.grants) == 2
    assert len(set(_tokens(local))) == 2


async def test_wrong_client_credentials_are_an_error_without_the_secret() -> None:
    wrong = "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"
    async with LocalShopify(TODAY, clock=Clock()) as local:
        backend = local.backend(credentials=True, client_secret=wrong)
        try:
            with pytest.raises(BackendError, match=r"\(400 invalid_client\)") as caught:
                await backend.get_order("1003")
            result = await _run(
                "orders.lookup", backend, number="1003", email="chloe.pop@example.com"
            )
            # Twenty at once: the grant they waited for failed, they do not each try again.
            failures = await asyncio.gather(
                *(backend.get_order("1003") for _ in range(20)), return_exceptions=True
            )
        finally:
            await backend.aclose()
    message = str(caught.value)
    assert "client ID or secret is wrong" in message
    assert wrong not in message and CLIENT_SECRET not in message and "shpss_" not in message
    assert result == m.ActionResult("1", "error", {"reason": "backend"})
    assert all(isinstance(f, BackendError) for f in failures)
    assert {str(f) for f in failures} == {message}
    assert len(local.grants) == 3
    assert local.requests == []  # no GraphQL request without a token


async def test_an_unreachable_token_endpoint_is_an_error_without_the_secret() -> None:
    backend = ShopifyBackend(
        SHOP,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token_endpoint="http://127.0.0.1:9/admin/oauth/access_token",
        timeout=0.5,
    )
    try:
        with pytest.raises(BackendError, match="unreachable on the access token request") as e:
            await backend.get_order("1003")
    finally:
        await backend.aclose()
    assert CLIENT_SECRET not in str(e.value) and CLIENT_SECRET not in repr(e.value.__cause__)


async def test_a_failed_renewal_keeps_the_token_until_it_expires() -> None:
    clock = Clock()
    async with LocalShopify(TODAY, clock=clock, token_lifetime=600) as local:
        backend = local.backend(credentials=True)
        start = clock.now
        try:
            assert await backend.get_order("1003") is not None
            clock.now = start + 580  # due for renewal, 20 s left
            local.fail_next_grant(503)
            # 1003's id is remembered: one request, with the old token, still taken.
            assert await backend.get_order("1003") is not None
            assert len(local.grants) == 2 and len(set(_tokens(local))) == 1
            assert await backend.get_order("1003") is not None  # tried again: renewed
            assert len(local.grants) == 3 and len(set(_tokens(local))) == 2
            clock.now = start + 580 + 600  # expired, and Shopify fails the grant
            local.fail_next_grant(503)
            with pytest.raises(BackendError, match="answered 503 to the access token request"):
                await backend.get_order("1003")
        finally:
            await backend.aclose()


def _token_shop(token_answer: httpx.Response) -> httpx.MockTransport:
    """Shopify where the token endpoint answers `token_answer` and no order exists."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/admin/oauth/access_token":
            return token_answer
        operation = json.loads(request.content)["operationName"]
        if operation == "ShopOrderNameFormat":
            shop = {"orderNumberFormatPrefix": "#", "orderNumberFormatSuffix": ""}
            return httpx.Response(200, json={"data": {"shop": shop}})
        return httpx.Response(200, json={"data": {"orders": {"nodes": []}}})

    return httpx.MockTransport(answer)


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (httpx.Response(200, json={"scope": "read_orders", "expires_in": 86399}), "without a"),
        (httpx.Response(200, json={"access_token": "", "expires_in": 86399}), "without a token"),
        (httpx.Response(200, text="<html>Your connection needs to be verified</html>"), "JSON"),
        (httpx.Response(401, json={"error": "invalid_client"}), "401 invalid_client"),
        (httpx.Response(400, json={"error": "unsupported_grant_type"}), "400 unsupported"),
        (httpx.Response(400, json={"error": CLIENT_SECRET}), r"\(400\)"),  # echoed: not shown
        (httpx.Response(500, text="oops"), "answered 500 to the access token request"),
        (httpx.Response(302, headers={"Location": "https://accounts.shopify.com/"}), "302"),
    ],
)
async def test_bad_token_answers_are_errors(answer: httpx.Response, words: str) -> None:
    backend = ShopifyBackend(
        SHOP, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, transport=_token_shop(answer)
    )
    try:
        with pytest.raises(BackendError, match=words) as caught:
            await backend.get_order("1003")
    finally:
        await backend.aclose()
    assert CLIENT_SECRET not in str(caught.value)


async def test_a_token_answer_without_its_lifetime_is_kept_for_a_day() -> None:
    grants: list[httpx.Request] = []
    transport = _token_shop(httpx.Response(200, json={"access_token": "shpat_a", "scope": ""}))

    async def counting(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/admin/oauth/access_token":
            grants.append(request)
        return await transport.handle_async_request(request)

    clock = Clock()
    backend = ShopifyBackend(
        SHOP,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        transport=httpx.MockTransport(counting),
        clock=clock,
    )
    try:
        assert await backend.get_order("1003") is None
        clock.now += sh.DEFAULT_TOKEN_LIFETIME - sh.RENEW_MARGIN - 1
        assert await backend.get_order("1004") is None
        assert len(grants) == 1
        clock.now += 2
        assert await backend.get_order("1005") is None
    finally:
        await backend.aclose()
    assert len(grants) == 2
    assert grants[0].url == f"https://{SHOP}/admin/oauth/access_token"
    assert grants[0].headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert httpx.QueryParams(grants[0].content.decode()) == httpx.QueryParams(
        {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    )


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({}, "needs an Admin API access token, or the app's client ID and client secret"),
        ({"token": TOKEN, "client_id": CLIENT_ID}, "not both"),
        ({"token": TOKEN, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, "not both"),
        ({"client_id": CLIENT_ID}, "client secret is missing"),
        ({"client_secret": CLIENT_SECRET}, "client ID is missing"),
        ({"client_id": " ", "client_secret": CLIENT_SECRET}, "client ID is empty"),
        ({"client_id": CLIENT_ID, "client_secret": "shpss_a b"}, "client secret is empty or"),
    ],
)
def test_a_token_or_client_credentials_exactly(options: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)) as caught:
        ShopifyBackend(SHOP, **options)
    assert CLIENT_SECRET not in str(caught.value) and TOKEN not in str(caught.value)


def test_the_default_token_endpoint_is_the_shops() -> None:
    backend = ShopifyBackend(" My-Shop.myshopify.com ", client_id="id", client_secret="secret\n")
    assert backend.token_endpoint == "https://my-shop.myshopify.com/admin/oauth/access_token"


async def test_the_stand_in_grants_tokens_as_the_reference_shows(shop: LocalShopify) -> None:
    """The answer of the client credentials reference ("Use your credentials to get an access
    token"), and an OAuth error for wrong credentials."""
    documented: dict[str, Any] = {
        "access_token": "shpat_xxxxx",
        "scope": "read_products,write_products",
        "expires_in": 86399,
    }
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID}
    async with httpx.AsyncClient() as client:
        ok = await client.post(shop.token_endpoint, data={**form, "client_secret": CLIENT_SECRET})
        wrong = await client.post(shop.token_endpoint, data={**form, "client_secret": "nope"})
        as_json = await client.post(
            shop.token_endpoint, json={**form, "client_secret": CLIENT_SECRET}
        )
    assert ok.status_code == 200 and _same_shape(ok.json(), documented) == []
    assert ok.json()["access_token"].startswith("shpat_")
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_client"
    assert as_json.status_code == 400  # the stand-in takes only the documented form encoding
    status, _ = await _ask(
        shop, "FindOrder", sh.FIND_ORDER, {"query": ""}, ok.json()["access_token"]
    )
    assert status == 200


# -- cancel -----------------------------------------------------------------------------------


async def test_cancel_an_unfulfilled_order(shop: LocalShopify) -> None:
    backend = shop.backend()
    try:
        done = await _run(
            "orders.cancel", backend, number="1001", email="anna.novak@example.com", reason="oops"
        )
        again = await _run("orders.cancel", backend, number="1001", email="anna.novak@example.com")
        shipped = await _run("orders.cancel", backend, number="1003", email="chloe.pop@example.com")
    finally:
        await backend.aclose()
    assert done.outcome == "ok" and done.data["cancelled"] is True
    assert done.data["order"]["status"] == "cancelled"
    assert again.data["cancelled"] is False and again.data["reason"] == "cancelled"
    assert shipped.data["cancelled"] is False and shipped.data["reason"] == "shipped"
    assert shop.cancellations == [
        {
            "orderId": shop.order("1001")["id"],
            "reason": "CUSTOMER",
            "refundMethod": {"originalPaymentMethodsRefund": True},
            "restock": True,
            "notifyCustomer": True,
            "staffNote": "Cancelled by the shopper in the flowengine chat: oops",
        }
    ]
    assert shop.operations().count("OrderCancel") == 1  # our rules refused the others


async def test_cancel_still_running_in_shopify_reads_cancelled(shop: LocalShopify) -> None:
    shop.cancel_in_background = True
    backend = shop.backend()
    try:
        order = await backend.cancel_order("1014", None)
    finally:
        await backend.aclose()
    assert order["status"] == "cancelled" and shop.order("1014")["cancelledAt"] is None
    assert shop.cancellations[0]["staffNote"] == "Cancelled by the shopper in the flowengine chat"


async def test_a_cancel_the_shop_refuses_is_an_error(shop: LocalShopify) -> None:
    shop.refuse_cancel = "NO_REFUND_PERMISSION"
    backend = shop.backend()
    try:
        with pytest.raises(BackendError, match="refused to cancel the order: NO_REFUND_PERMISSION"):
            await backend.cancel_order("1001", "changed my mind")
        result = await _run("orders.cancel", backend, number="1001", email="anna.novak@example.com")
    finally:
        await backend.aclose()
    assert result == m.ActionResult("1", "error", {"reason": "backend"})
    assert shop.order("1001")["cancelledAt"] is None


# -- returns and tickets ----------------------------------------------------------------------


async def test_return_request_for_a_delivered_order(shop: LocalShopify) -> None:
    backend = shop.backend()
    try:
        result = await _run(
            "returns.create",
            backend,
            number="1005",
            email="erik.dvorak@example.com",
            reason="too_small",
            method="drop_off",
        )
    finally:
        await backend.aclose()
    assert result.outcome == "ok"
    assert result.data == {
        "created": True,
        "rma": "#1005-R1",
        "items": ["TEE-WHT-L", "CAP-NVY"],
        "method": "drop_off",
        "reason": "too_small",
        "label_url": None,
    }
    (asked,) = shop.returns
    assert asked["orderId"] == shop.order("1005")["id"]
    assert [(i["quantity"], i["returnReason"]) for i in asked["returnLineItems"]] == [
        (2, "SIZE_TOO_SMALL"),
        (1, "SIZE_TOO_SMALL"),
    ]
    assert asked["returnLineItems"][0]["customerNote"] == "too_small (return method: drop_off)"


async def test_an_item_returned_already_cannot_be_returned_again(shop: LocalShopify) -> None:
    backend = shop.backend()
    try:
        first = await backend.create_return("1011", ["SHR-BLU-M"], "changed_mind", "label")
        with pytest.raises(BackendError, match="nothing returnable"):
            await backend.create_return("1011", ["SHR-BLU-M"], "changed_mind", "label")
    finally:
        await backend.aclose()
    assert first == {"rma": "#1011-R1", "label_url": None}
    assert shop.returns[0]["returnLineItems"][0]["returnReason"] == "UNWANTED"


async def test_tickets_stay_in_flowengine(shop: LocalShopify) -> None:
    backend = shop.backend()
    try:
        one = await _run("tickets.create", backend, kind="damaged", details="torn", number="1005")
        two = await _run("tickets.create", backend, kind="message", details="hello")
    finally:
        await backend.aclose()
    assert re.fullmatch(r"T-[0-9A-F]{8}", one.data["ticket_id"])
    assert one.data["ticket_id"] != two.data["ticket_id"]
    assert shop.requests == []


async def test_no_error_names_the_order_the_email_or_the_token(shop: LocalShopify) -> None:
    number, email = "1005", "erik.dvorak@example.com"
    messages: list[str] = []

    async def fails(backend: ShopifyBackend, call: Any) -> None:
        try:
            await call
        except BackendError as exc:
            messages.append(str(exc))
        else:
            raise AssertionError("no BackendError")
        finally:
            await backend.aclose()

    backend = shop.backend(token="shpat_not_the_right_one_000000000000")
    await fails(backend, backend.get_order(number))
    for status in (403, 500):
        shop.fail_next(status)
        backend = shop.backend()
        await fails(backend, backend.get_order(number))
    shop.throttle(5)
    backend = shop.backend(max_retries=1, sleep=Sleeps())
    await fails(backend, backend.get_order(number))
    shop.throttle(0)
    shop.deny = {"FindOrder"}
    backend = shop.backend()
    await fails(backend, backend.get_order(number))
    shop.deny = set()
    shop.refuse_cancel = "INVALID"
    backend = shop.backend()
    await fails(backend, backend.cancel_order(number, email))
    backend = shop.backend()
    await fails(backend, backend.cancel_order("99999", email))
    backend = shop.backend()
    await fails(backend, backend.create_return(number, ["NOPE"], email, "label"))
    backend = shop.backend()
    await backend.create_return(number, ["CAP-NVY"], "damaged", "label")
    await fails(backend, backend.create_return(number, ["CAP-NVY"], "damaged", "label"))
    assert len(messages) == 9
    for message in messages:
        assert number not in message and email not in message
        assert TOKEN not in message and "shpat_" not in message


# -- the stand-in answers as Shopify's reference does -------------------------------------------


def _same_shape(answer: Any, recorded: Any, path: str = "") -> list[str]:
    """Where `answer` differs in keys, nesting or kind from `recorded` (null matches anything:
    Shopify's nullable fields)."""
    if answer is None or recorded is None:
        return []
    if isinstance(recorded, dict):
        if not isinstance(answer, dict):
            return [f"{path}: {type(answer).__name__}, not an object"]
        problems = (
            [f"{path}: keys {sorted(set(answer) ^ set(recorded))}"]
            if set(answer) != set(recorded)
            else []
        )
        for key in set(answer) & set(recorded):
            problems += _same_shape(answer[key], recorded[key], f"{path}.{key}")
        return problems
    if isinstance(recorded, list):
        if not isinstance(answer, list):
            return [f"{path}: {type(answer).__name__}, not a list"]
        if not recorded:
            return []
        return [
            p
            for i, item in enumerate(answer)
            for p in _same_shape(item, recorded[0], f"{path}[{i}]")
        ]
    kinds = {bool: "bool", int: "number", float: "number", str: "string"}
    if kinds.get(type(answer)) != kinds.get(type(recorded)):
        return [f"{path}: {type(answer).__name__}, not {type(recorded).__name__}"]
    return []


async def _ask(
    shop: LocalShopify, operation: str, query: str, variables: dict[str, Any], token: str = TOKEN
) -> tuple[int, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            shop.endpoint,
            json={"query": query, "variables": variables, "operationName": operation},
            headers={"X-Shopify-Access-Token": token},
        )
    return response.status_code, response.json()


OPERATIONS = {
    "ShopOrderNameFormat": sh.SHOP_ORDER_NAME_FORMAT,
    "FindOrder": sh.FIND_ORDER,
    "OrderDetails": sh.ORDER_DETAILS,
    "OrderLineItems": sh.ORDER_LINE_ITEMS,
    "OrderCancel": sh.ORDER_CANCEL,
    "ReturnableItems": sh.RETURNABLE_ITEMS,
    "ReturnRequest": sh.RETURN_REQUEST,
}


async def test_the_stand_in_answers_in_the_recorded_shapes(shop: LocalShopify) -> None:
    gid = shop.order("1007")["id"]
    delivered = shop.order("1005")["id"]
    page = {"id": gid, "lineItems": 1, "fulfillments": 10}
    cancel = {
        "reason": "CUSTOMER",
        "refundMethod": {"originalPaymentMethodsRefund": True},
        "restock": True,
    }
    item = {"fulfillmentLineItemId": "gid://shopify/FulfillmentLineItem/100501", "quantity": 1}
    asks: list[tuple[str, str, dict[str, Any]]] = [
        ("shop_order_name_format", "ShopOrderNameFormat", {}),
        ("find_order", "FindOrder", {"query": 'name:"#1007"'}),
        ("order_details", "OrderDetails", page),
        ("order_line_items", "OrderLineItems", {**page, "after": "eyJsYXN0X2luZGV4IjoxfQ=="}),
        ("returnable_items", "ReturnableItems", {"orderId": delivered}),
        (
            "return_request",
            "ReturnRequest",
            {"input": {"orderId": delivered, "returnLineItems": [item]}},
        ),
        (
            "return_request_refused",
            "ReturnRequest",
            {"input": {"orderId": delivered, "returnLineItems": [{**item, "quantity": 5}]}},
        ),
        ("order_cancel", "OrderCancel", {"orderId": shop.order("1001")["id"], **cancel}),
        ("order_cancel_refused", "OrderCancel", {"orderId": shop.order("1001")["id"], **cancel}),
    ]
    for name, operation, variables in asks:
        status, answer = await _ask(shop, operation, OPERATIONS[operation], variables)
        assert status == 200, name
        assert _same_shape(answer, fixture(name)) == [], name
    shop.throttle(1)
    status, answer = await _ask(shop, "FindOrder", sh.FIND_ORDER, {"query": 'name:"#1001"'})
    assert status == 200 and _same_shape(answer, fixture("throttled")) == []
    shop.deny = {"ReturnableItems"}
    status, answer = await _ask(
        shop, "ReturnableItems", sh.RETURNABLE_ITEMS, {"orderId": delivered}
    )
    assert status == 200 and _same_shape(answer, fixture("access_denied")) == []
    status, answer = await _ask(shop, "FindOrder", sh.FIND_ORDER, {"query": ""}, token="nope")
    assert status == 401 and _same_shape(answer, fixture("unauthorized")) == []


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


@pytest.mark.parametrize(
    ("name", "operation"),
    [
        ("shop_order_name_format", "ShopOrderNameFormat"),
        ("find_order", "FindOrder"),
        ("order_details", "OrderDetails"),
        ("order_line_items", "OrderLineItems"),
        ("order_cancel", "OrderCancel"),
        ("returnable_items", "ReturnableItems"),
        ("return_request", "ReturnRequest"),
    ],
)
def test_the_backend_selects_every_recorded_field(name: str, operation: str) -> None:
    query = OPERATIONS[operation]
    assert re.search(rf"\b(query|mutation) {operation}\b", query)
    missing = [k for k in _keys(fixture(name)["data"]) if not re.search(rf"\b{k}\b", query)]
    assert missing == []
