"""The Hub and a socket applying its own action (`Follower.acting_on`).

The socket that clicked sends its click's events itself, in its answer: the Hub does not wake it
for that commit (a task per click that only found them sent); if it failed before sending them,
it catches up on the way out. Everything else it is told while acting (another tab's commit, a
reconnect's "read everything") wakes it at once, as before: delaying a re-read until the action
ends once let a socket read a commit that a failover then lost (the Sentinel kill -9 test). On
the real store, with nothing mocked but the socket's wire.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowengine import frames
from flowengine.server.connection import Follower
from flowengine.server.runtime import Hub
from flowengine.server.tasks import Tasks
from flowengine.store.memory import MemoryStore

SID = "s1"


class Wire(Follower):
    """A follower whose frames are recorded instead of sent."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(None, store)  # type: ignore[arg-type]
        self.wire: list[frames.Frame] = []

    async def send(self, frame: frames.Frame) -> None:
        self.wire.append(frame)


def _events(first: int, n: int) -> list[dict[str, Any]]:
    return [{"seq": first + i, "type": "message", "text": f"event {first + i}"} for i in range(n)]


async def _commit(store: MemoryStore, rev: int, first: int, n: int) -> tuple[dict[str, Any], ...]:
    events = _events(first, n)
    done = await store.commit(SID, rev, {}, events, action_id=None, ttl=60, now=0)
    assert done.outcome == "ok"
    return tuple(events)


@pytest.fixture
async def setup() -> tuple[MemoryStore, Hub, Tasks, Wire]:
    store = MemoryStore()
    tasks = Tasks()
    hub = Hub(store, sessions=None, tasks=tasks)  # type: ignore[arg-type]
    await _commit(store, 0, 1, 1)
    wire = Wire(store)
    wire.sent[SID] = 1
    await hub.attach(SID, wire)
    return store, hub, tasks, wire


def _seqs(wire: Wire) -> list[int]:
    return [f["seq"] for f in wire.wire]


async def test_the_acting_socket_is_not_woken_for_its_own_commit(setup: Any) -> None:
    store, _hub, tasks, wire = setup
    async with wire.acting_on(SID):
        mine = await _commit(store, 1, 2, 2)
        assert not tasks._running  # no news task for the socket that is sending them itself
        await wire.news(SID, 3, mine)
    assert _seqs(wire) == [2, 3]
    await tasks.drain()
    assert _seqs(wire) == [2, 3]  # nothing twice


async def test_another_tabs_commit_while_acting_wakes_it_at_once(setup: Any) -> None:
    store, hub, tasks, wire = setup
    other = Wire(store)  # a second tab on the same session, on this process
    other.sent[SID] = 1
    await hub.attach(SID, other)
    async with wire.acting_on(SID):
        mine = await _commit(store, 1, 2, 1)
        # The other tab's click lands (in its own task) before this one answers.
        await asyncio.create_task(_commit(store, 2, 3, 2))
        assert len(tasks._running) == 2  # both sockets are woken for it
        await tasks.drain()
        assert _seqs(wire) == [2, 3, 4]  # read from the store, in order, its own included
        await wire.news(SID, 2, mine)  # its answer: already sent, nothing twice
    assert _seqs(wire) == [2, 3, 4]
    assert _seqs(other) == [2, 3, 4]


async def test_a_socket_that_fails_before_sending_its_events_catches_up(setup: Any) -> None:
    store, _hub, tasks, wire = setup
    with pytest.raises(RuntimeError):
        async with wire.acting_on(SID):
            await _commit(store, 1, 2, 2)
            raise RuntimeError("failed between the commit and the answer")
    assert _seqs(wire) == [2, 3]
    assert not tasks._running


async def test_a_reconnect_while_acting_rereads_at_once(setup: Any) -> None:
    store, hub, tasks, wire = setup
    async with wire.acting_on(SID):
        await asyncio.create_task(_commit(store, 1, 2, 1))  # not this socket's
        hub.committed(SID, -1, None)  # pub/sub came back: whatever was missed, re-read now
        await tasks.drain()
        assert _seqs(wire) == [2]
    assert _seqs(wire) == [2]
    assert wire.acting is None and wire.missed is None
