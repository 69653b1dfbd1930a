"""Readings storage: every canonical event in PostgreSQL, hourly rollups, history queries."""
