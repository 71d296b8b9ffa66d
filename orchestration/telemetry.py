"""Logging and sanitising: structlog configured once, secrets redacted everywhere.

``configure_logging()`` sets JSON lines in production and console output on a TTY.
``bind_context()`` binds ``correlation_id``, ``incident_id``, ``plan_id``, ``step_id`` and
``actor`` through contextvars, so every line of one request carries them.
``sanitise()`` is what audit events, spans and outbox payloads pass through before storage.
"""

import logging
import re
import sys
import uuid
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"
_SECRET_KEYS = re.compile(
    r"(?i)(token|secret|password|passwd|authorization|api[_-]?key|cookie|credential|signature)"
)
_SECRET_VALUES = re.compile(
    r"(xox[abposr]-[A-Za-z0-9-]{6,}|xapp-[A-Za-z0-9-]{6,}|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|sk-[A-Za-z0-9]{20,})"
)
MAX_TEXT = 2000


def redact_text(text: str) -> str:
    """Replace token-shaped substrings of ``text``."""
    return _SECRET_VALUES.sub(REDACTED, text)


def sanitise(value: Any, *, max_text: int = MAX_TEXT, _depth: int = 0) -> Any:
    """A JSON-safe copy of ``value`` with secrets redacted and long strings cut."""
    if _depth > 8:
        return "[too deep]"
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if _SECRET_KEYS.search(name) and not isinstance(item, bool | int | float | None):
                out[name] = REDACTED
            else:
                out[name] = sanitise(item, max_text=max_text, _depth=_depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [sanitise(item, max_text=max_text, _depth=_depth + 1) for item in value]
    if isinstance(value, str):
        text = redact_text(value)
        return text if len(text) <= max_text else text[:max_text] + "…[truncated]"
    if value is None or isinstance(value, bool | int | float):
        return value
    return sanitise(str(value), max_text=max_text, _depth=_depth + 1)


def _redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return sanitise(dict(event_dict), max_text=8000)  # type: ignore[no-any-return]


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


def new_correlation_id() -> str:
    """A fresh correlation id."""
    return uuid.uuid4().hex


def bind_context(**values: str | None) -> None:
    """Bind non-empty ``values`` to every log line of the current context."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v})


def get_logger(name: str) -> Any:
    """A structlog logger."""
    return structlog.get_logger(name)
