"""Trace pages people can open: signed ``GET /traces/{trace_id}`` links and the waterfall."""

from bot.traces.links import TRACE_KEY_VAR, LinkCheck, TraceLinks
from bot.traces.page import render_forbidden, render_missing, render_trace

__all__ = [
    "TRACE_KEY_VAR",
    "LinkCheck",
    "TraceLinks",
    "render_forbidden",
    "render_missing",
    "render_trace",
]
