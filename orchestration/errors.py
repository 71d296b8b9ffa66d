"""Errors of the control plane.

``OrchestrationError`` is the root; each error carries a stable snake_case ``code`` and a
plain-words ``message`` meant for the on-call engineer.

Codes:
    invalid_transition   a state change the state machine does not allow
    config_invalid       the YAML config is wrong (message names file, line and fix)
    runbook_invalid      a runbook file is wrong (message names file, line and fix)
    no_match             no runbook matches the incident text
    param_invalid        a matched parameter fails its validation
    not_found            an incident, plan, step or approval does not exist
    input_rejected       intake refused the text (empty, too long, injection-shaped)
    budget_exceeded      a plan's forecast or spend is beyond its hard budget
"""

from __future__ import annotations


class OrchestrationError(Exception):
    """Root error of the control plane."""

    code = "orchestration_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidTransition(OrchestrationError):
    """A state change the transitions table does not allow."""

    code = "invalid_transition"


class ConfigError(OrchestrationError):
    """Configuration, runbook or policy files are invalid."""

    code = "config_invalid"

    def __init__(
        self, message: str, *, path: str = "", line: int | None = None, code: str | None = None
    ) -> None:
        where = f"{path}:{line}: " if path and line else (f"{path}: " if path else "")
        super().__init__(f"{where}{message}", code=code)
        self.path = path
        self.line = line
        self.detail = message


class NoMatch(OrchestrationError):
    """No runbook matches the text."""

    code = "no_match"


class BadRequest(OrchestrationError):
    """A request that names nothing usable (a malformed name, an ambiguous prefix)."""

    code = "bad_request"


class NotFound(OrchestrationError):
    """The named record does not exist."""

    code = "not_found"


class InputRejected(OrchestrationError):
    """Intake refused the incident text."""

    code = "input_rejected"
