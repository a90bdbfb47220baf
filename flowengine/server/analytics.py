"""Analytics events, batched off the click's path into the store's capped log.

Events are buffered and flushed every `interval` seconds; if the store is down they wait (up to
`max_buffer`, then the oldest are dropped and counted), so analytics never slows or fails a click.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

from ..engine import model as m
from ..language.text import served_locale
from ..store import Store

log = logging.getLogger("flowengine.analytics")

STOP_WAIT = 5.0  # seconds a stop waits for the write under way


def abandoned(state: m.State, at: float, locales: Sequence[str]) -> dict[str, Any]:
    """`session_abandoned` (docs/events.md): the last shopper socket left mid-conversation."""
    return {
        "type": "session_abandoned",
        "at": at,
        "flow": state.flow,
        "step": state.step,
        "version": state.version,
        "locale": served_locale(state.locale, locales),
    }


def agent_replied(
    state: m.State, queue: str, agent: str, after: float, at: float, locales: Sequence[str]
) -> dict[str, Any]:
    """`agent_replied` (docs/events.md): the first message of the agent who has the chat."""
    return {
        "type": "agent_replied",
        "at": at,
        "queue": queue,
        "agent": agent,
        "after": round(max(0.0, after), 3),
        "flow": state.flow,
        "version": state.version,
        "locale": served_locale(state.locale, locales),
    }


class Analytics:
    def __init__(self, store: Store, interval: float = 0.2, max_buffer: int = 10_000) -> None:
        self.store = store
        self.interval = interval
        self.buffer: deque[dict[str, Any]] = deque(maxlen=max_buffer)
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None
        # One write at a time, never cancelled: a write cancelled while the store (a SQLite
        # thread, a command already sent) carries it out would leave its events in the
        # buffer, and the next flush would write them twice.
        self._writing = asyncio.Lock()
        self._stopping = asyncio.Event()

    def add(self, sid: str, events: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> None:
        for e in events:
            if len(self.buffer) == self.buffer.maxlen:
                self.dropped += 1
            self.buffer.append({**e, "session": sid})

    async def flush(self) -> None:
        async with self._writing:
            if not self.buffer:
                return
            batch = list(self.buffer)
            try:
                await self.store.append_events(batch)
            except Exception as exc:  # keep them for the next flush
                log.debug("analytics flush failed: %s", exc)
                return
            for _ in batch:
                if self.buffer:
                    self.buffer.popleft()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
            await self.flush()

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Write what is left and end: the loop's last flush, never cut in the middle."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            # Bounded: a store that does not answer cannot hold a shutdown up (the write under
            # way is waited for, then given up; its events stay in the buffer).
            done, _ = await asyncio.wait({task}, timeout=STOP_WAIT)
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return
        await self.flush()
