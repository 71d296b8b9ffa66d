"""Logging and sanitising: structlog configured once, secrets redacted everywhere.

``configure_logging()`` sets JSON lines in production and console output on a TTY.
``bind_context()`` binds ``correlation_id``, ``incident_id``, ``plan_id``, ``step_id`` and
``actor`` through contextvars, so every line of one request carries them.
``sanitise()`` is what audit events, spans and outbox payloads pass through before storage: the
one redaction of :mod:`common.redaction` plus a length cap. Log lines pass through it too (a
structlog processor), and standard-library log records are redacted when they are made.
"""

import logging
import sys
import uuid
from collections.abc import MutableMapping
from typing import Any

import structlog

from common.redaction import REDACTED, redact, redact_text

__all__ = [
    "MAX_TEXT",
    "REDACTED",
    "bind_context",
    "configure_logging",
    "get_logger",
    "new_correlation_id",
    "redact_text",
    "sanitise",
]

MAX_TEXT = 2000
MAX_LOG_TEXT = 8000


def sanitise(value: Any, *, max_text: int = MAX_TEXT) -> Any:
    """A JSON-safe copy of ``value`` with secrets redacted and long strings cut."""
    return redact(value, max_text=max_text)


def _redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return sanitise(dict(event_dict), max_text=MAX_LOG_TEXT)  # type: ignore[no-any-return]


_base_factory = logging.getLogRecordFactory()


def _redacting_record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Standard-library records (aiohttp, Bolt, SQLAlchemy) leave with their secrets redacted.

    The message is formatted and redacted when the record is made, and a traceback is
    formatted and redacted too (handlers then print the redacted ``exc_text``).
    """
    record = _base_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: keep the record as logging would
        return record
    record.msg, record.args = redact_text(message)[:MAX_LOG_TEXT], None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    return record


class _Stderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write (it may be replaced)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(*, json: bool | None = None, level: int = logging.INFO) -> None:
    """Configure structlog once: JSON when not on a TTY (or when asked), console otherwise."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    if logging.getLogRecordFactory() is not _redacting_record_factory:
        logging.setLogRecordFactory(_redacting_record_factory)


def new_correlation_id() -> str:
    """A fresh correlation id."""
    return uuid.uuid4().hex


def bind_context(**values: str | None) -> None:
    """Bind non-empty ``values`` to every log line of the current context."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v})


def get_logger(name: str) -> Any:
    """A structlog logger."""
    return structlog.get_logger(name)
