"""The durable embedded store (`store/sqlite.py`): what one box keeps across a restart.

The store closed and opened again on its file keeps every kind of record; expiry follows the
clock it is given; a real `flowengine serve --data-dir` killed with SIGKILL right after an ack
resumes the conversation and the agent's queue in a new process; a data dir that cannot be used
stops `serve` with a message that names it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from flowengine.store.sqlite import SCHEMA_VERSION, DataDirError, SqliteStore, database_path
from tests.app_server import Clock
from tests.redis_server import free_port
from tests.server_process import ROOT, Agent, Client, ServerProcess, add_agent, eventually


def ev(seq: int, text: str = "hi") -> dict[str, Any]:
    return {"type": "message", "seq": seq, "from": "bot", "text": text}


def rec(sid: str, team: str = "orders") -> dict[str, Any]:
    return {"session": sid, "team": team, "priority": "normal", "reason": "r", "created_at": 1.0}


async def test_every_kind_of_record_survives_closing_and_opening_again(tmp_path: Path) -> None:
    clock = Clock(1_000.0)
    store = SqliteStore(tmp_path, clock)
    await store.commit("s", 0, {"step": 1}, [ev(1), ev(2)], action_id="a1", ttl=600, now=1.0)
    await store.commit("s", 1, {"step": 2}, [ev(3, "ภาษาไทย")], action_id="a2", ttl=600, now=2.0)
    await store.put_version("v1", {"flows": {"a.yaml": "flow: a"}}, ttl=600)
    await store.put_handoff("s", rec("s"), score=5, ttl=600)
    await store.put_handoff("q", rec("q"), score=3, ttl=600)
    await store.transition("q", ("queued",), {"status": "assigned", "agent": "ann"}, None, 600)
    await store.put_ticket("T-1", {"key": "T-1", "created_at": 1.0, "packet": {"n": 1}})
    await store.put_ticket("T-2", {"key": "T-2", "created_at": 2.0, "packet": {"n": 2}})
    await store.update_ticket("T-1", {"status": "done"})
    await store.put_token("h1", "ann", ttl=600)
    await store.heartbeat("ann", {"teams": ["orders"]}, now=1_000.0)
    await store.add_note("s", {"text": "called the carrier"}, ttl=600)
    assert await store.once("agent:ann:1", 600)
    await store.add_failure(["user:ann"], window=600)
    await store.append_events([{"type": "x", "n": i} for i in range(3)])
    await store.push_webhook({"id": "w1"})
    await store.push_webhook({"id": "w2"})
    assert (await store.take_webhook() or {})["id"] == "w1"  # in flight when the box stopped
    await store.log_webhook({"id": "w0", "status": 200})
    await store.close()

    store = SqliteStore(tmp_path, clock)
    try:
        record = await store.load("s", "a2")
        assert record is not None and record.state == {"step": 2}
        assert (record.rev, record.seq, record.updated_at, record.applied) == (2, 3, 2.0, True)
        assert [e["seq"] for e in await store.replay("s", 0)] == [1, 2, 3]
        assert (await store.replay("s", 2))[0]["text"] == "ภาษาไทย"
        again = await store.commit("s", 2, {}, [ev(4)], action_id="a1", ttl=600, now=3.0)
        assert again.outcome == "duplicate"  # the action ids are kept too
        assert await store.get_version("v1") == {"flows": {"a.yaml": "flow: a"}}
        assert [r["session"] for r in await store.queue("orders")] == ["s"]
        assert [r["session"] for r in await store.agent_chats("ann")] == ["q"]
        assert [t["key"] for t in await store.tickets()] == ["T-2", "T-1"]
        assert await store.get_ticket("T-1") == {
            "key": "T-1",
            "created_at": 1.0,
            "packet": {"n": 1},
            "status": "done",
        }
        assert await store.get_token("h1") == "ann"
        assert await store.presence() == {"ann": 1_000.0}
        assert [n["text"] for n in await store.notes("s")] == ["called the carrier"]
        assert not await store.once("agent:ann:1", 600)
        assert await store.failures(["user:ann"]) == [1]
        assert [e["n"] for e in await store.read_events(10)] == [0, 1, 2]
        assert await store.recover_webhooks() == 1
        assert [(await store.take_webhook() or {})["id"] for _ in range(2)] == ["w1", "w2"]
        assert await store.webhook_log() == [{"id": "w0", "status": 200}]
        view = await store.chat_view("s")
        assert view.session is not None and view.session.seq == 3 and len(view.transcript) == 3
    finally:
        await store.close()


async def test_records_expire_by_the_clock_and_the_sweep_deletes_them(tmp_path: Path) -> None:
    clock = Clock(1_000.0)
    store = SqliteStore(tmp_path, clock)
    try:
        await store.commit("s", 0, {}, [ev(1)], action_id="a1", ttl=60, now=0)
        await store.put_version("v", {}, ttl=60)
        await store.put_token("h", "ann", ttl=60)
        await store.put_handoff("s", rec("s"), score=1, ttl=60)
        clock.advance(59.9)
        assert await store.load("s") is not None and await store.get_token("h") == "ann"
        clock.advance(0.1)
        assert await store.load("s") is None and await store.replay("s", 0) == []
        assert await store.get_version("v") is None and await store.get_token("h") is None
        assert await store.get_handoff("s") is None and await store.queue("orders") == []
        assert await store.sweep() == 1
        # Created again, the session starts afresh: no transcript or action id of the old one.
        c = await store.commit("s", 0, {}, [ev(1)], action_id="a1", ttl=60, now=0)
        assert (c.outcome, c.seq) == ("ok", 1)
        assert len(await store.replay("s", 0)) == 1
    finally:
        await store.close()
    with sqlite3.connect(database_path(tmp_path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT count(*) FROM versions").fetchone()[0] == 0


async def test_one_process_per_data_dir_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    with pytest.raises(DataDirError, match="in use by another flowengine process"):
        SqliteStore(tmp_path)
    await store.close()
    with sqlite3.connect(database_path(tmp_path)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(DataDirError, match="written by a newer flowengine"):
        SqliteStore(tmp_path)


async def test_a_killed_server_resumes_the_conversation_and_the_queue(tmp_path: Path) -> None:
    agents = tmp_path / "agents.json"
    password = add_agent("alice", agents_file=agents)
    data = tmp_path / "data"
    args = ("--agents-file", str(agents), "--log-level", "info")
    first = ServerProcess(*args, data_dir=data).start()
    try:
        await first.logged(f"on the embedded store in {database_path(data)}")
        agent = await Agent.login(first, "alice", password)
        await agent.until(lambda f: f["type"] == "queue")
        shopper = await Client.connect(first.ws_url)
        await shopper.until(lambda f: f.get("seq") == 1)
        said = ["1003", "chloe.pop@example.com"]
        await shopper.act({"type": "choose", "option": "track"})
        for text in said:
            assert (await shopper.act({"type": "text", "text": text}))["type"] == "ack"
        await shopper.until(lambda f: f.get("type") == "message" and f.get("options"))
        await shopper.act({"type": "choose", "option": "person"})
        await shopper.until(lambda f: f.get("type") == "handoff" and f["status"] == "queued")
        await agent.until(lambda f: f["type"] == "queue" and f["waiting"])
        said.append("are you there?")
        last = {"type": "text", "id": "last-before-the-crash", "text": said[-1]}
        await shopper.send(last)
        ack = await shopper.until(lambda f: f["type"] == "ack" and f["id"] == last["id"])
        first.kill()  # right after the ack: no shutdown, nothing flushed
    finally:
        first.stop()
    seen = {f["seq"]: f for f in shopper.events}
    assert max(seen) == ack["seq"]

    second = ServerProcess(*args, data_dir=data).start()
    try:
        back = await Client.connect(second.ws_url, session=shopper.session)
        assert back.frames[0]["resumed"] is True and back.frames[0]["session"] == shopper.session
        replayed = [
            await back.until(lambda f, n=n: f.get("seq") == n) for n in range(1, max(seen) + 1)
        ]
        assert [f["seq"] for f in replayed] == list(range(1, ack["seq"] + 1))
        assert all(replayed[n - 1] == frame for n, frame in seen.items())  # as acknowledged
        from_shopper = [f["text"] for f in replayed if f.get("from") == "shopper"]
        for text in said:
            assert from_shopper.count(text) == 1
        # The same action resent (its ack was lost with the box): acknowledged, not applied again.
        await back.send(last)
        again = await back.until(lambda f: f["type"] == "ack" and f["id"] == last["id"])
        assert again["duplicate"] is True and again["seq"] == ack["seq"]
        # The next click works, and is numbered on from the stored transcript.
        nxt = await back.act({"type": "text", "text": "hello after the restart"})
        assert nxt["type"] == "ack" and nxt["seq"] == ack["seq"] + 1
        # The agent's login and the queue are there too.
        console = await Agent.connect(second, agent.token)
        waiting = await console.until(lambda f: f["type"] == "queue" and f["waiting"])
        assert [w["session"] for w in waiting["waiting"]] == [shopper.session]
        await console.close()
        await back.close()
    finally:
        second.stop()


def _serve(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowengine", "serve", "--port", str(free_port()), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_data_dir_that_cannot_be_used_stops_serve_with_a_message(tmp_path: Path) -> None:
    in_the_way = tmp_path / "data"
    in_the_way.write_text("not a directory")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    database_path(damaged).write_bytes(b"this is no database " * 300)
    cases = [
        (in_the_way, f"--data-dir: {in_the_way} is not a directory"),
        # Permission denied, even for root (the tests run as root: a chmod would not stop it).
        (Path("/sys/flowengine-data"), "cannot create the data directory /sys/flowengine-data"),
        (damaged, f"--data-dir: {database_path(damaged)} cannot be used (file is not a database)"),
    ]
    for where, message in cases:
        r = _serve("--data-dir", str(where))
        assert r.returncode == 2, r.stderr
        assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = _serve("--data-dir", str(tmp_path), "--memory")
    assert r.returncode == 2 and "not both" in r.stderr


async def test_serve_keeps_its_store_in_data_where_it_runs_by_default(tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "flowengine", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--flows", str(ROOT / "flows"), "--log-level", "warning"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        readyz = f"http://127.0.0.1:{port}/readyz"
        assert await eventually(lambda: _answers(readyz), timeout=20)
        assert database_path(tmp_path / "data").is_file()
    finally:
        proc.terminate()
        proc.wait(10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as r:
            return bool(json.loads(r.read())["store"] == "sqlite")
    except OSError:
        return False
