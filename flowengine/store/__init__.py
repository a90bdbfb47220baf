"""Where everything that must outlive a process lives: sessions, transcripts, flow versions,
analytics events, and the fan-out that tells every instance a session has news.

Two implementations of one contract (`base.Store`): `MemoryStore`, the embedded default for one
process, and `RedisStore` for many. `tests/test_store_contract.py` runs the same tests on both.
"""

from .base import Commit, SessionRecord, Store, StoreUnavailable

__all__ = ["Commit", "SessionRecord", "Store", "StoreUnavailable", "open_store"]


def open_store(redis_url: str | None, **options: object) -> Store:
    if redis_url:
        from .redis import RedisStore

        return RedisStore(redis_url, **options)  # type: ignore[arg-type]
    from .memory import MemoryStore

    return MemoryStore()
