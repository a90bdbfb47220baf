"""What is checked before and while a socket talks: its Origin, and how fast it sends.

Both sockets (the shopper's and the agent console's) pass every frame through a `FrameGate`
before anything else looks at it: a frame over the rate is dropped without being parsed or
answered (only the first drop in a window is answered, so a client learns it was refused), and
a socket that goes on flooding is closed and its address made to wait before it may open
another (docs/deployment.md, "Limits and abuse").
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
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


Verdict = Literal["pass", "answer", "drop", "close"]

ANSWER_EVERY = 1.0  # seconds: at most one rate_limited answer per socket in this long
FLOOD_WINDOW = 10.0  # seconds over which dropped frames are counted towards closing
STRIKES_PER_MINUTE = 20  # e.g. console sockets without a valid login, per address


@dataclass
class FrameGate:
    """One socket's frames: `pass` within its own budget and its address's; else `answer`
    (the first drop in a second: say rate_limited), `drop` (say nothing, parse nothing), or
    `close` once `flood_limit` frames were dropped within `FLOOD_WINDOW` seconds."""

    own: TokenBucket
    shared: Callable[[], bool]
    flood_limit: int
    _answered: float = -1e18
    _drops: int = 0
    _since: float = 0.0

    def admit(self, now: float | None = None) -> Verdict:
        now = time.monotonic() if now is None else now
        if self.own.take(now) and self.shared():
            return "pass"
        if now - self._since > FLOOD_WINDOW:
            self._drops, self._since = 0, now
        self._drops += 1
        if self._drops >= self.flood_limit:
            return "close"
        if now - self._answered >= ANSWER_EVERY:
            self._answered = now
            return "answer"
        return "drop"


def frame_id_of(text: str, limit: int) -> str | None:
    """The `id` of a refused frame, so its refusal can name it (parsed only for an answer)."""
    if len(text) > limit:
        return None
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        return None
    fid = frame.get("id") if isinstance(frame, dict) else None
    return fid if isinstance(fid, str) and 0 < len(fid) <= 64 else None


def too_large(text: str, limit: int) -> bool:
    """Whether `text` is over `limit` bytes as UTF-8, without encoding it when the length alone
    tells (a character is 1 to 4 bytes)."""
    if len(text) > limit:
        return True
    if len(text) * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


class ClientLimits:
    """Per client IP (per process): a shared frame budget, a cap on open sockets, a budget of
    new sessions, and a cool-down after one of its sockets was closed for flooding. An address
    is forgotten when its last socket closes (its new-session budget and cool-down when they
    run out), so the tables hold only addresses that are here now."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_sockets: int,
        *,
        sessions_per_minute: float = 1e9,
        cooldown: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate, self.burst, self.max_sockets = rate, burst, max_sockets
        self.sessions_per_minute, self.cooldown, self.clock = sessions_per_minute, cooldown, clock
        self._buckets: dict[str, TokenBucket] = {}
        self._sockets: dict[str, int] = {}
        self._new_sessions: dict[str, TokenBucket] = {}
        self._cooling: dict[str, float] = {}  # address -> may open sockets again at
        self._strikes: dict[str, TokenBucket] = {}

    def open(self, ip: str) -> bool:
        if self._sockets.get(ip, 0) >= self.max_sockets or self.cooling(ip):
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

    def new_session(self, ip: str) -> bool:
        """Whether `ip` may start one more session now (resuming one is not counted)."""
        now = self.clock()
        per_minute = self.sessions_per_minute
        bucket = _bucket(self._new_sessions, ip, per_minute / 60, max(1.0, per_minute), now)
        return bucket.take(now)

    def strike(self, ip: str) -> None:
        """Something `ip` should not keep doing (a console socket with no valid login): more
        than `STRIKES_PER_MINUTE` a minute and it cools down as after a flood."""
        now = self.clock()
        bucket = _bucket(self._strikes, ip, STRIKES_PER_MINUTE / 60, STRIKES_PER_MINUTE, now)
        if not bucket.take(now):
            self.flooded(ip)

    def flooded(self, ip: str) -> None:
        """A socket of `ip` was closed for flooding: refuse its new sockets for a while."""
        if self.cooldown > 0:
            now = self.clock()
            if len(self._cooling) > 10_000:
                self._cooling = {k: t for k, t in self._cooling.items() if t > now}
            self._cooling[ip] = now + self.cooldown

    def cooling(self, ip: str) -> bool:
        until = self._cooling.get(ip)
        if until is None:
            return False
        if self.clock() >= until:
            del self._cooling[ip]
            return False
        return True


def _bucket(
    table: dict[str, TokenBucket], ip: str, rate: float, burst: float, now: float
) -> TokenBucket:
    """`ip`'s bucket in `table`, made full if new. Past 10,000 addresses the full buckets,
    which limit no one, are forgotten (a spray of addresses cannot grow the table for ever)."""
    if len(table) > 10_000:
        for k in [
            k for k, b in table.items() if not 0 <= b.tokens + (now - b.stamp) * b.rate < b.burst
        ]:
            del table[k]
    return table.setdefault(ip, TokenBucket(rate, burst, stamp=now))
