"""The Hub and a socket applying its own action (`Follower.acting_on`).

The socket that clicked sends its click's events itself, in its answer: the Hub does not wake it
for that commit (a task per click that only found them sent). What it is told while acting
(another tab's commit, or its own when it failed before sending) is caught up on the way out,
from the store, in seq order. On the real store, with nothing mocked but the socket's wire.
"""

from __future__ import annotations

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


async def test_another_commit_while_acting_is_caught_up_after(setup: Any) -> None:
    store, hub, tasks, wire = setup
    other = Wire(store)  # a second tab on the same session, on this process
    other.sent[SID] = 1
    await hub.attach(SID, other)
    async with wire.acting_on(SID):
        mine = await _commit(store, 1, 2, 1)
        await _commit(store, 2, 3, 2)  # the other tab's click lands before this one answers
        await wire.news(SID, 2, mine)
        assert _seqs(wire) == [2]
    assert _seqs(wire) == [2, 3, 4]  # caught up from the store, in order
    await tasks.drain()
    assert _seqs(other) == [2, 3, 4]  # the other tab was woken as always
    assert _seqs(wire) == [2, 3, 4]


async def test_a_socket_that_fails_before_sending_its_events_catches_up(setup: Any) -> None:
    store, _hub, _tasks, wire = setup
    with pytest.raises(RuntimeError):
        async with wire.acting_on(SID):
            await _commit(store, 1, 2, 2)
            raise RuntimeError("failed between the commit and the answer")
    assert _seqs(wire) == [2, 3]


async def test_a_resubscribe_while_acting_means_read_everything(setup: Any) -> None:
    store, hub, _tasks, wire = setup
    async with wire.acting_on(SID):
        await _commit(store, 1, 2, 1)
        hub.committed(SID, -1, None)  # pub/sub came back: whatever was missed, re-read
        hub.committed(SID, 2, None)
        assert wire.missed == -1
    assert _seqs(wire) == [2]
    assert wire.acting is None and wire.missed is None
