"""JSON structured logs for every service."""

from __future__ import annotations

import logging
import sys

import structlog

from foundation.masking import mask_log_event


class _Stderr:
    """Whatever `sys.stderr` is when a line is written, not when logging was configured (a
    test runner swaps and closes its captured streams; a configured handler must follow)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(level: str = "INFO", service: str = "eldercare") -> None:
    """Log JSON lines to stderr, tagged with the service name; the libraries' own logging
    (aiokafka, uvicorn, asyncio) too, each record one line with its traceback in `exception`;
    phone numbers and secrets masked (foundation/masking.py)."""
    handler = logging.StreamHandler(_Stderr())
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.EventRenamer("msg"),
            structlog.processors.format_exc_info,
            mask_log_event,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.EventRenamer("msg"),
            # exc_info=True / log.exception(): the traceback as text, not `"exc_info": true`.
            structlog.processors.format_exc_info,
            mask_log_event,  # last before rendering: also numbers quoted in error texts
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(_Stderr()),  # type: ignore[arg-type]
    )
    structlog.contextvars.bind_contextvars(service=service)


def get(name: str) -> structlog.stdlib.BoundLogger:
    """A logger for one module."""
    return structlog.get_logger(name)  # type: ignore[no-any-return]
