"""Background loops stop when cancelled even if a library turns the cancellation into an
ordinary error (redis-py does, cancelled mid-read): before, the insights consumer went round
again and a server's shutdown waited for ever (a Sentinel kill -9 failover test hung there)."""

from __future__ import annotations

import asyncio
from typing import Any

from flowengine.insights.consumer import Consumer


class SwallowingStore:
    """A store whose read, when cancelled, raises ConnectionError as redis-py does."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()

    async def consume_events(self, *args: Any, **kwargs: Any) -> int:
        self.reading.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise ConnectionError("Connection closed by server.") from None
        return 0


async def test_a_loop_whose_store_swallows_the_cancellation_still_stops() -> None:
    store = SwallowingStore()
    consumer = Consumer(store, interval=0.01)  # type: ignore[arg-type]
    consumer.start()
    await asyncio.wait_for(store.reading.wait(), 5)
    stopping = asyncio.ensure_future(consumer.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)  # it hung for ever before
    assert stopping in done, "the consumer did not stop"
    assert consumer.failures == 0  # the cancellation is not counted as a store failure
