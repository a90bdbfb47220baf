"""`flowengine report` and `flowengine graph FLOW --stats`, run as real processes against the
store a real `flowengine serve` process keeps (its SQLite file, read beside it; a real
redis-server), and what they say to input they cannot use."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.server_process import ROOT, Client, ServerProcess, eventually
from tests.test_insights import _flows


def flowengine(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowengine", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def today() -> str:
    return datetime.now(UTC).date().isoformat()


async def _converse(server: ServerProcess) -> None:
    """One conversation resolved by the flow ("yes, it solved it"), one dropped at `stars`."""
    a = await Client.connect(server.ws_url)
    await a.act({"type": "choose", "option": "answer"})
    await a.act({"type": "choose", "option": "yes"})
    await a.close()
    c = await Client.connect(server.ws_url)
    await c.act({"type": "choose", "option": "rate"})
    await c.close()


@pytest.fixture(params=["sqlite", "redis"])
def store_args(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    if request.param == "redis":
        redis = request.getfixturevalue("redis_server")
        redis.flush()
        return ["--redis-url", redis.url]
    return ["--data-dir", str(tmp_path / "data")]


async def test_report_and_painted_graph_read_what_the_server_counted(
    tmp_path: Path, store_args: list[str]
) -> None:
    flows = _flows(tmp_path / "flows")
    server = ServerProcess(*store_args, flows=flows).start()
    try:
        await _converse(server)

        def counted() -> dict[str, Any] | None:
            r = flowengine("report", "--since", "1d", "--format", "json", *store_args)
            assert r.returncode == 0, r.stderr
            report: dict[str, Any] = json.loads(r.stdout)
            return report if report["headline"]["abandoned"] == 1 else None

        # The server's consumer folds every second; the CLI reads beside the running server.
        report = await eventually(lambda: asyncio.to_thread(counted), timeout=20)
        h = report["headline"]
        assert (h["conversations"], h["automated"], h["automation_rate"]) == (2, 1, 0.5)
        assert (h["csat_flow"], h["csat_flow_n"], h["handed_over"]) == (1.0, 1, 0)
        assert report["period"] == {"since": today(), "until": today(), "days": 1}
        (shop,) = report["flows"]
        assert (shop["flow"], shop["started"], shop["dropped"], shop["drop_rate"]) == (
            "shop", 2, 1, 0.5,
        )  # fmt: skip

        table = flowengine("report", "--since", today(), "--until", today(), *store_args)
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].startswith(f"Insights {today()} .. {today()} (1 day)")
        assert any(line.split() == ["conversations", "2", "0", "+2"] for line in lines)
        assert any(line.split() == ["automation", "rate", "50.0%", "-"] for line in lines)
        assert any(line.split()[:6] == ["shop", "2", "1", "0", "1", "50.0%"] for line in lines)

        export = flowengine("report", "--since", "1d", "--format", "csv", *store_args)
        rows = list(csv.DictReader(io.StringIO(export.stdout)))
        dropped = [r for r in rows if r["metric"] == "dropped"]
        assert [(r["step"], r["detail"], r["value"]) for r in dropped] == [
            ("stars", "session", "1")
        ]

        graph = flowengine("graph", "shop", "--stats", "--flows", str(flows), *store_args)
        assert graph.returncode == 0, graph.stderr
        mermaid = graph.stdout
        assert 'n_stars("stars<br/>csat five<br/>1 in, 1 dropped (100#37;)")' in mermaid
        assert "n_menu -->|option:answer: 1| n_answer" in mermaid
        assert "n_menu -->|option:person: 0| HANDOFF" in mermaid
        assert "  class n_stars heaviest" in mermaid
        dot = flowengine(
            "graph", "shop", "--stats", "--format", "dot", "--flows", str(flows), *store_args
        ).stdout
        assert 'fillcolor="#fde2e2"' in dot and "1 in, 1 dropped (100%)" in dot
        plain = flowengine("graph", "shop", "--flows", str(flows)).stdout
        assert "dropped" not in plain and "heaviest" not in plain

        # Filters: one that ran is counted as stored (EN-us reads as en); a typo is refused,
        # not answered with zeros.
        r = flowengine("report", "--since", "1d", "--format", "json", "--locale", "EN-us",
                       "--flow", "shop", *store_args)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["headline"]["conversations"] == 2
        for args, message in [
            (["--flow", "nope"], "no conversation ran flow 'nope' in this period (flows that ran"),
            (["--locale", "english!"], "locale must be a locale such as en or pt-BR"),
            (["--locale", "de"], "no conversation was in locale 'de' in this period (locales: en)"),
            (["--flow-version", "latest"], "version must be a flow version id (hex)"),
            (["--flow-version", "abcdef12"], "no conversation ran flow version 'abcdef12'"),
        ]:
            r = flowengine("report", "--since", "1d", *args, *store_args)
            assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
        r = flowengine("graph", "shop", "--stats", "--flow-version", "latest", "--flows",
                       str(flows), *store_args)  # fmt: skip
        assert r.returncode == 2 and "version must be a flow version id" in r.stderr

        # The server still serves (nothing of it was locked or written by the CLI).
        await _converse(server)
    finally:
        server.stop()


async def test_what_the_server_logged_last_is_folded_as_it_stops(tmp_path: Path) -> None:
    flows = _flows(tmp_path / "flows")
    data = tmp_path / "data"
    server = ServerProcess("--data-dir", str(data), flows=flows).start()
    try:
        await _converse(server)
    finally:
        server.stop()  # at once: before the consumer's next round
    r = flowengine("report", "--format", "json", "--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["headline"]["conversations"] == 2


def test_report_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    r = flowengine("report", "--data-dir", str(tmp_path / "none"))
    assert r.returncode == 2
    assert f"--data-dir: no flowengine store at {tmp_path / 'none' / 'flowengine.db'}" in r.stderr
    for args, message in [
        (["--since", "last week"], "--since 'last week': give a number of days such as 7d"),
        (["--since", "0d"], "--since 0d: give at least 1d"),
        (["--until", "2026-13-01"], "--until '2026-13-01': give a number of days"),
        (["--since", "2026-11-05", "--until", "2026-11-01"], "is after --until 2026-11-01"),
        (["--since", "2000-01-01"], "too long (at most 3660)"),
        (["--redis-url", "http://x"], "--redis-url: not a Redis URL: http://"),
    ]:
        r = flowengine("report", *args)
        assert r.returncode == 2, args
        assert message in r.stderr, (args, r.stderr)
    r = flowengine("report", "--format", "yaml")
    assert r.returncode == 2 and "invalid choice: 'yaml'" in r.stderr


def test_report_on_a_redis_that_is_not_there_says_so() -> None:
    from tests.redis_server import free_port

    r = flowengine("report", "--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    assert r.returncode == 2
    assert r.stderr.startswith("flowengine report: ") and "Traceback" not in r.stderr


def test_a_data_dir_of_an_older_flowengine_is_named(tmp_path: Path) -> None:
    import sqlite3

    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "flowengine.db")
    db.execute("PRAGMA user_version = 1")
    db.close()
    r = flowengine("report", "--data-dir", str(data))
    assert r.returncode == 2
    assert "is at schema 1" in r.stderr and "run `flowengine serve` of this version" in r.stderr


def test_graph_stats_of_an_unknown_flow_and_a_bad_period(tmp_path: Path) -> None:
    flows = _flows(tmp_path / "flows")
    r = flowengine("graph", "nope", "--stats", "--flows", str(flows))
    assert r.returncode == 2 and "no flow 'nope'; flows: shop" in r.stderr
    r = flowengine("graph", "shop", "--stats", "--since", "x", "--flows", str(flows))
    assert r.returncode == 2 and "flowengine graph --stats: --since 'x'" in r.stderr
    # No store yet: the painted graph needs one, and says where it looked.
    r = flowengine(
        "graph", "shop", "--stats", "--flows", str(flows), "--data-dir", str(tmp_path / "d")
    )
    assert r.returncode == 2 and "no flowengine store at" in r.stderr


def test_serve_refuses_a_retention_under_a_day(tmp_path: Path) -> None:
    r = flowengine(
        "serve", "--memory", "--insights-retention-days", "0", "--flows", str(_flows(tmp_path))
    )
    assert r.returncode == 2
    assert "--insights-retention-days is a number of days, at least 1" in r.stderr
