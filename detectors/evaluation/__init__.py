"""Labelled event streams and the evaluation of the detectors on them (pure, no Kafka)."""
