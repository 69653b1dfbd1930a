"""Prometheus counters of the ingest gateways."""

from prometheus_client import Counter, Gauge, Histogram

RECEIVED = Counter("eldercare_ingest_received_total", "Messages received", ["source"])
ACCEPTED = Counter("eldercare_ingest_accepted_total", "Canonical events produced", ["source"])
REJECTED = Counter(
    "eldercare_ingest_rejected_total", "Messages dead-lettered", ["source", "reason"]
)
DUPLICATES = Counter("eldercare_ingest_duplicates_total", "Duplicate messages dropped", ["source"])
PRODUCE_LATENCY = Histogram(
    "eldercare_ingest_kafka_produce_seconds", "Kafka produce acknowledgement latency",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
IN_FLIGHT = Gauge(
    "eldercare_ingest_in_flight", "MQTT messages received and not yet acknowledged (the lag)"
)
RETAINED_SKIPPED = Counter(
    "eldercare_ingest_retained_skipped_total", "Retained messages replayed on subscribe, skipped"
)
HTTP_REQUESTS = Counter(
    "eldercare_ingest_http_requests_total", "HTTP batch requests by answer", ["status"]
)
