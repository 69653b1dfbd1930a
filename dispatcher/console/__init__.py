"""The duty-staff console: incident board, live stream, health, Twilio webhooks."""
