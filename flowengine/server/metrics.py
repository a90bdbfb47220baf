"""Prometheus metrics, one registry per app (so tests can run several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..insights import fold as f


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

        # Insights' headline counters (docs/insights.md), counted by this instance's consumer
        # as it folds the analytics log: summed over instances, each event is counted once.
        self.conversations = Counter(
            "flowengine_conversations_total", "Conversations started", registry=r
        )
        self.automated = Counter(
            "flowengine_conversations_automated_total",
            "Conversations ended resolved with no person involved",
            registry=r,
        )
        self.abandoned = Counter(
            "flowengine_conversations_abandoned_total",
            "Conversations left mid-way (last tab closed, or restarted)",
            registry=r,
        )
        self.handed_over = Counter(
            "flowengine_handoffs_total",
            "Hand-offs to a person, by reason",
            ["reason"],
            registry=r,
        )
        self.offline = Counter(
            "flowengine_handoffs_offline_total",
            "Hand-offs with nobody there: the shopper was offered to leave a message",
            registry=r,
        )
        self.csat = Counter(
            "flowengine_csat_answers_total",
            "Shoppers' verdicts: scale yes_no (answer yes, no) or five (answer 1..5)",
            ["scale", "answer"],
            registry=r,
        )

    def folded(self, increments: f.Increments) -> None:
        """What the insights consumer had the store keep: the headline counters."""
        for (_, field), n in increments.items():
            metric, *_, detail = field.split(f.SEP)
            match metric:
                case f.CONVERSATIONS:
                    self.conversations.inc(n)
                case f.AUTOMATED:
                    self.automated.inc(n)
                case f.DROPPED:
                    self.abandoned.inc(n)
                case f.HANDOFF:
                    self.handed_over.labels(detail).inc(n)
                case f.OFFLINE:
                    self.offline.inc(n)
                case f.CSAT_FLOW:
                    self.csat.labels("yes_no", detail).inc(n)
                case f.CSAT_AGENT:
                    self.csat.labels("five", detail.rpartition("@")[2]).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
