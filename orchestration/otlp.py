"""OTLP export of opsgate's spans through the OpenTelemetry SDK, when the environment asks.

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set, the spans
a unit of work records are queued once the unit has committed (about a microsecond; nothing is
built or sent on its thread). A thread of this module makes SDK spans of them for the SDK's
``BatchSpanProcessor``, which batches them to an OTLP/HTTP exporter (protobuf; it reads the
endpoint, ``OTEL_EXPORTER_OTLP_HEADERS``, timeouts and the other OpenTelemetry variables).
Without the variables nothing is imported or created.

Ids follow opsgate's: the trace id is the correlation id (32 hex digits, as opsgate makes them;
any other id is hashed to 128 bits) and span ids are the stored ones, so a span in Jaeger, Tempo
or Honeycomb has the same ids as the trace page and ``opsgate audit``. Attributes:
``opsgate.correlation_id``, ``opsgate.plan_id``, ``opsgate.step_id``, ``opsgate.role``,
``opsgate.incident_id``, ``opsgate.kind``, ``opsgate.status`` and, from the stored span,
``opsgate.tool``, ``opsgate.attempt``, ``opsgate.cost_usd`` and ``opsgate.summary`` (stored
values, already sanitised).
"""

import contextvars
import hashlib
import os
import queue
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from orchestration.telemetry import get_logger

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = get_logger("opsgate.otlp")

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
SCOPE = "opsgate"
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_OK = {"ok", "succeeded", "resolved", "verified", "completed"}
_UNSET = {"pending", "running", "awaiting_approval", "skipped", "in_doubt", "cancelled"}
MAX_ATTR_TEXT = 500
# The (trace id, span id) the next span started on this thread gets (see _GivenIds).
_NEXT_IDS: contextvars.ContextVar[tuple[int, int]] = contextvars.ContextVar("opsgate_otlp_ids")


def trace_id_of(correlation_id: str) -> int:
    """The 128-bit OTLP trace id of a correlation id: the id itself when it is 32 hex digits."""
    text = correlation_id.lower()
    if _HEX32.fullmatch(text) and int(text, 16):
        return int(text, 16)
    return int(hashlib.sha256(correlation_id.encode()).hexdigest()[:32], 16) or 1


def span_id_of(span_id: str) -> int:
    """The 64-bit OTLP span id of a stored span id: itself when it is 16 hex digits."""
    text = span_id.lower()
    if _HEX16.fullmatch(text) and int(text, 16):
        return int(text, 16)
    return int(hashlib.sha256(span_id.encode()).hexdigest()[:16], 16) or 1


def _nanos(value: datetime) -> int:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1_000_000_000)


def attributes_of(row: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    """The OTLP attributes of one recorded span."""
    stored: Mapping[str, Any] = row.get("attributes") or {}
    out: dict[str, str | int | float | bool] = {
        "opsgate.correlation_id": str(row["trace_id"]),
        "opsgate.kind": str(row["kind"]),
        "opsgate.status": str(row["status"]),
    }
    for key in ("plan_id", "step_id", "role", "incident_id"):
        if row.get(key):
            out[f"opsgate.{key}"] = str(row[key])
    tool = stored.get("tool") or (row["name"] if row["kind"] == "tool_call" else None)
    if tool:
        out["opsgate.tool"] = str(tool)[:MAX_ATTR_TEXT]
    for key in ("attempt", "cost_usd", "spent_usd", "dry_run", "late"):
        value = stored.get(key)
        if isinstance(value, bool | int | float):
            out[f"opsgate.{key}"] = value
    for key in ("summary", "check", "reason", "plan_hash"):
        value = stored.get(key)
        if isinstance(value, str) and value:
            out[f"opsgate.{key}"] = value[:MAX_ATTR_TEXT]
    return out


class SpanExport:
    """Hands committed spans to the SDK's batch processor; see the module docstring."""

    def __init__(self, provider: "TracerProvider") -> None:
        self._provider = provider
        self._tracer = provider.get_tracer(SCOPE)
        # Units of work only put their rows here (about a microsecond); making SDK spans from
        # them (tens of microseconds each) is this thread's work, batching and sending the
        # BatchSpanProcessor's.
        self._rows: queue.SimpleQueue[list[dict[str, Any]] | threading.Event | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._convert, name="opsgate-otlp", daemon=True)
        self._thread.start()

    @classmethod
    def from_env(cls) -> "SpanExport | None":
        """An export to the configured OTLP endpoint, or None when none is configured."""
        if not any(os.environ.get(name) for name in ENDPOINT_VARS):
            return None
        # Imported here: without an endpoint the SDK is never loaded.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
        from opentelemetry.sdk.trace.id_generator import IdGenerator  # noqa: PLC0415
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON  # noqa: PLC0415

        class _GivenIds(IdGenerator):
            """The ids opsgate already gave the span being started (not random ones)."""

            def generate_trace_id(self) -> int:
                return _NEXT_IDS.get()[0]

            def generate_span_id(self) -> int:
                return _NEXT_IDS.get()[1]

        resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or SCOPE})
        provider = TracerProvider(
            resource=resource, id_generator=_GivenIds(), sampler=ALWAYS_ON, shutdown_on_exit=False
        )
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info(
            "otlp_export_enabled", endpoint_var=next(n for n in ENDPOINT_VARS if os.environ.get(n))
        )
        return cls(provider)

    def export(self, rows: list[dict[str, Any]]) -> None:
        """Queue committed spans for export; returns at once (the unit of work's only cost)."""
        self._rows.put(rows)

    def _convert(self) -> None:
        while True:
            item = self._rows.get()
            if item is None:
                return
            if isinstance(item, threading.Event):  # a flush: everything before it is queued
                item.set()
                continue
            for row in item:
                try:
                    self._one(row)
                except Exception as exc:  # one bad span never stops the export
                    log.warning(
                        "otlp_span_dropped", span_id=str(row.get("id")), error=str(exc)[:200]
                    )

    def _drain(self, timeout_s: float) -> bool:
        """Wait until the rows queued so far are with the batch processor."""
        if not self._thread.is_alive():
            return True
        done = threading.Event()
        self._rows.put(done)
        return done.wait(timeout_s)

    def _one(self, row: Mapping[str, Any]) -> None:
        from opentelemetry import trace  # noqa: PLC0415
        from opentelemetry.context import Context  # noqa: PLC0415
        from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

        trace_id = trace_id_of(str(row["trace_id"]))
        parent = row.get("parent_id")
        context = Context()  # never the ambient span: the stored parent, or a root
        if parent:
            parent_context = trace.SpanContext(
                trace_id=trace_id,
                span_id=span_id_of(str(parent)),
                is_remote=False,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
            )
            context = trace.set_span_in_context(trace.NonRecordingSpan(parent_context), context)
        ended = row.get("ended_at") or row["started_at"]
        token = _NEXT_IDS.set((trace_id, span_id_of(str(row["id"]))))
        try:
            span = self._tracer.start_span(
                str(row["name"])[:MAX_ATTR_TEXT],
                context=context,
                attributes=attributes_of(row),
                start_time=_nanos(row["started_at"]),
            )
        finally:
            _NEXT_IDS.reset(token)
        status = str(row["status"])
        if status in _OK:
            span.set_status(Status(StatusCode.OK))
        elif status not in _UNSET:
            span.set_status(Status(StatusCode.ERROR, status))
            span.set_attribute("error.type", status)
        span.end(end_time=_nanos(ended))

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Send what is queued now; True when it all went."""
        drained = self._drain(timeout_s)
        return drained and bool(self._provider.force_flush(int(timeout_s * 1000)))

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Send what is queued and stop both threads."""
        self._drain(timeout_s)
        self._rows.put(None)
        self._thread.join(timeout_s)
        self._provider.shutdown()
