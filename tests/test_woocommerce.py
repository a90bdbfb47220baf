"""The WooCommerce order backend against a local WooCommerce (tests/platforms/woocommerce.py):
the demo scenarios come out as on the demo backend, custom order numbers are searched page by
page, statuses and parcels map as docs/actions.md says, throttling is waited out, and no error
message carries an order number, an email or a credential."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowengine.actions.demo_backend import DemoBackend
from flowengine.actions.orders import BackendError, describe_order
from flowengine.actions.perform import BackendActions
from flowengine.actions.woocommerce import WooCommerceBackend
from flowengine.engine import model as m
from tests.conftest import TODAY
from tests.platforms.woocommerce import API, KEY, SECRET, LocalWooCommerce
from tests.redis_server import free_port

FIXTURES = Path(__file__).parent / "fixtures" / "woocommerce"


@pytest.fixture
async def shop() -> AsyncIterator[LocalWooCommerce]:
    async with LocalWooCommerce(TODAY) as local:
        yield local


class Sleeps(list[float]):
    """An injected `sleep` that only writes down how long it was asked to wait."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


async def _run(name: str, backend: Any, **args: Any) -> m.ActionResult:
    return await BackendActions(backend, lambda: TODAY).perform(m.CallAction("1", name, args, 5.0))


async def _get(backend: WooCommerceBackend, number: str) -> dict[str, Any] | None:
    try:
        return await backend.get_order(number)
    finally:
        await backend.aclose()


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text("utf-8"))


def _same_shape(ours: Any, recorded: Any, where: str = "") -> None:
    """The same keys at every level of objects; lists compared by their first elements."""
    if isinstance(recorded, dict):
        assert isinstance(ours, dict), where
        assert set(ours) == set(recorded), f"{where}: {set(ours) ^ set(recorded)}"
        for key, value in recorded.items():
            _same_shape(ours[key], value, f"{where}.{key}")
    elif isinstance(recorded, list):
        assert isinstance(ours, list), where
        if ours and recorded:
            for item in ours:
                _same_shape(item, recorded[0], f"{where}[]")


# -- the local shop speaks WooCommerce ------------------------------------------------------


async def test_the_local_shop_answers_in_the_documented_shapes(shop: LocalWooCommerce) -> None:
    async with httpx.AsyncClient(base_url=shop.url + API, auth=(KEY, SECRET)) as client:
        order = (await client.get("/orders/1005")).json()
        listed = await client.get("/orders", params={"search": "erik", "per_page": 5})
        note = await client.post("/orders/1005/notes", json={"note": "Order ok!!!"})
        product_id = order["line_items"][0]["product_id"]
        products = (await client.get("/products", params={"include": str(product_id)})).json()
        missing = await client.get("/orders/999999")
        no_route = await client.get("/nothing-here")
        trackings = await client.get(
            f"{shop.url}/wp-json/wc-shipment-tracking/v3/orders/1005/shipment-trackings"
        )
    async with httpx.AsyncClient(base_url=shop.url + API, auth=(KEY, "cs_wrong")) as client:
        refused = await client.get("/orders/1005")

    _same_shape(order, _fixture("order.json"), "order")
    assert listed.headers["X-WP-Total"] == "1" and listed.headers["X-WP-TotalPages"] == "1"
    _same_shape(listed.json(), [_fixture("order.json")], "orders")
    assert note.status_code == 201
    _same_shape(note.json(), _fixture("order_note.json"), "note")
    _same_shape(products, [_fixture("product.json")], "products")
    assert missing.status_code == 404 and missing.json() == _fixture("error_invalid_id.json")
    assert no_route.status_code == 404
    assert no_route.json()["code"] == _fixture("error_no_route.json")["code"]
    assert refused.status_code == 401
    _same_shape(refused.json(), _fixture("error_authentication.json"))
    recorded_tracking = _fixture("shipment_trackings.json")[0]
    assert set(recorded_tracking) <= set(trackings.json()[0])


# -- lookups --------------------------------------------------------------------------------


async def test_every_demo_order_reads_as_on_the_demo_backend(shop: LocalWooCommerce) -> None:
    demo = DemoBackend(TODAY)
    backend = shop.backend()
    try:
        for number in demo.orders:
            woo = await backend.get_order(number)
            assert woo is not None, number
            raw = await demo.get_order(number) or {}
            if not raw.get("tracking_number"):
                # WooCommerce keeps the carrier only with a tracking number (a Shipment
                # Tracking item): an order sent without one has no carrier to show.
                raw["carrier"] = None
            expected = describe_order(raw, TODAY)
            assert describe_order(woo, TODAY) == expected, number
    finally:
        await backend.aclose()


async def test_a_number_that_is_the_id_is_one_request_and_a_product_lookup(
    shop: LocalWooCommerce,
) -> None:
    order = await _get(shop.backend(), "1003")
    assert order is not None and order["email"] == "chloe.pop@example.com"
    assert [(r.method, r.path) for r in shop.requests] == [
        ("GET", f"{API}/orders/1003"),
        ("GET", f"{API}/products"),
    ]
    assert shop.requests[1].params["_fields"] == "id,tags"
    assert all(r.authorization and r.authorization.startswith("Basic ") for r in shop.requests)
    assert all(KEY not in json.dumps(r.params) for r in shop.requests)


async def test_a_custom_number_is_searched_page_by_page() -> None:
    # Sequential Order Numbers: order "1003" is id 1001, and id 1003 is order "1005".
    async with LocalWooCommerce(TODAY, id_offset=-2, max_per_page=2) as shop:
        for i, number in enumerate(("10030", "10031", "21003")):  # newer orders the search finds
            shop.copy_order("1001", 7000 + i, number, date_created=f"{TODAY}T2{i}:00:00")
        order = await _get(shop.backend(), "1003")
    assert order is not None and order["number"] == "1003"
    assert order["email"] == "chloe.pop@example.com"
    searches = [r.params for r in shop.requests if r.path == f"{API}/orders"]
    assert shop.requests[0].path == f"{API}/orders/1003"  # that id's order is another number
    assert [s["page"] for s in searches] == ["1", "2"]
    assert all(s["search"] == "1003" and s["per_page"] == "100" for s in searches)


async def test_a_prefixed_number_is_searched_and_found_through_the_action() -> None:
    async with LocalWooCommerce(TODAY, number_prefix="WC-") as shop:
        backend = shop.backend()
        try:
            found = await _run(
                "orders.lookup", backend, number="wc-1003", email="chloe.pop@example.com"
            )
        finally:
            await backend.aclose()
    assert found.outcome == "ok" and found.data["number"] == "WC-1003"
    assert found.data["status"] == "shipped"
    assert shop.requests[0].path == f"{API}/orders"  # not a number WooCommerce could have as id


async def test_tracking_comes_from_the_shipment_tracking_items(shop: LocalWooCommerce) -> None:
    order = await _get(shop.backend(), "1003")
    assert order is not None
    assert (order["carrier"], order["tracking_number"]) == ("DHL", "JD014600006281234567")
    assert order["tracking_url"] == "https://www.dhl.com/track?id=JD014600006281234567"
    assert order["eta"] == "2026-11-24" and order["status"] == "shipped"


async def test_a_predefined_carrier_gets_its_link_from_the_extension(
    shop: LocalWooCommerce,
) -> None:
    item = shop.order("1012")["meta_data"][1]["value"][0]
    item.update(tracking_provider="ups", custom_tracking_provider="", custom_tracking_link="")
    order = await _get(shop.backend(), "1012")
    assert order is not None and order["carrier"] == "UPS"
    assert order["tracking_url"] == "https://www.ups.com/track?tracknum=JT1234567890"
    assert describe_order(order, TODAY)["late"] is True


async def test_unknown_orders_and_ones_no_shopper_sees_are_none(shop: LocalWooCommerce) -> None:
    shop.order("1002")["status"] = "trash"
    shop.order("1004")["status"] = "checkout-draft"
    backend = shop.backend()
    try:
        assert await backend.get_order("99999") is None
        assert await backend.get_order("1002") is None
        assert await backend.get_order("1004") is None
    finally:
        await backend.aclose()


async def test_a_wrong_email_is_not_found(shop: LocalWooCommerce) -> None:
    backend = shop.backend()
    try:
        wrong = await _run("orders.lookup", backend, number="1003", email="anna.novak@example.com")
        right = await _run("orders.lookup", backend, number="#1003", email="CHLOE.POP@example.com")
    finally:
        await backend.aclose()
    assert wrong == m.ActionResult("1", "not_found", None)
    assert right.outcome == "ok" and right.data["first_name"] == "Chloe"


async def test_backordered_line_items_are_a_partial_fulfilment(shop: LocalWooCommerce) -> None:
    backend = shop.backend()
    try:
        found = await _run(
            "orders.lookup", backend, number="1007", email="gina.ionescu@example.com"
        )
        shop.order("1007")["status"] = "partial-shipped"  # Advanced Shipment Tracking's status
        marked = await backend.get_order("1007")
    finally:
        await backend.aclose()
    assert found.data["status"] == "partially_fulfilled"
    assert [i["fulfilled"] for i in found.data["items"]] == [True, False]
    assert (found.data["shipped_count"], found.data["item_count"]) == (1, 2)
    assert marked is not None and marked["status"] == "partially_fulfilled"


def _trackship(order: dict[str, Any], status: str) -> None:
    order["meta_data"] = [m for m in order["meta_data"] if m["key"] != "shipment_status"]
    order["meta_data"].append(
        {
            "id": 1,
            "key": "shipment_status",
            "value": [
                {"status": status, "status_date": f"{TODAY} 09:30:00", "est_delivery_date": ""}
            ],
        }
    )


@pytest.mark.parametrize(
    ("number", "wc_status", "parcel", "expected"),
    [
        ("1002", "pending", None, "unfulfilled"),
        ("1002", "on-hold", None, "unfulfilled"),
        ("1002", "processing", None, "processing"),
        ("1002", "awaiting-pickup", None, "processing"),  # a plugin's own status
        ("1003", "processing", "in_transit", "shipped"),
        ("1003", "processing", "out_for_delivery", "out_for_delivery"),
        ("1003", "processing", "delivered", "delivered"),
        ("1003", "shipped", "in_transit", "shipped"),
        ("1003", "completed", "in_transit", "shipped"),  # completed when it left the warehouse
        ("1003", "completed", None, "delivered"),
        ("1002", "completed", None, "delivered"),
        ("1003", "delivered", None, "delivered"),
        ("1007", "partial-shipped", "in_transit", "partially_fulfilled"),
        ("1002", "cancelled", None, "cancelled"),
        ("1002", "failed", None, "cancelled"),
        ("1002", "refunded", None, "refunded"),
        ("1002", "trash", None, None),
        ("1002", "checkout-draft", None, None),
    ],
)
async def test_every_status_maps(
    shop: LocalWooCommerce, number: str, wc_status: str, parcel: str | None, expected: str | None
) -> None:
    order = shop.order(number)
    order["status"] = wc_status
    if wc_status in ("completed", "delivered"):
        order["date_completed"] = f"{TODAY}T08:00:00"
    if parcel:
        _trackship(order, parcel)
    else:
        order["meta_data"] = [m for m in order["meta_data"] if m["key"] != "shipment_status"]
    found = await _get(shop.backend(), number)
    assert (found["status"] if found else None) == expected
    if expected == "delivered":
        assert found is not None and found["delivered_at"] == str(TODAY)


# -- throttling and failures ----------------------------------------------------------------


async def test_a_429_is_waited_out_as_retry_after_says(shop: LocalWooCommerce) -> None:
    sleeps = Sleeps()
    shop.throttle(2, retry_after="3")
    order = await _get(shop.backend(sleep=sleeps), "1003")
    assert order is not None and order["status"] == "shipped"
    assert sleeps == [3.0, 3.0]
    assert [r.path for r in shop.requests[:3]] == [f"{API}/orders/1003"] * 3


async def test_a_429_without_retry_after_backs_off(shop: LocalWooCommerce) -> None:
    sleeps = Sleeps()
    shop.throttle(2, retry_after=None)
    assert await _get(shop.backend(sleep=sleeps), "1003") is not None
    assert sleeps == [1.0, 2.0]


async def test_throttled_past_max_retries_is_a_backend_error(shop: LocalWooCommerce) -> None:
    sleeps = Sleeps()
    shop.throttle(10, retry_after="1")
    with pytest.raises(BackendError, match="429"):
        await _get(shop.backend(sleep=sleeps, max_retries=2), "1003")
    assert sleeps == [1.0, 1.0] and len(shop.requests) == 3


async def test_a_retry_after_longer_than_any_action_waits_is_not_waited(
    shop: LocalWooCommerce,
) -> None:
    sleeps = Sleeps()
    shop.throttle(1, retry_after="3600")
    with pytest.raises(BackendError, match="3600"):
        await _get(shop.backend(sleep=sleeps), "1003")
    assert sleeps == []


async def test_refused_credentials_are_a_backend_error(shop: LocalWooCommerce) -> None:
    shop.fail_auth = True
    with pytest.raises(BackendError, match="401") as refused:
        await _get(shop.backend(), "1003")
    assert "woocommerce_rest_authentication_error" in str(refused.value)
    shop.fail_auth = False
    with pytest.raises(BackendError, match="401"):
        await _get(WooCommerceBackend(shop.url, KEY, "cs_not_it"), "1003")
    backend = WooCommerceBackend(shop.url, "ck_not_it", SECRET)
    try:
        result = await _run("orders.lookup", backend, number="1003", email="chloe.pop@example.com")
    finally:
        await backend.aclose()
    assert result == m.ActionResult("1", "error", {"reason": "backend"})


async def test_no_error_message_names_the_order_the_email_or_a_credential(
    shop: LocalWooCommerce,
) -> None:
    messages = []

    async def failure(backend: WooCommerceBackend, action: str = "lookup") -> None:
        try:
            if action == "cancel":
                await backend.cancel_order("1001", "changed my mind")
            else:
                await backend.get_order("1003")
        except BackendError as exc:
            messages.append(str(exc))
        else:
            raise AssertionError("no BackendError")
        finally:
            await backend.aclose()

    shop.fail_auth = True
    await failure(shop.backend())
    shop.fail_auth = False
    shop.throttle(5)
    await failure(shop.backend(sleep=Sleeps(), max_retries=1))
    shop.throttle(0)
    for status, text, headers in [
        (500, "<h1>There has been a critical error on this website.</h1>", {}),
        (200, "<html>Log in</html>", {}),
        (301, "", {"Location": "https://www.shop.example/wp-json/wc/v3/orders/1003"}),
        (404, "<html>Not found</html>", {}),
        (503, "", {}),
    ]:
        shop.broken = (status, text, headers)
        await failure(shop.backend())
    shop.broken = None
    shop.permissions = "read"
    await failure(shop.backend(), "cancel")
    await failure(WooCommerceBackend(f"http://127.0.0.1:{free_port()}", KEY, SECRET))
    await failure(WooCommerceBackend(shop.url, KEY, SECRET, timeout=1e-9))
    assert len(messages) == 10
    for message in messages:
        for secret in ("1003", "1001", "chloe", "anna", KEY, SECRET, "changed my mind"):
            assert secret not in message, message


# -- changes --------------------------------------------------------------------------------


async def test_cancel_an_unfulfilled_order(shop: LocalWooCommerce) -> None:
    backend = shop.backend()
    try:
        result = await _run(
            "orders.cancel",
            backend,
            number="1001",
            email="anna.novak@example.com",
            reason="ordered the wrong size",
        )
    finally:
        await backend.aclose()
    assert result.outcome == "ok" and result.data["cancelled"] is True
    assert result.data["order"]["status"] == "cancelled"
    assert shop.order("1001")["status"] == "cancelled"
    writes = [(r.method, r.path, r.body) for r in shop.requests if r.method != "GET"]
    assert writes[0] == ("PUT", f"{API}/orders/1001", {"status": "cancelled"})
    assert writes[1][:2] == ("POST", f"{API}/orders/1001/notes")
    assert writes[1][2]["customer_note"] is False
    assert "ordered the wrong size" in writes[1][2]["note"]


async def test_a_shipped_order_is_not_cancelled_and_nothing_is_written(
    shop: LocalWooCommerce,
) -> None:
    backend = shop.backend()
    try:
        result = await _run("orders.cancel", backend, number="1003", email="chloe.pop@example.com")
    finally:
        await backend.aclose()
    assert result.data["cancelled"] is False and result.data["reason"] == "shipped"
    assert all(r.method == "GET" for r in shop.requests)


async def test_the_shop_refusing_a_cancel_is_an_error(shop: LocalWooCommerce) -> None:
    shop.permissions = "read"  # a read-only key: WooCommerce refuses every write
    backend = shop.backend()
    try:
        result = await _run("orders.cancel", backend, number="1001", email="anna.novak@example.com")
    finally:
        await backend.aclose()
    assert result == m.ActionResult("1", "error", {"reason": "backend"})
    assert shop.order("1001")["status"] == "on-hold"


async def test_an_order_paid_since_the_lookup_is_not_cancelled(shop: LocalWooCommerce) -> None:
    backend = shop.backend()
    try:
        assert (await backend.get_order("1014") or {})["status"] == "unfulfilled"
        shop.order("1014")["status"] = "processing"
        with pytest.raises(BackendError, match="processing"):
            await backend.cancel_order("1014", None)
    finally:
        await backend.aclose()
    assert all(r.method == "GET" for r in shop.requests)


async def test_a_return_request_is_written_as_order_notes(shop: LocalWooCommerce) -> None:
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
    assert result.outcome == "ok" and result.data["created"] is True
    assert result.data["items"] == ["TEE-WHT-L", "CAP-NVY"] and result.data["label_url"] is None
    customer, private = shop.notes[1005]  # newest first
    assert result.data["rma"] == f"R-{private['id']}"
    assert private["customer_note"] is False and customer["customer_note"] is True
    assert "Classic tee, white, L ×2 (SKU TEE-WHT-L)" in private["note"]
    assert "too_small" in private["note"] and "parcel shop" in private["note"]
    assert result.data["rma"] in customer["note"]


async def test_final_sale_comes_from_the_product_tag(shop: LocalWooCommerce) -> None:
    backend = shop.backend()
    try:
        blocked = await _run("returns.check", backend, number="1010", email="joy.wong@example.com")
        mixed = await _run(
            "returns.check", backend, number="1011", email="karel.svoboda@example.com"
        )
    finally:
        await backend.aclose()
    assert blocked.data["eligible"] is False and blocked.data["reason"] == "final_sale"
    assert [i["sku"] for i in mixed.data["items"]] == ["SHR-BLU-M"]


async def test_tickets_stay_in_flowengine(shop: LocalWooCommerce) -> None:
    backend = shop.backend()
    try:
        result = await _run(
            "tickets.create", backend, kind="damaged", details="torn", number="1005"
        )
    finally:
        await backend.aclose()
    assert result.outcome == "ok" and result.data["ticket_id"].startswith("T-")
    assert backend.tickets[0]["details"] == "torn" and shop.requests == []


# -- setup ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://shop.example", "ftp://shop.example", "shop.example", "https://u:p@shop.example"],
)
def test_a_store_url_that_would_leak_the_key_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="store URL") as refused:
        WooCommerceBackend(url, KEY, SECRET)
    assert KEY not in str(refused.value) and SECRET not in str(refused.value)


async def test_https_and_this_machine_are_accepted() -> None:
    for url in ("https://shop.example/", "https://example.com/shop", "http://localhost:8080"):
        await WooCommerceBackend(url, KEY, SECRET).aclose()
    with pytest.raises(ValueError, match="key and secret"):
        WooCommerceBackend("https://shop.example", KEY, " ")
