"""Server settings, from the command line and the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..actions.backends import BackendSettings, choose_kind


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
    freeze_after_startup: bool = False  # gc.freeze() once started (`serve` sets it)
    max_frame_bytes: int = 16 * 1024
    hello_timeout: float = 10.0
    # Token buckets: sustained frames per second and burst, per socket and per client IP.
    socket_rate: float = 5.0
    socket_burst: int = 20
    ip_rate: float = 30.0
    ip_burst: int = 60
    max_sockets_per_ip: int = 50  # each of the shopper and the console sockets
    # A socket that has had this many frames dropped within 10 s is closed, and its address
    # may open no socket for `flood_cooldown` seconds.
    flood_close_after: int = 100
    flood_cooldown: float = 30.0
    new_sessions_per_minute: float = 30.0  # per client IP (resumes are not counted)
    # A session nobody has acted in since it started is kept this long (then `session_ttl`
    # from its first action): sessions opened only to fill memory go away within the hour.
    untouched_session_ttl: float = 3600.0
    # A client that has not read what it was sent for this long is disconnected (what was
    # waiting for it is dropped), so one that floods and never reads pins no memory.
    send_timeout: float = 10.0
    redis_max_connections: int = 32
    # The Redis password kept off the command line: from this file (first line), else from
    # FLOWENGINE_REDIS_PASSWORD, else the URL's. After each commit, WAIT until this many
    # replicas have it (within `redis_wait_timeout` s) before acknowledging it; None: 1 for
    # redis+sentinel:// and redis+cluster:// URLs, 0 (no WAIT) for one server.
    redis_password_file: str | None = None
    redis_wait_replicas: int | None = None
    redis_wait_timeout: float = 1.0
    # Without Redis: the embedded store keeps everything in a file in this directory (kept
    # across restarts; `flowengine serve` defaults it to ./data), or, when None, in memory.
    data_dir: str | None = None
    orders_api: str | None = field(
        default_factory=lambda: os.environ.get("FLOWENGINE_ORDERS_API") or None
    )
    # The order backend (actions/backends.py): demo, http, shopify or woocommerce; None: http
    # when `orders_api` is set, else demo. Credentials are read from the environment or files.
    orders: str | None = field(default_factory=lambda: os.environ.get("FLOWENGINE_ORDERS") or None)
    shopify_shop: str | None = None
    shopify_token_file: str | None = None
    shopify_client_secret_file: str | None = None
    woocommerce_url: str | None = None
    woocommerce_secret_file: str | None = None
    # Order checks whose number and email do not match (actions/throttle.py): after this many
    # within the window (from the first), per order number or per client address, further
    # checks are answered `throttled` without asking the order backend.
    order_failures_per_order: int = 10
    order_failures_per_address: int = 30
    order_failure_window: float = 3600.0
    watch_flows: bool = False
    # Insights (docs/insights.md): a day's counters are kept this many days after it; the
    # consumer folds the analytics log into them every `insights_interval` seconds.
    insights_retention_days: int = 400
    insights_interval: float = 1.0
    handoff_config: str | None = "handoff.yaml"  # teams, routing, hours (absent: defaults)
    agents_file: str = "agents.json"  # agent accounts when not on Redis
    identity_secret: str | None = field(
        default_factory=lambda: os.environ.get("FLOWENGINE_IDENTITY_SECRET") or None
    )
    static_dir: str | None = None  # defaults to the package's widget/ and demo page
    # HTTP edge (server/http_limits.py), on every route: a connection whose request headers are
    # not in within `header_timeout` s (of connecting, or of the next request's first byte) is
    # closed; one idle between requests for `keep_alive_timeout` s too; a body over
    # `max_body_bytes` gets 413, one not all there `body_timeout` s after its headers 408.
    header_timeout: float = 10.0
    keep_alive_timeout: int = 5
    body_timeout: float = 10.0
    max_body_bytes: int = 64 * 1024

    def redis_options(self) -> dict[str, Any]:
        """What the Redis store takes besides its URL (store.redis.RedisStore)."""
        from ..store.redis_topology import read_password

        return {
            "password": read_password(self.redis_password_file),
            "wait_replicas": self.redis_wait_replicas,
            "wait_timeout": self.redis_wait_timeout,
        }

    def backend_settings(self) -> BackendSettings:
        return BackendSettings(
            kind=choose_kind(
                self.orders,
                self.orders_api,
                bool(
                    self.shopify_shop or self.shopify_token_file or self.shopify_client_secret_file
                ),
                bool(self.woocommerce_url or self.woocommerce_secret_file),
            ),
            orders_api=self.orders_api,
            shopify_shop=self.shopify_shop,
            shopify_token_file=self.shopify_token_file,
            shopify_client_secret_file=self.shopify_client_secret_file,
            woocommerce_url=self.woocommerce_url,
            woocommerce_secret_file=self.woocommerce_secret_file,
        )
