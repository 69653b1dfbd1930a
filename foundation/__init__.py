"""The ground layer: settings, database, Kafka and MQTT helpers, logging, i18n, security
primitives, the audit log, dead letters and the event and alert contracts between stages.

Every service package (devices, ingest, detectors, dispatcher, console, simulators) imports it;
it imports none of them (an import-linter contract in pyproject.toml says so)."""
