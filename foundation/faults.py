"""Which failures are the infrastructure's (retry: the message stays unacknowledged or
uncommitted) and which are the message's own (dead-letter it and move on); and crash points
where tests kill a real process at an exact moment."""

from __future__ import annotations

import os
import signal
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


def kill_point(point: str, key: str) -> None:
    """Fault injection for tests: SIGKILL this very process at `point` when the environment
    variable ELDERCARE_FAULT_KILL_<POINT> (a comma list) names `key`, e.g.
    ELDERCARE_FAULT_KILL_BEFORE_REQUEST=+8613800000001 kills a dispatcher that has committed a
    notification to that number, before its Twilio request. Unset in production: a no-op."""
    wanted = os.environ.get(f"ELDERCARE_FAULT_KILL_{point.upper()}")
    if wanted and key in wanted.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
