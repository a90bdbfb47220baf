"""What is checked before and while a socket talks: its Origin, and how fast it sends."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def origin_allowed(
    origin: str | None, host: str | None, allowed: tuple[str, ...], scheme: str = "http"
) -> bool:
    """Allowed: an origin on the list; else (no list) the server's own origin or localhost.

    A missing Origin is a non-browser client (browsers always send one on WebSockets), which
    cross-site WebSocket hijacking cannot use, so it is let through.
    """
    if origin is None:
        return True
    origin = origin.rstrip("/")
    if allowed:
        return "*" in allowed or origin in allowed
    parts = urlsplit(origin)
    if parts.hostname in LOCAL_HOSTS:
        return True
    if host is None:
        return False
    own = {f"http://{host}", f"https://{host}"}
    return origin in own


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class ClientLimits:
    """Per client IP: a shared frame budget and a cap on open sockets (per process)."""

    def __init__(self, rate: float, burst: int, max_sockets: int) -> None:
        self.rate, self.burst, self.max_sockets = rate, burst, max_sockets
        self._buckets: dict[str, TokenBucket] = {}
        self._sockets: dict[str, int] = {}

    def open(self, ip: str) -> bool:
        if self._sockets.get(ip, 0) >= self.max_sockets:
            return False
        self._sockets[ip] = self._sockets.get(ip, 0) + 1
        self._buckets.setdefault(ip, TokenBucket(self.rate, self.burst))
        return True

    def close(self, ip: str) -> None:
        left = self._sockets.get(ip, 1) - 1
        if left <= 0:
            self._sockets.pop(ip, None)
            self._buckets.pop(ip, None)
        else:
            self._sockets[ip] = left

    def take(self, ip: str) -> bool:
        bucket = self._buckets.get(ip)
        return bucket.take() if bucket is not None else True
