"""Prometheus metrics of the dispatcher."""

from prometheus_client import Counter, Histogram

NOTIFICATIONS = Counter(
    "eldercare_dispatcher_notifications_total", "Calls and SMS by outcome", ["channel", "status"]
)
INCIDENTS = Counter(
    "eldercare_dispatcher_incidents_total", "Incidents opened", ["kind", "severity"]
)
STEP_LATENCY = Histogram(
    "eldercare_dispatcher_step_latency_seconds",
    "From a step's due time to the end of its execution (including the Twilio request)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
