"""Prometheus metrics, one registry per app (so tests can run several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.open_sockets = Gauge("flowengine_open_sockets", "Open shopper WebSockets", registry=r)
        self.clicks = Counter(
            "flowengine_clicks_total", "Shopper actions applied", ["type"], registry=r
        )
        self.errors = Counter(
            "flowengine_protocol_errors_total", "Error frames sent", ["code"], registry=r
        )
        self.step_latency = Histogram(
            "flowengine_step_seconds",
            "Time from a shopper action to its stored result",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.store_errors = Counter(
            "flowengine_store_errors_total", "Store operations that failed", registry=r
        )
        self.sessions = Counter("flowengine_sessions_total", "Sessions opened", ["how"], registry=r)
        self.refused = Counter(
            "flowengine_refused_total",
            "Frames dropped over the rate, sockets closed for flooding or refused at the door, "
            "new sessions refused, clients dropped for not reading",
            ["socket", "what"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
