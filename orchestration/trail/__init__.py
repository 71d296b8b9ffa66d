"""The audit trail of an incident, a plan or a correlation id, as one timeline.

- :func:`timeline` (``timeline``): audit events (who asked, which role did what, approvals
  with nonce and reviewer, grants with their scope, failures with their reasons), every tool
  call with its sanitised request and response metadata, and every cost entry, oldest first.
- :class:`Entry`: one line of it, JSON-ready (``opsgate audit --json`` prints JSON Lines).
- :func:`resolve` finds what a reference names: a plan or incident id (or a unique prefix).
"""

from orchestration.trail.timeline import Entry, Scope, resolve, timeline

__all__ = ["Entry", "Scope", "resolve", "timeline"]
