"""The agent socket's small rules, as a third-party console would meet them: which error a claim
gets, which frames need an id, who may make the shopper see "typing"."""

from __future__ import annotations

import json
from pathlib import Path

from flowengine.handoff.accounts import Account
from flowengine.handoff.passwords import hash_password
from flowengine.server.config import ServerConfig
from tests.app_server import AppServer
from tests.server_process import Agent, Client

PASSWORD = "pw-for-the-tests"


async def _agent(server: AppServer, username: str, teams: str) -> Agent:
    server.runtime.handoffs.accounts.put(
        Account(
            username, username.title(), "agent", tuple(teams.split(",")), hash_password(PASSWORD)
        )
    )
    agent = await Agent.login(server, username, PASSWORD)
    await agent.until(lambda f: f["type"] == "queue")  # online: chats can be queued
    return agent


async def test_claims_typing_and_ids(tmp_path: Path) -> None:
    cfg = tmp_path / "handoff.yaml"
    cfg.write_text("teams: [general, returns]\n")
    config = ServerConfig(handoff_config=str(cfg), agents_file=str(tmp_path / "agents.json"))
    async with AppServer(config) as server:
        alice = await _agent(server, "alice", "general")
        ron = await _agent(server, "ron", "returns")
        shopper = await Client.connect(server.ws_url)
        await shopper.until(lambda f: f.get("seq") == 1)
        await shopper.act({"type": "handoff"})
        await shopper.until(lambda f: f.get("type") == "handoff" and f["status"] == "queued")
        sid = shopper.session

        # Another team's chat: not_allowed, not "someone was faster".
        assert (await ron.act({"type": "claim", "session": sid}))["code"] == "not_allowed"
        # A frame that changes something needs an id.
        await alice.ws.send(json.dumps({"type": "claim", "session": sid}))
        refused = await alice.until(lambda f: f["type"] == "error")
        assert refused["code"] == "bad_id" and "id" not in refused
        assert (await alice.act({"type": "claim", "session": sid}))["type"] == "ack"
        # Taken: the next one is told it is gone.
        assert (await ron.act({"type": "claim", "session": sid}))["code"] in (
            "not_allowed",
            "not_available",
        )
        # Only the agent who has the chat makes the shopper see "typing".
        await ron.ws.send(json.dumps({"type": "typing", "session": sid}))
        await ron.ws.send(json.dumps({"type": "ping"}))
        await ron.until(lambda f: f["type"] == "pong")  # the typing frame was read and dropped
        await alice.ws.send(json.dumps({"type": "typing", "session": sid}))
        typing = await shopper.until(lambda f: f.get("type") == "typing")
        assert typing == {"type": "typing", "from": "agent"}
        assert sum(1 for f in shopper.frames if f.get("type") == "typing") == 1
        # An unknown frame type is named as such.
        unknown = await alice.act({"type": "dance", "session": sid})
        assert unknown["code"] == "unknown_type"
        for c in (alice, ron, shopper):
            await c.close()
