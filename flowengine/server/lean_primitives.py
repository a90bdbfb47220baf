"""asyncio's Queue and Event, as uvicorn's WebSocket protocol uses them, allocating nothing
until they are used.

Each socket's protocol holds an `asyncio.Queue` (what the app will `receive`) and an
`asyncio.Event` (may we write?) for its whole life. Those allocate five deques up front, each
with a 64-slot block: about 3.7 KiB of a socket that waits for a shopper's next click, more
than the rest of what flowengine keeps for it. These hold a list that is created when the
first waiter or item comes; a socket's queue holds one or two items at a time, and its
readers and writers are one task or a few.

Only what uvicorn calls is here (`put_nowait`, `get`, `empty`; `set`, `clear`, `wait`,
`is_set`), with asyncio's semantics: a `get` cancelled after it was woken passes the wake-up
on, so no item is stranded while another task waits.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


def _enlist(
    waiters: list[asyncio.Future[None]] | None,
) -> tuple[list[asyncio.Future[None]], asyncio.Future[None]]:
    """A new waiter, added to `waiters` (created on the first)."""
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    if waiters is None:
        waiters = []
    waiters.append(waiter)
    return waiters, waiter


def _wake_first(waiters: list[asyncio.Future[None]] | None) -> None:
    for waiter in waiters or ():
        if not waiter.done():
            waiter.set_result(None)
            return


class LeanQueue(Generic[T]):
    """An unbounded FIFO queue: `put_nowait`, `get`, `empty`, `qsize`."""

    __slots__ = ("_getters", "_items")

    def __init__(self) -> None:
        self._items: list[T] | None = None
        self._getters: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: T) -> None:
        if self._items is None:
            self._items = []
        self._items.append(item)
        _wake_first(self._getters)

    async def get(self) -> T:
        while not self._items:
            self._getters, waiter = _enlist(self._getters)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                self._getters.remove(waiter)
                if self._items and not waiter.cancelled():
                    _wake_first(self._getters)  # it was woken for an item it will not take
                raise
            self._getters.remove(waiter)
        return self._items.pop(0)


class LeanEvent:
    """A flag tasks can wait for: `set`, `clear`, `is_set`, `wait`."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if not self._value:
            self._value = True
            for waiter in self._waiters or ():
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        self._waiters, waiter = _enlist(self._waiters)
        try:
            await waiter
            return True
        finally:
            self._waiters.remove(waiter)
