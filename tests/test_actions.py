"""Order actions over the demo backend and over a merchant's HTTP API (a real local server)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from flowengine.actions.demo_backend import DemoBackend
from flowengine.actions.http_backend import HttpBackend
from flowengine.actions.orders import return_eligibility
from flowengine.actions.perform import BackendActions
from flowengine.actions.registry import ACTIONS
from flowengine.engine import model as m
from tests.conftest import TODAY


async def _run(name: str, backend: Any, **args: Any) -> m.ActionResult:
    return await BackendActions(backend, lambda: TODAY).perform(m.CallAction("1", name, args, 2.0))


def test_demo_data_covers_every_state() -> None:
    orders = DemoBackend(TODAY).orders.values()
    statuses = {o["status"] for o in orders}
    assert {
        "unfulfilled",
        "processing",
        "shipped",
        "out_for_delivery",
        "delivered",
        "partially_fulfilled",
        "cancelled",
        "refunded",
    } <= statuses
    assert len(orders) >= 12
    assert any(i["final_sale"] for o in orders for i in o["items"])
    delivered = [return_eligibility(o, TODAY) for o in orders if o["status"] == "delivered"]
    assert {"window_closed", None} <= {e["reason"] for e in delivered}


async def test_lookup_needs_the_matching_email() -> None:
    backend = DemoBackend(TODAY)
    ok = await _run("orders.lookup", backend, number="#1003", email=" CHLOE.POP@example.com ")
    assert ok.outcome == "ok" and ok.data["status"] == "shipped"
    wrong_email = await _run("orders.lookup", backend, number="1003", email="other@example.com")
    no_order = await _run("orders.lookup", backend, number="99999", email="chloe.pop@example.com")
    garbage = await _run("orders.lookup", backend, number="<script>", email="x")
    # "No such order" and "wrong email" must look the same to the shopper.
    assert wrong_email == no_order == garbage == m.ActionResult("1", "not_found", None)


async def test_cancel_only_while_unfulfilled() -> None:
    backend = DemoBackend(TODAY)
    done = await _run("orders.cancel", backend, number="1001", email="anna.novak@example.com")
    assert done.data["cancelled"] is True and done.data["order"]["status"] == "cancelled"
    again = await _run("orders.cancel", backend, number="1001", email="anna.novak@example.com")
    assert again.data == {**again.data, "cancelled": False, "reason": "cancelled"}
    shipped = await _run("orders.cancel", backend, number="1003", email="chloe.pop@example.com")
    assert shipped.data["cancelled"] is False and shipped.data["reason"] == "shipped"


@pytest.mark.parametrize(
    ("number", "email", "reason"),
    [
        ("1006", "fah.chai@example.com", "window_closed"),
        ("1010", "joy.wong@example.com", "final_sale"),
        ("1003", "chloe.pop@example.com", "not_delivered"),
        ("1008", "hana.kral@example.com", "cancelled"),
        ("1009", "ivan.petrescu@example.com", "refunded"),
    ],
)
async def test_return_refusals(number: str, email: str, reason: str) -> None:
    backend = DemoBackend(TODAY)
    check = await _run("returns.check", backend, number=number, email=email)
    assert check.data["eligible"] is False and check.data["reason"] == reason
    create = await _run(
        "returns.create", backend, number=number, email=email, reason="x", method="drop_off"
    )
    assert create.data == {"created": False, "reason": reason}


async def test_return_skips_final_sale_items_and_issues_an_rma() -> None:
    backend = DemoBackend(TODAY)
    check = await _run("returns.check", backend, number="1011", email="karel.svoboda@example.com")
    assert [i["sku"] for i in check.data["items"]] == ["SHR-BLU-M"]
    bad = await _run(
        "returns.create",
        backend,
        number="1011",
        email="karel.svoboda@example.com",
        reason="too_big",
        method="drop_off",
        sku="SOCK-3PK",
    )
    assert bad.data == {"created": False, "reason": "item_not_returnable"}
    ok = await _run(
        "returns.create",
        backend,
        number="1011",
        email="karel.svoboda@example.com",
        reason="too_big",
        method="label",
        sku="all",
    )
    assert (
        ok.data["created"]
        and ok.data["rma"] == "RMA-1011-001"
        and ok.data["items"] == ["SHR-BLU-M"]
    )
    assert ok.data["label_url"].endswith("label.pdf")


async def test_a_failing_or_slow_action_takes_the_error_exit() -> None:
    class Broken(DemoBackend):
        async def get_order(self, number: str) -> dict[str, Any] | None:
            raise RuntimeError("bug")

    class Slow(DemoBackend):
        async def get_order(self, number: str) -> dict[str, Any] | None:
            import asyncio

            await asyncio.sleep(5)
            return None

    broken = await _run("orders.lookup", Broken(TODAY), number="1003", email="a@b.cz")
    assert broken.outcome == "error" and broken.data == {"reason": "internal"}
    call = m.CallAction("1", "orders.lookup", {"number": "1003", "email": "a@b.cz"}, 0.05)
    slow = await BackendActions(Slow(TODAY), lambda: TODAY).perform(call)
    assert slow.outcome == "error" and slow.data == {"reason": "timeout"}
    unknown = await BackendActions(Broken(TODAY), lambda: TODAY).perform(
        m.CallAction("1", "nope.nope", {}, 1)
    )
    assert unknown.outcome == "error"
    assert set(ACTIONS) == {
        "orders.lookup",
        "orders.cancel",
        "returns.check",
        "returns.create",
        "tickets.create",
    }


# -- the HTTP backend against a real local server -------------------------------------------

ORDER = {
    "number": "5001",
    "email": "max@example.com",
    "name": "Max Mustermann",
    "status": "unfulfilled",
    "items": [{"sku": "A", "name": "A thing", "qty": 1, "price": 10}],
    "total": 10,
    "currency": "EUR",
}


class _Handler(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, str | None, Any]]] = []
    mode = "normal"

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.seen.append((self.command, self.path, self.headers.get("X-Api-Key"), body))
        return body

    def do_GET(self) -> None:
        self._record()
        if self.mode == "500":
            return self._reply(500, {"error": "boom"})
        if self.mode == "slow":
            time.sleep(1.0)
        if self.mode == "garbage":
            return self._reply(200, None, raw=b"<html>not json</html>")
        if self.path == "/api/orders/5001":
            return self._reply(200, ORDER)
        return self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = self._record()
        if self.path == "/api/orders/5001/cancel":
            return self._reply(
                200, {**ORDER, "status": "cancelled", "cancel_reason": body["reason"]}
            )
        if self.path == "/api/tickets":
            return self._reply(201, {"ticket_id": "HD-77"})
        if self.path == "/api/returns":
            return self._reply(201, {})  # no RMA: a broken API
        return self._reply(404, {})


@pytest.fixture
def order_api() -> Iterator[str]:
    _Handler.seen = []
    _Handler.mode = "normal"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()


async def test_http_backend_lookup_cancel_ticket(
    order_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_KEY", "s3cret")
    backend = HttpBackend(order_api, auth_header="X-Api-Key", auth_env="SHOP_KEY")
    try:
        found = await _run("orders.lookup", backend, number="5001", email="MAX@example.com")
        assert found.outcome == "ok" and found.data["first_name"] == "Max"
        missing = await _run("orders.lookup", backend, number="5002", email="max@example.com")
        assert missing.outcome == "not_found"
        cancelled = await _run(
            "orders.cancel", backend, number="5001", email="max@example.com", reason="changed mind"
        )
        assert cancelled.data["cancelled"] is True
        ticket = await _run("tickets.create", backend, kind="damaged", details="torn")
        assert ticket.data == {"ticket_id": "HD-77"}
    finally:
        await backend.aclose()
    assert all(key == "s3cret" for _, _, key, _ in _Handler.seen)
    assert (
        "POST",
        "/api/orders/5001/cancel",
        "s3cret",
        {"reason": "changed mind"},
    ) in _Handler.seen


@pytest.mark.parametrize("mode", ["500", "garbage", "slow"])
async def test_http_backend_failures_take_the_error_exit(order_api: str, mode: str) -> None:
    _Handler.mode = mode
    backend = HttpBackend(order_api, timeout=0.2)
    try:
        result = await _run("orders.lookup", backend, number="5001", email="max@example.com")
    finally:
        await backend.aclose()
    assert result.outcome == "error" and result.data == {"reason": "backend"}


async def test_http_backend_unreachable_and_bad_answers() -> None:
    backend = HttpBackend("http://127.0.0.1:9", timeout=0.5)
    try:
        result = await _run("orders.lookup", backend, number="5001", email="max@example.com")
    finally:
        await backend.aclose()
    assert result.outcome == "error"


async def test_http_backend_return_without_rma_is_an_error(order_api: str) -> None:
    backend = HttpBackend(order_api)
    try:
        ORDER_DELIVERED = {**ORDER, "status": "delivered", "delivered_at": "2026-11-20"}
        _Handler.mode = "normal"
        original = _Handler.do_GET

        def delivered(self: _Handler) -> None:
            self._record()
            self._reply(200, ORDER_DELIVERED)

        _Handler.do_GET = delivered  # type: ignore[method-assign]
        try:
            result = await _run(
                "returns.create",
                backend,
                number="5001",
                email="max@example.com",
                reason="too_big",
                method="drop_off",
            )
        finally:
            _Handler.do_GET = original  # type: ignore[method-assign]
    finally:
        await backend.aclose()
    assert result.outcome == "error"
