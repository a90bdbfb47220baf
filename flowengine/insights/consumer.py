"""The consumer: a background task that folds the analytics log into the store's counters.

Never on a click's path: clicks only append to the log (server/analytics.py); this task takes
what is new every `interval` seconds. A store that is down only delays it (the entries wait in
the log, and on Redis unacknowledged entries are claimed again after `idle` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ..cancellation import raise_if_cancelled
from ..store import Store
from .fold import Increments, fold

log = logging.getLogger("flowengine.insights")

BATCH = 2000  # log entries per store call (one transaction, one script)
PRUNE_EVERY = 3600.0  # seconds between prunes of days past the retention
FORGET_EVERY = 60.0  # seconds between trims of the log's folded events older than a session


class Consumer:
    def __init__(
        self,
        store: Store,
        *,
        retention_days: int = 400,
        interval: float = 1.0,
        idle: float = 60.0,
        clock: Callable[[], float] = time.time,
        name: str | None = None,
        on_folded: Callable[[Increments], None] | None = None,
        keep_log: float = 24 * 3600.0,
    ) -> None:
        """`idle`: seconds after which an entry another consumer read and did not acknowledge
        (it died) is taken over (Redis). `on_folded` hears the increments this consumer had
        the store keep (the Prometheus counters), once the store has kept them. `keep_log`:
        seconds the analytics log's events are kept once folded (they name their session: no
        longer than a session lives)."""
        if retention_days < 1:
            raise ValueError("the insights retention must be at least 1 day")
        self.store = store
        self.retention_days = retention_days
        self.interval = interval
        self.idle = idle
        self.clock = clock
        self.name = name or "insights-" + secrets.token_hex(6)
        self.consumed = 0  # entries folded by this consumer
        self.failures = 0  # rounds the store failed
        self.on_folded = on_folded
        self.keep_log = keep_log
        self._folded: list[Increments] = []  # of the store call under way
        self._next_prune = 0.0
        self._next_forget = 0.0
        self._task: asyncio.Task[None] | None = None

    def oldest_day(self) -> str:
        """The first day still kept."""
        today = datetime.fromtimestamp(self.clock(), UTC).date()
        return (today - timedelta(days=self.retention_days)).isoformat()

    def _fold(self, events: list[Any]) -> Increments:
        # Days already past the retention are not written (they would be pruned at once).
        oldest = self.oldest_day()
        increments = {k: n for k, n in fold(events).items() if k[0] >= oldest}
        self._folded.append(increments)
        return increments

    async def catch_up(self) -> int:
        """Fold everything in the log now; how many entries. Raises if the store fails."""
        total = 0
        while True:
            self._folded = []
            taken = await self.store.consume_events(
                self._fold,
                consumer=self.name,
                count=BATCH,
                idle=self.idle,
                retention_days=self.retention_days,
            )
            if self.on_folded is not None:
                for increments in self._folded:
                    self.on_folded(increments)
            if not taken:
                break
            total += taken
        self.consumed += total
        now = self.clock()
        if total and now >= self._next_forget:  # off the every-second round: 3 commands on Redis
            self._next_forget = now + FORGET_EVERY
            await self.store.forget_log(now - self.keep_log)
        await self.prune()
        return total

    async def prune(self, *, force: bool = False) -> int:
        """Delete the days past the retention (at most once an hour unless `force`)."""
        now = self.clock()
        if not force and now < self._next_prune:
            return 0
        self._next_prune = now + PRUNE_EVERY
        return await self.store.prune_insights(self.oldest_day())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.catch_up()
            except Exception as exc:  # the store is down: the log keeps the entries
                raise_if_cancelled()
                self.failures += 1
                log.debug("insights consumer: %s", exc)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
