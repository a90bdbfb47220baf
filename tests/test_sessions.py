"""The session shell in-process, on the embedded store: crash recovery and log redaction."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from flowengine.actions.demo_backend import DemoBackend
from flowengine.actions.perform import BackendActions
from flowengine.engine import model as m
from flowengine.handoff.accounts import open_accounts
from flowengine.handoff.config import HandoffConfig
from flowengine.handoff.service import HandoffService
from flowengine.handoff.webhooks import Webhooks
from flowengine.language import load_project
from flowengine.server.analytics import Analytics
from flowengine.server.config import ServerConfig
from flowengine.server.flows import FlowRegistry, precompiled
from flowengine.server.metrics import Metrics
from flowengine.server.protocol import Hello
from flowengine.server.redact import RedactingFilter, redact
from flowengine.server.sessions import SessionService
from flowengine.server.tasks import Tasks
from flowengine.store.memory import MemoryStore
from tests.conftest import TODAY

FLOWS = Path(__file__).resolve().parent.parent / "flows"


def _service(clock: list[float]) -> SessionService:
    store = MemoryStore()
    flows = FlowRegistry(str(FLOWS), store, version_ttl=3600)
    flows.load()
    service = SessionService(
        store,
        flows,
        BackendActions(DemoBackend(TODAY), lambda: TODAY),
        ServerConfig(),
        Metrics(),
        Analytics(store),
        Tasks(),
        clock=lambda: clock[0],
    )
    handoffs = HandoffService(
        store,
        service,
        HandoffConfig(),
        open_accounts(None, "/nonexistent/agents.json"),
        Webhooks(store, ()),
        ttl=3600,
        clock=lambda: clock[0],
    )
    service.use_handoffs(handoffs)
    return service


async def test_an_action_interrupted_by_a_crash_takes_the_error_exit() -> None:
    clock = [1000.0]
    service = _service(clock)
    opened = await service.open(Hello(None, 0, "en", {}))
    sid = opened.sid
    for event in (m.Choose("track"), m.Text("1003"), m.Text("chloe.pop@example.com")):
        applied = await service.apply(sid, event, None)
        assert applied.outcome == "ok"
    # The lookup effect is never run: this process "crashed" with the session waiting for it.
    record = await service.store.load(sid)
    assert record is not None and record.state["waiting"] == "action"
    clock[0] += 120
    again = await service.open(Hello(sid, record.seq, "en", {}))
    assert again.resumed
    await service.tasks.drain()
    record = await service.store.load(sid)
    assert record is not None and record.state["step"] == "backend_down"
    log = await service.store.replay(sid, 0)
    assert "can't reach our order system" in log[-1]["text"]


async def test_analytics_reach_the_store_without_shopper_text() -> None:
    clock = [0.0]
    service = _service(clock)
    opened = await service.open(Hello(None, 0, "en", {}))
    await service.apply(opened.sid, m.Choose("track"), "a1")
    await service.apply(opened.sid, m.Text("secret.person@example.com"), "a2")
    await service.analytics.flush()
    events = await service.store.read_events(100)
    assert {e["type"] for e in events} >= {"session_started", "option_chosen", "text_given"}
    assert all(e["session"] == opened.sid for e in events)
    assert "secret.person" not in repr(events)
    await service.left(opened.sid)
    await service.analytics.flush()
    last = (await service.store.read_events(1))[0]
    assert last["type"] == "session_abandoned" and last["step"] == "ask_number"


def test_logs_never_show_emails_or_order_numbers() -> None:
    assert redact("lookup for anna.novak@example.com order #1003 failed") == (
        "lookup for <email> order #… failed"
    )
    assert redact("GET /ws HTTP/1.1 127.0.0.1:56876") == "GET /ws HTTP/1.1 127.0.0.1:56876"
    record = logging.LogRecord(
        "flowengine", logging.INFO, __file__, 1, "order %s for %s", ("1003", "a@b.cz"), None
    )
    RedactingFilter().filter(record)
    assert record.getMessage() == "order #… for <email>"


def test_flows_serve_has_just_validated_are_taken_once_not_compiled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve` compiles the flows to check them before it opens a port; the app it builds next
    in the same process starts from that result (the same directory, however it is named),
    and only once: a reload reads the files again."""
    shutil.copytree(FLOWS, tmp_path / "flows")
    monkeypatch.chdir(tmp_path)
    checked = load_project(["flows"])
    precompiled("flows", checked)
    registry = FlowRegistry(str(tmp_path / "flows"), MemoryStore(), version_ttl=3600)
    assert registry.load() is checked.project
    again = registry.load()
    assert again is not checked.project and again.version == checked.project.version
