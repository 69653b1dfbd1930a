"""The contracts between stages: the canonical event (devices/ingest -> detectors) and the alert
(detectors -> dispatcher). Both sides import them from here, so neither stage owns them."""
