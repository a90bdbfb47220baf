"""Which Redis a URL names, and a client for it: one server (or a proxy, a DNS name), a
Sentinel-watched primary, or a Cluster.

    redis://[user:password@]host:port/db            one server (rediss:// for TLS)
    redis+sentinel://[user:password@]host:port[,host:port...]/service/db
    redis+cluster://[user:password@]host:port[,host:port...]/0
    (rediss+sentinel://, rediss+cluster://: TLS; `?ssl_ca_certs=/path/ca.pem` for a private CA)

The password may also come from FLOWENGINE_REDIS_PASSWORD or a file (`--redis-password-file`),
so that it is not on a command line for `ps` to show. `problem_of` names why Redis refused us,
for /readyz and the start log.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)
from redis.maint_notifications import MaintNotificationsConfig

Kind = Literal["plain", "sentinel", "cluster"]

# redis-py checks a pooled connection before handing it out (one the server closed is
# reconnected), except while its "maintenance notifications" (Redis Enterprise and Cloud moving
# shards) are on, and their default ("auto") counts as on: after a Redis restart, every pooled
# connection failed its first command with Redis back up (a burst of shoppers refused, agent
# consoles sent back to their login). Off for every pool here, asyncio and blocking.
POOL_OPTIONS: dict[str, Any] = {
    "maint_notifications_config": MaintNotificationsConfig(enabled=False)
}

# What a command may raise when the store fails: redis-py's errors, and on Cluster also its
# cluster errors (not RedisErrors: a slot left uncovered mid-failover, no node reachable) and
# socket errors it passes through.
FAILURES = (RedisError, RedisClusterException, OSError)
Problem = Literal["auth_failed", "tls", "read_only", "unreachable", "error"]

# Query options passed on to the client (everything else in the query is refused).
_SSL_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")


@dataclass(frozen=True)
class Topology:
    kind: Kind
    url: str
    nodes: tuple[tuple[str, int], ...]
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    options: dict[str, str] = field(default_factory=dict)

    @property
    def replicated(self) -> bool:
        """Sentinel and Cluster run replicas by design: commits WAIT for one by default."""
        return self.kind != "plain"


def parse(url: str) -> Topology:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    base, _, kind_name = scheme.partition("+")
    if base not in ("redis", "rediss", "unix") or kind_name not in ("", "sentinel", "cluster"):
        raise ValueError(
            f"not a Redis URL: {scheme}:// (redis://, rediss://, redis+sentinel://, "
            "redis+cluster://)"
        )
    kind: Kind = kind_name if kind_name else "plain"  # type: ignore[assignment]
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if kind == "plain":
        return Topology("plain", url, (), username=username, password=password)
    hosts = parts.netloc.rpartition("@")[2]
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep:
            host, port = item.strip(), ""
        nodes.append((host, int(port or (26379 if kind == "sentinel" else 6379))))
    path = [p for p in parts.path.split("/") if p]
    options = dict(parse_qsl(parts.query))
    unknown = set(options) - set(_SSL_OPTIONS)
    if unknown:
        raise ValueError(f"unknown Redis URL options: {', '.join(sorted(unknown))}")
    if kind == "sentinel":
        if not path:
            raise ValueError(
                "a Sentinel URL names its service: redis+sentinel://h:p,h:p/mymaster/0"
            )
        service, db = path[0], int(path[1]) if len(path) > 1 else 0
    else:
        service, db = "", int(path[0]) if path else 0
        if db != 0:
            raise ValueError("Redis Cluster has only database 0")
    return Topology(
        kind, url, tuple(nodes), service, db, username, password, base == "rediss", options
    )


def read_password(password_file: str | None) -> str | None:
    """The password from `password_file` (first line), else FLOWENGINE_REDIS_PASSWORD."""
    if password_file:
        with open(password_file, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n") or None
    return os.environ.get("FLOWENGINE_REDIS_PASSWORD") or None


def connect(
    topology: Topology, *, password: str | None, max_connections: int, timeout: float
) -> tuple[Any, aioredis.ConnectionPool | None]:
    """The client (and its pool, where there is one) for a topology."""
    secret = password or topology.password
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "decode_responses": True,
    }
    if topology.kind == "plain":
        extra = {"password": secret} if password else {}
        pool = aioredis.BlockingConnectionPool.from_url(
            topology.url,
            max_connections=max_connections,
            timeout=timeout,
            health_check_interval=15,
            **common,
            **POOL_OPTIONS,
            **extra,
        )
        return aioredis.Redis(connection_pool=pool), pool
    tls: dict[str, Any] = {"ssl": True, **topology.options} if topology.tls else {}
    if topology.kind == "sentinel":
        sentinel = Sentinel(
            list(topology.nodes),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            **({"sentinel_kwargs": tls} if tls else {}),
        )
        client = sentinel.master_for(
            topology.service,
            db=topology.db,
            username=topology.username,
            password=secret,
            max_connections=max_connections,
            health_check_interval=15,
            **common,
            **POOL_OPTIONS,
            **tls,
        )
        return client, client.connection_pool
    cluster = RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in topology.nodes],
        username=topology.username,
        password=secret,
        max_connections=max_connections,
        **common,
        **tls,
    )
    return cluster, None


def problem_of(exc: BaseException) -> Problem:
    """Why a command failed, in one word an operator can act on."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen)
        if isinstance(seen, AuthenticationError | AuthenticationWrongNumberOfArgsError) or any(
            w in text for w in ("WRONGPASS", "NOAUTH", "invalid password", "invalid username")
        ):
            return "auth_failed"
        if isinstance(seen, ssl.SSLError) or "SSL" in text or "certificate" in text:
            return "tls"
        if isinstance(seen, ReadOnlyError) or "READONLY" in text or "now a slave" in text:
            return "read_only"
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
        return "unreachable"
    if isinstance(exc, ResponseError):
        return "error"
    cause = exc.__cause__
    if isinstance(cause, RedisConnectionError | RedisTimeoutError | OSError):
        return "unreachable"
    return "error"


def safe(url: str | None) -> str:
    """The URL without its credentials or options (for logs)."""
    if not url:
        return "-"
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def sync_client(url: str, *, password: str | None, timeout: float = 3.0) -> Any:
    """A blocking client for the same Redis (the agent accounts, read by the CLI too)."""
    import redis
    from redis.cluster import ClusterNode as SyncClusterNode
    from redis.cluster import RedisCluster as SyncRedisCluster
    from redis.sentinel import Sentinel as SyncSentinel

    t = parse(url)
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "decode_responses": True,
    }
    if t.kind == "plain":
        extra = {"password": password} if password else {}
        return redis.Redis.from_url(url, **common, **POOL_OPTIONS, **extra)
    tls: dict[str, Any] = {"ssl": True, **t.options} if t.tls else {}
    secret = password or t.password
    if t.kind == "sentinel":
        sentinel = SyncSentinel(
            list(t.nodes), socket_timeout=timeout, **({"sentinel_kwargs": tls} if tls else {})
        )
        return sentinel.master_for(
            t.service,
            db=t.db,
            username=t.username,
            password=secret,
            **common,
            **POOL_OPTIONS,
            **tls,
        )
    return SyncRedisCluster(
        startup_nodes=[SyncClusterNode(h, p) for h, p in t.nodes],
        username=t.username,
        password=secret,
        **common,
        **tls,
    )
