"""Benchmarks: `eldercare bench sos|ingest|detect|store|all`."""
