"""Group commit: the commits that concurrent sessions of one process make in one event-loop
turn are written together, in one round trip (a Redis pipeline, one SQLite transaction).

Why: under load the cost of a click's write is the round trip, not the store (benchmarks.md:
one Redis write per message halves a bare socket's throughput). Batching across callers is
what auto-pipelining clients do (ioredis, go-redis); doing it here keeps each session's own
compare-and-set (every request in a batch is its own script call or statement), so a conflict
in one session does not touch the others.

The contract, for every store that uses it:

* **no added latency when idle**: a lone commit is written on the next loop turn
  (`call_soon`), never after a timer;
* **bounded**: at most `max_batch` requests a write; more wait for the next, already scheduled;
* **durable before the answer**: a caller's future resolves only after its batch's write
  returned (each request's own outcome, or the error its own command got);
* **a failed write fails exactly its batch**: every request in it gets the exception (the
  store's `StoreUnavailable`), none of another batch; nothing is answered twice;
* batches may be in flight together (one per loop turn), as separate callers' writes were.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")

# A batch's write: one result (or the exception of that request alone) per request, in order.
Write = Callable[[Sequence[Request]], Awaitable[Sequence["Result | BaseException"]]]

MAX_BATCH = 64  # requests a write: a pipeline this long is ~100 KB, one Redis turn of ~1 ms


class GroupCommit(Generic[Request, Result]):
    """Collects requests made in one loop turn and writes them with `write`."""

    def __init__(self, write: Write[Request, Result], *, max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._write = write
        self.max_batch = max_batch
        self._pending: list[tuple[Request, asyncio.Future[Result]]] = []
        self._scheduled = False
        self._writing: set[asyncio.Task[None]] = set()
        # Figures for the benchmark and the tests: writes made and requests written.
        self.batches = 0
        self.requests = 0

    async def submit(self, request: Request) -> Result:
        """Write `request` with whatever else arrives in this loop turn; its own result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        future.add_done_callback(_retrieved)
        self._pending.append((request, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        # A caller that goes away (its socket closed) cancels only its own future: the write
        # the batch shares goes on, and `_run` skips a future already done.
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)

    async def _run(self, batch: list[tuple[Request, asyncio.Future[Result]]]) -> None:
        self.batches += 1
        self.requests += len(batch)
        try:
            results = await self._write([r for r, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} got {len(results)} results")
        except asyncio.CancelledError:  # the store is closing: nobody is told it is saved
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the whole batch failed: every request in it hears so
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def drain(self) -> None:
        """Wait for every write under way (a store closing)."""
        while self._writing or self._pending:
            if self._pending and not self._scheduled:
                self._flush()
            await asyncio.gather(*self._writing, return_exceptions=True)


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a request's error as seen: its caller may have been cancelled after it was set."""
    if not future.cancelled():
        future.exception()
