"""Stateful streaming detectors: canonical events in, alerts out."""
