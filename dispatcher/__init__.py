"""Incidents, the escalation ladder, voice/SMS notification and Twilio webhooks (the staff
console that shows them is the top-level `console` package)."""
