"""Prometheus metrics of the dispatcher."""

from prometheus_client import Counter, Histogram

NOTIFICATIONS = Counter(
    "eldercare_dispatcher_notifications_total", "Calls and SMS by outcome", ["channel", "status"]
)
RECONCILED = Counter(
    "eldercare_dispatcher_reconciled_total",
    "Notifications whose outcome a crash left open, settled by asking the provider: adopted"
    " (it had it), resent (it never got it), unknown (it could not be asked), dropped (never"
    " got it and no longer wanted)", ["kind", "outcome"],
)
INCIDENTS = Counter(
    "eldercare_dispatcher_incidents_total", "Incidents opened", ["kind", "severity"]
)
STEP_LATENCY = Histogram(
    "eldercare_dispatcher_step_latency_seconds",
    "From a step's due time to the end of its execution (including the Twilio request)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
