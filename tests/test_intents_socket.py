"""Typed text over a real shopper socket: matched at a menu, acked, and the flow started."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flowengine.cli.report import render_table
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


@pytest.mark.parametrize("store", ["memory", "redis"])
@pytest.mark.parametrize("keep", [True, False])
async def test_unmatched_texts_reach_the_report_masked_and_only_when_kept(
    tmp_path: Path, request: pytest.FixtureRequest, store: str, keep: bool
) -> None:
    flows = Path(_flows(tmp_path))
    if keep:
        (flows / "flowengine.yaml").write_text(PROJECT.replace("2}", "2, keep_unmatched: true}"))
    redis_url = None
    if store == "redis":
        redis = request.getfixturevalue("redis_server")
        redis.flush()
        redis_url = redis.url
    config = ServerConfig(flows_dir=str(flows), redis_url=redis_url, insights_interval=3600)
    async with AppServer(config) as server:
        cs = await Client.connect(server.ws_url, locale="cs-CZ")
        th = await Client.connect(server.ws_url, locale="th")
        for c in (cs, th):
            await c.until(lambda f: f.get("type") == "message" and f.get("options"))
        typed = [
            (cs, "jaké bude počasí, jan@novak.cz 777123456"),
            (cs, "jaké bude počasí, jan@novak.cz 777123456"),
            (th, "=cmd|' /C calc'!A0 qwerty"),
            (th, "ขอเงินคืนค่ะ"),  # matched: counted, never kept
        ]
        for c, text in typed:
            assert (await c.act({"type": "text", "text": text}))["type"] == "ack"
        for c in (cs, th):
            await c.close()
        await server.runtime.analytics.flush()
        await server.runtime.insights.catch_up()
        today = datetime.now(UTC).date()
        report = await server.runtime.insights.report(today, today)
        t = report["typed"]
        assert (t["matched"], t["unmatched"]) == (1, 3)
        assert t["steps"] == [
            {"flow": "main", "step": "menu", "matched": 1, "unmatched": 3, "unmatched_rate": 0.75}
        ]
        assert t["targets"] == [{"target": "flow:return_order", "count": 1}]
        csv_text = await server.runtime.insights.export_csv(today, today)
        table = render_table(report)
        events = repr(await server.runtime.store.read_events(1000))
        for secret in ("novak", "777123456", "ขอเงินคืน"):
            assert secret not in events + csv_text + table + repr(report)
        if not keep:
            assert t["unmatched_texts"] == []
            assert "počasí" not in events + csv_text + table and "qwerty" not in csv_text
            return
        assert t["unmatched_texts"] == [
            {"text": "jaké bude počasí, [email] [number]", "locale": "cs", "flow": "main",
             "step": "menu", "count": 2},
            {"text": "=cmd|' /C calc'!A[number] qwerty", "locale": "th", "flow": "main",
             "step": "menu", "count": 1},
        ]  # fmt: skip
        rows = [r for r in csv.DictReader(io.StringIO(csv_text)) if r["metric"] == "unmatched"]
        # a spreadsheet reads the kept text as text, not as a formula
        assert {r["detail"] for r in rows} == {
            "jaké bude počasí, [email] [number]",
            "'=cmd|' /C calc'!A[number] qwerty",
        }
        assert "Typed text nobody matched" in table and "jaké bude počasí, [email]" in table
