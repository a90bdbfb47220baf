"""Where everything that must outlive a process lives: sessions, transcripts, flow versions,
analytics events, and the fan-out that tells every instance a session has news.

Two implementations of one contract (`base.Store`): `MemoryStore`, the embedded default for one
process, and `RedisStore` for many. `tests/test_store_contract.py` runs the same tests on both.
"""

import time
from collections.abc import Callable

from .base import ChatView, Commit, Listener, SessionRecord, Store, StoreUnavailable

__all__ = [
    "ChatView",
    "Commit",
    "Listener",
    "SessionRecord",
    "Store",
    "StoreUnavailable",
    "open_store",
]


def open_store(
    redis_url: str | None, *, max_connections: int = 32, clock: Callable[[], float] = time.time
) -> Store:
    """The Redis store for a URL, else the embedded one (which expires keys by `clock`)."""
    if redis_url:
        from .redis import RedisStore

        return RedisStore(redis_url, max_connections=max_connections)
    from .memory import MemoryStore

    return MemoryStore(clock)
