"""Typed text over a real shopper socket: matched at a menu, acked, and the flow started."""

from __future__ import annotations

from pathlib import Path

from flowengine.server.config import ServerConfig
from tests.app_server import AppServer
from tests.server_process import Client
from tests.test_engine_intents import CANCEL, MAIN, PROJECT, RETURNS, TRACK


def _flows(tmp_path: Path) -> str:
    for name, text in (
        ("flowengine", PROJECT),
        ("main", MAIN),
        ("track_order", TRACK),
        ("cancel_order", CANCEL),
        ("return_order", RETURNS),
    ):
        (tmp_path / f"{name}.yaml").write_text(text)
    return str(tmp_path)


async def test_typed_text_at_a_menu_is_acked_and_starts_the_flow(tmp_path: Path) -> None:
    async with AppServer(ServerConfig(flows_dir=_flows(tmp_path))) as server:
        c = await Client.connect(server.ws_url, locale="cs-CZ")
        menu = await c.until(lambda f: f.get("type") == "message" and f.get("options"))
        assert [o["id"] for o in menu["options"]] == ["track", "cancel", "person"]
        ack = await c.act({"type": "text", "text": "chci vrátit boty"})
        assert ack["type"] == "ack"
        typed = await c.until(lambda f: f.get("type") == "message" and f["from"] == "shopper")
        assert typed["text"] == "chci vrátit boty"
        said = await c.until(lambda f: f.get("type") == "message" and f["from"] == "bot")
        assert said["text"] == "Vrácení."
        await c.close()


async def test_a_miss_and_a_clarifying_menu_over_the_socket(tmp_path: Path) -> None:
    async with AppServer(ServerConfig(flows_dir=_flows(tmp_path))) as server:
        c = await Client.connect(server.ws_url, locale="th")
        await c.until(lambda f: f.get("type") == "message" and f.get("options"))
        assert (await c.act({"type": "text", "text": "qwerty"}))["type"] == "ack"
        sorry = await c.until(lambda f: f.get("type") == "message" and f["from"] == "bot")
        assert sorry["text"] == "ขออภัยค่ะ ไม่เข้าใจข้อความนี้"
        again = await c.until(lambda f: f.get("type") == "message" and f.get("options"))
        assert [o["id"] for o in again["options"]] == ["track", "cancel", "person"]
        # two candidates: a clarifying menu, whose options are clicked like any other
        assert (await c.act({"type": "text", "text": "เรื่องคำสั่งซื้อ"}))["type"] == "ack"
        which = await c.until(lambda f: f.get("type") == "message" and f.get("options"))
        ids = [o["id"] for o in which["options"]]
        assert sorted(ids[:2]) == ["flow:cancel_order", "flow:track_order"]
        assert ids[2] == "intent:else"
        refused = await c.act({"type": "choose", "option": "track"})
        assert refused["type"] == "error" and refused["code"] == "unknown_option"
        assert (await c.act({"type": "choose", "option": "flow:track_order"}))["type"] == "ack"
        asked = await c.until(lambda f: f.get("type") == "message" and f.get("input"))
        assert asked["input"]["var"] == "order"
        await c.close()
