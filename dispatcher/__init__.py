"""Incidents, the escalation ladder, voice/SMS notification and the staff console."""
