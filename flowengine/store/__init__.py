"""Where everything that must outlive a process lives: sessions, transcripts, flow versions,
analytics events, and the fan-out that tells every instance a session has news.

Three implementations of one contract (`base.Store`): for one process, `SqliteStore` (a file in
a data dir, kept across restarts: what `flowengine serve` uses by default) and `MemoryStore`
(nothing kept: tests, library users); `RedisStore` for many. `tests/test_store_contract.py` runs
the same tests on each.
"""

import time
from collections.abc import Callable
from typing import Any

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
    redis_url: str | None,
    *,
    data_dir: str | None = None,
    max_connections: int = 32,
    clock: Callable[[], float] = time.time,
    redis_options: dict[str, Any] | None = None,
) -> Store:
    """The Redis store for a URL; else the embedded one, in a file in `data_dir` (created if
    missing; `sqlite.DataDirError` if it cannot be used) or, without one, in memory. The
    embedded stores expire keys by `clock`."""
    if redis_url:
        from .redis import RedisStore

        return RedisStore(redis_url, max_connections=max_connections, **(redis_options or {}))
    if data_dir is not None:
        from .sqlite import SqliteStore

        return SqliteStore(data_dir, clock)
    from .memory import MemoryStore

    return MemoryStore(clock)
