"""Prometheus metrics of the detectors service."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("eldercare_detectors_events_total", "Canonical events processed")
SWEEPS = Counter("eldercare_detectors_timer_sweeps_total",
                 "Timer sweeps over every elder (silence, offline, fall cancel windows)")
ALERTS = Counter("eldercare_detectors_alerts_total", "Alerts produced", ["kind"])
PROCESSING = Histogram(
    "eldercare_detectors_processing_seconds", "Time to run the detectors over one batch",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LAG = Gauge("eldercare_detectors_lag", "Events on the topic not yet processed", ["partition"])
