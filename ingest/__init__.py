"""Gateways that turn device messages into validated canonical events on Kafka."""
