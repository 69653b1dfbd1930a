"""Which failures are the infrastructure's (retry: the message stays unacknowledged or
uncommitted) and which are the message's own (dead-letter it and move on)."""

from __future__ import annotations

import traceback

import psycopg
from aiokafka.errors import KafkaError, MessageSizeTooLargeError


def is_transient(exc: BaseException) -> bool:
    """True for an outage of Kafka, PostgreSQL or the network: the same message may well
    succeed later, so it must not be dead-lettered. Anything else, e.g. a bug met by one odd
    message, fails the same way every time."""
    if isinstance(exc, MessageSizeTooLargeError):  # this record is too big, Kafka is fine
        return False
    return isinstance(exc, KafkaError | psycopg.OperationalError | psycopg.InterfaceError
                      | OSError | TimeoutError)


def describe(exc: BaseException) -> str:
    """`Type: message` and the innermost frame, for a dead letter's detail."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"
