"""Server settings, from the command line and the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env_list(name: str) -> tuple[str, ...]:
    raw = os.environ.get(name, "")
    return tuple(x.strip().rstrip("/") for x in raw.split(",") if x.strip())


@dataclass(frozen=True)
class ServerConfig:
    flows_dir: str = "flows"
    redis_url: str | None = field(
        default_factory=lambda: os.environ.get("FLOWENGINE_REDIS_URL") or None
    )
    allowed_origins: tuple[str, ...] = field(
        default_factory=lambda: _env_list("FLOWENGINE_ALLOWED_ORIGINS")
    )
    session_ttl: float = 24 * 3600.0  # idle seconds before a session expires
    max_frame_bytes: int = 16 * 1024
    hello_timeout: float = 10.0
    # Token buckets: sustained frames per second and burst, per socket and per client IP.
    socket_rate: float = 5.0
    socket_burst: int = 20
    ip_rate: float = 30.0
    ip_burst: int = 60
    max_sockets_per_ip: int = 50
    redis_max_connections: int = 32
    orders_api: str | None = field(
        default_factory=lambda: os.environ.get("FLOWENGINE_ORDERS_API") or None
    )
    watch_flows: bool = False
    handoff_config: str | None = "handoff.yaml"  # teams, routing, hours (absent: defaults)
    agents_file: str = "agents.json"  # agent accounts when not on Redis
    identity_secret: str | None = field(
        default_factory=lambda: os.environ.get("FLOWENGINE_IDENTITY_SECRET") or None
    )
    static_dir: str | None = None  # defaults to the package's widget/ and demo page
