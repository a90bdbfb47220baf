"""Stopping a background loop whose library swallowed the cancellation.

redis-py, cancelled in the middle of reading a reply, drops the connection and raises an
ordinary error (ConnectionError) instead of CancelledError. A loop that retries on errors then
goes round again, its task stays "cancelling" for ever, and whoever stops it (a server shutting
down) waits for ever: a failover test hung that way for minutes at shutdown.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Call in a background loop's `except Exception`: if this task was asked to stop, stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
