"""Prometheus metrics of the ingest service, on their own registry."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("smartcity.ingest")


@dataclass
class IngestMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.received = Counter(
            "smartcity_ingest_messages_received",
            "Messages received from the broker",
            ["channel"],
            registry=r,
        )
        self.stored = Counter(
            "smartcity_ingest_rows_stored",
            "Rows committed to the database",
            ["table"],
            registry=r,
        )
        self.duplicates = Counter(
            "smartcity_ingest_duplicate_rows",
            "Telemetry rows not stored because they already were (redeliveries)",
            registry=r,
        )
        self.rejected = Counter(
            "smartcity_ingest_messages_rejected",
            "Messages or values sent to dead letters",
            ["reason"],
            registry=r,
        )
        self.acknowledged = Counter(
            "smartcity_ingest_messages_acknowledged",
            "Messages acknowledged to the broker after their commit",
            registry=r,
        )
        self.write_retries = Counter(
            "smartcity_ingest_write_retries",
            "Batch writes retried after a database error",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "smartcity_ingest_batch_seconds",
            "Time to store and commit one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.write_seconds = Histogram(
            "smartcity_ingest_write_seconds",
            "Time spent in the database writing and committing one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.batch_messages = Histogram(
            "smartcity_ingest_batch_messages",
            "Messages per committed batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 4000, 8000),
            registry=r,
        )
        self.queue_depth = Gauge(
            "smartcity_ingest_queue_depth",
            "Messages received and not yet committed",
            registry=r,
        )
        self.held_bytes = Gauge(
            "smartcity_ingest_held_bytes",
            "Payload bytes received and not yet stored and acknowledged",
            registry=r,
        )
        self.lag_seconds = Gauge(
            "smartcity_ingest_lag_seconds",
            "From receiving the oldest message of the last batch to its commit",
            registry=r,
        )
        self.database_up = Gauge(
            "smartcity_ingest_database_up",
            "1 while the last database write succeeded",
            registry=r,
        )
        self.broker_connected = Gauge(
            "smartcity_ingest_broker_connected",
            "1 while connected to the broker",
            registry=r,
        )
        self.ready = Gauge(
            "smartcity_ingest_ready",
            "1 once subscribed with the database reachable: messages flow in and are stored",
            registry=r,
        )


def serve_metrics(metrics: IngestMetrics, port: int) -> WSGIServer | None:
    """Serve ``metrics`` on http://127.0.0.1:PORT/metrics; None if port is 0 or taken."""
    if port == 0:
        return None
    try:
        server, _thread = start_http_server(port, "127.0.0.1", registry=metrics.registry)
    except OSError as error:
        log.warning("metrics endpoint not started", extra={"port": port, "error": str(error)})
        return None
    log.info("metrics on http://127.0.0.1:%d/metrics", port)
    return server
