"""``${incident:NAME}`` references: incident data a step's args take at call time.

A runbook step may write ``${incident:timeline}`` (say, in a postmortem ticket's body). Like a
``${secret:NAME}``, the reference is what the plan, the args hash, the approval card and the
grant hold; the control plane hands the incident's current values to the call
(``ToolCall.context``) and the innermost guards put them in just before the tool runs. So an
approver approves "a ticket with the timeline", and the ticket gets the timeline as it is when
the step runs, not when the plan was made.

Names (see ``orchestration.incident_context``): ``id``, ``short_id``, ``text``, ``status``,
``requester``, ``source``, ``opened_at``, ``external_ref``, ``pagerduty_id``, ``timeline``,
``costs``, ``runbook``.
"""

import re
from collections.abc import Iterator, Mapping
from typing import Any

INCIDENT_NAMES = frozenset(
    {
        "id",
        "short_id",
        "text",
        "status",
        "requester",
        "source",
        "opened_at",
        "external_ref",
        "pagerduty_id",
        "timeline",
        "costs",
        "runbook",
    }
)
INCIDENT_REF = re.compile(r"\$\{incident:([a-z_]{1,32})\}")
# Every late-bound reference (secrets and incident data), one group around the whole of it.
LATE_REF = re.compile(
    r"(\$\{(?:incident:[a-z_]{1,32}"
    r"|secret:(?:[A-Za-z0-9_.-]{1,128}"  # the forms of common.redaction.SECRET_REF
    r"|vault(?:-lease)?:[A-Za-z0-9_.-]{1,128}(?:/[A-Za-z0-9_.-]{1,128}){0,15}#[A-Za-z0-9_.-]{1,128}"
    r"))\})"
)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def incident_names(value: Any) -> set[str]:
    """The names of every ``${incident:NAME}`` inside ``value``."""
    return {m.group(1) for text in _strings(value) for m in INCIDENT_REF.finditer(text)}


def unknown_incident_names(value: Any) -> list[str]:
    """The referenced names opsgate does not know, sorted."""
    return sorted(incident_names(value) - INCIDENT_NAMES)


def fill_incident(value: Any, context: Mapping[str, str]) -> Any:
    """``value`` with every ``${incident:NAME}`` replaced by ``context[NAME]``.

    Raises:
        KeyError: a referenced name has no value in ``context``.
    """
    if isinstance(value, str):
        return INCIDENT_REF.sub(lambda m: context[m.group(1)], value)
    if isinstance(value, Mapping):
        return {key: fill_incident(item, context) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [fill_incident(item, context) for item in value]
    return value
