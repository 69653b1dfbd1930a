"""JSON structured logs for every service."""

from __future__ import annotations

import logging
import sys

import structlog

from eldercare.masking import mask_log_event


def configure(level: str = "INFO", service: str = "eldercare") -> None:
    """Log JSON lines to stderr, tagged with the service name; phone numbers and secrets
    masked (eldercare/masking.py)."""
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.EventRenamer("msg"),
            mask_log_event,  # last before rendering: also numbers quoted in error texts
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    structlog.contextvars.bind_contextvars(service=service)


def get(name: str) -> structlog.stdlib.BoundLogger:
    """A logger for one module."""
    return structlog.get_logger(name)  # type: ignore[no-any-return]
