"""Prometheus metrics, in a registry of the app's own (so several apps in one process never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rate_limited = Counter(
            "gima_rate_limited_total", "Requests refused with 429, by limit", ["limit"], registry=self.registry
        )
        self.ratelimit_fallbacks = Counter(
            "gima_ratelimit_fallbacks_total",
            "Rate-limit checks answered locally because Redis failed, by limit",
            ["limit"],
            registry=self.registry,
        )
        self.admission_rejected = Counter(
            "gima_admission_rejected_total", "Replies refused with 503 by the admission gate, by reason", ["reason"],
            registry=self.registry,
        )
        self.admission_wait = Histogram(
            "gima_admission_wait_seconds", "Time a reply waited for an admission slot", registry=self.registry,
            buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10),
        )
        self.admission_queue = Gauge("gima_admission_queue_depth", "Replies waiting for a slot", registry=self.registry)
        self.active_replies = Gauge("gima_active_replies", "Replies holding an admission slot", registry=self.registry)
        self.loop_lag = Gauge("gima_event_loop_lag_seconds", "Event-loop lag, smoothed", registry=self.registry)
