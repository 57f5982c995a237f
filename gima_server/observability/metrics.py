"""Prometheus metrics, in a registry of the app's own (so several apps in one process never collide),
plus recent-sample windows for the admin summary."""

from __future__ import annotations

from collections import defaultdict

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .window import RecentSamples

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 2.5, 5, 10, 30, 120)  # 2: the SLO


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "gima_http_request_duration_seconds", "Request latency (streams: until the stream ends)",
            ["route", "method", "status"], registry=r, buckets=_LATENCY_BUCKETS,
        )
        self.refusals = Counter(
            "gima_http_refusals_total", "401 and 429 answers by route and reason", ["route", "status", "reason"], registry=r
        )
        self.rate_limited = Counter("gima_rate_limited_total", "Requests refused with 429, by limit", ["limit"], registry=r)
        self.ratelimit_fallbacks = Counter(
            "gima_ratelimit_fallbacks_total", "Rate-limit checks answered locally because Redis failed, by limit",
            ["limit"], registry=r,
        )
        self.time_to_first_event = Histogram(
            "gima_sse_time_to_first_event_seconds", "From request to the first event on the wire",
            registry=r, buckets=_LATENCY_BUCKETS,
        )
        self.replies_started = Counter("gima_replies_started_total", "Replies started", registry=r)
        self.webhook_tries = Counter("gima_webhook_tries_total", "Webhook delivery tries, by event type and result"
                                     " (delivered, retrying, given_up)", ["type", "result"], registry=r)
        self.webhook_backlog = Gauge("gima_webhook_deliveries_pending", "Webhook deliveries waiting to be sent or "
                                     "retried (every process's, as the store counts them)", registry=r)
        self.drain_started = Gauge("gima_drain_started_timestamp_seconds", "When this process began draining for "
                                   "shutdown (0: not draining)", registry=r)
        self.resumes = Counter("gima_sse_resumes_total", "Subscriptions that resumed with a Last-Event-ID", registry=r)
        self.subscribers = Gauge("gima_sse_subscribers", "Open SSE subscribers", registry=r)
        self.events_sent = Counter("gima_sse_events_sent_total", "Events written to subscribers", registry=r)
        self.writes = Counter("gima_sse_writes_total", "Socket writes to subscribers (each carries 1+ events)", registry=r)
        self.slow_consumers = Counter("gima_sse_slow_consumers_total", "Subscribers dropped for falling behind", registry=r)
        self.admission_rejected = Counter(
            "gima_admission_rejected_total", "Replies refused by the admission gate, by reason", ["reason"], registry=r
        )
        self.admission_wait = Histogram(
            "gima_admission_wait_seconds", "Time a reply waited for an admission slot", registry=r,
            buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10),
        )
        self.admission_queue = Gauge("gima_admission_queue_depth", "Replies waiting for a slot", registry=r)
        self.active_replies = Gauge("gima_active_replies", "Replies holding an admission slot", registry=r)
        self.breaker_open = Gauge(
            "gima_upstream_breaker_open", "1 when the model's upstream circuit breaker is open, 0.5 half-open, 0 closed",
            ["model"], registry=r,
        )
        self.replies_ended = Counter(
            "gima_replies_ended_total", "Replies ended, by the model that answered and how they ended (done or the "
            "error code)", ["model", "end"], registry=r,
        )
        self.fallbacks = Counter(
            "gima_model_fallbacks_total", "Replies that moved to a fallback model before their first token",
            ["model", "fallback_from", "reason"], registry=r,
        )
        self.loop_lag = Gauge("gima_event_loop_lag_seconds", "Event-loop lag, smoothed", registry=r)
        self.store_ops = Counter("gima_store_operations_total", "Store calls by operation", ["op"], registry=r)
        self.store_seconds = Histogram(
            "gima_store_operation_seconds", "Store call latency by operation", ["op"], registry=r, buckets=_LATENCY_BUCKETS
        )
        self.log_round_trips = Counter(
            "gima_log_redis_round_trips_total", "Round trips to Redis for the shared reply log, by operation",
            ["op"], registry=r,
        )
        self.log_events_published = Counter("gima_log_events_published_total", "Events written to Redis Streams",
                                            registry=r)
        self.log_events_read = Counter("gima_log_events_read_total", "Events read from other processes' replies",
                                       registry=r)
        self.log_failures = Counter("gima_log_failures_total", "Shared reply log calls that failed, by operation",
                                    ["op"], registry=r)
        self.interrupted_replies = Counter(
            "gima_replies_interrupted_total", "Replies ended as interrupted because their producer died", registry=r
        )
        # Windows behind /api/metrics/summary.
        self.recent_latency: defaultdict[str, RecentSamples] = defaultdict(RecentSamples)
        self.recent_status: defaultdict[str, RecentSamples] = defaultdict(RecentSamples)
        self.recent_ttfe = RecentSamples()
        self.recent_events = RecentSamples()
        self.recent_replies = RecentSamples()
        self.recent_resumes = RecentSamples()
