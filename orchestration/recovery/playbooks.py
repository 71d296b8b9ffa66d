"""Recovery playbooks: the format, the loader that reports problems with file and line, selection.

A playbook is a YAML file keyed by a **failure mode** (:class:`FailureMode`). When a plan fails
in that way, the Auditor picks the most specific playbook whose ``match`` fits the failure
(tools and error codes > tools or codes > no match) and applies it (``recovery.respond``): its
``manual`` instructions go to the incident thread with ``{placeholders}`` filled from the
failure's facts, and its ``steps`` (the runbook step schema) become a recovery plan that goes
through the same gate as any plan. Playbooks are stored as versioned knowledge documents of
kind ``playbook``; a recovery plan pins the version it was built from.
"""

import fnmatch
import re
import string
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator
from sqlmodel import Session, col, select

from adapters.errors import GRANT_CODES, ErrorCode
from common.yamlsrc import (
    Loc,
    LocatedYaml,
    Problem,
    YamlSyntaxError,
    describe_loc,
    load_located,
    validation_problems,
)
from orchestration.knowledge import TOMBSTONE, Document, publish_documents
from orchestration.models import Knowledge
from orchestration.runbooks import Runbook, StepSpec, credential_problems, placeholders

PLAYBOOK_KIND = "playbook"
_STRICT = ConfigDict(extra="forbid", frozen=True)
_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_DEFER_CROSS_CHECKS = "defer_cross_checks"
_HTTP_CODE = re.compile(r"http_([1-5][0-9][0-9])")


class FailureMode(StrEnum):
    """How a plan went wrong; a playbook answers one of them."""

    TOOL_FLAKY = "tool_flaky"  # a step failed after its retries with a retryable tool error
    STALE_CONTEXT = "stale_context"  # the plan's pinned knowledge changed: invalidated
    PERMISSION_ERROR = "permission_error"  # a grant error, a missing credential, HTTP 401/403
    IN_DOUBT = "in_doubt"  # a step whose fate is unknown (its replica died mid-call)
    COMPENSATION_FAILED = "compensation_failed"  # undoing a failed step failed too


FLAKY_CODES = frozenset(
    {ErrorCode.TOOL_FAILED, ErrorCode.TOOL_TIMEOUT, ErrorCode.CIRCUIT_OPEN, ErrorCode.RATE_LIMITED}
)
PERMISSION_CODES = frozenset({*GRANT_CODES, "credential_missing"})
_ANY_STEP_CODES = frozenset({*ErrorCode, "credential_missing", "expect_not_met"})
# What a match's error_codes may name per mode, in words for the problem message.
_CODE_HINTS = {
    FailureMode.TOOL_FLAKY: "tool_failed, tool_timeout, circuit_open, rate_limited, or "
    "http_500 to http_599",
    FailureMode.PERMISSION_ERROR: ", ".join(sorted(PERMISSION_CODES)) + ", http_401 or http_403",
    FailureMode.STALE_CONTEXT: "plan_stale",
    FailureMode.IN_DOUBT: "in_doubt",
    FailureMode.COMPENSATION_FAILED: "an adapter error code (tool_failed, grant_expired, ...), "
    "expect_not_met, or http_NNN",
}
# Facts of every failure, usable in titles and manual steps (plus the plan's params).
FACT_NAMES = frozenset({"tool_action", "step_title", "error_code", "error", "service"})
# Step args may use only values a runbook pattern validated: free text must not reach a call.
ARG_NAMES = frozenset({"service"})


def code_fits(mode: FailureMode, code: str) -> bool:
    """True when a failure of ``mode`` can carry error code ``code``."""
    http = _HTTP_CODE.fullmatch(code)
    status = int(http[1]) if http else None
    if mode is FailureMode.TOOL_FLAKY:
        return code in FLAKY_CODES or (status is not None and status >= 500)
    if mode is FailureMode.PERMISSION_ERROR:
        return code in PERMISSION_CODES or status in (401, 403)
    if mode is FailureMode.STALE_CONTEXT:
        return code == "plan_stale"
    if mode is FailureMode.IN_DOUBT:
        return code == "in_doubt"
    return code in _ANY_STEP_CODES or status is not None


ToolGlob = Annotated[str, Field(pattern=r"^[a-z0-9_*?]+(\.[a-z0-9_*?]+)?$")]


class PlaybookMatch(BaseModel):
    """Narrows a playbook to failures of some tools and/or error codes."""

    model_config = _STRICT
    tools: tuple[ToolGlob, ...] = ()  # glob patterns of tool actions, like http.* or *.restart
    error_codes: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _something(self) -> "PlaybookMatch":
        if not self.tools and not self.error_codes:
            raise ValueError("give tools, error_codes or both (or drop match)")
        return self

    def fits(self, tool_action: str, codes: Collection[str]) -> bool:
        """True when a failure of ``tool_action`` with ``codes`` is one this match names."""
        if self.tools and not any(fnmatch.fnmatchcase(tool_action, p) for p in self.tools):
            return False
        return not self.error_codes or any(c in codes for c in self.error_codes)


class Playbook(BaseModel):
    """A recovery playbook: a failure mode, a match, automated steps and manual instructions."""

    model_config = _STRICT
    id: str = Field(pattern=_ID)
    version: int = Field(ge=1)
    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    failure_mode: FailureMode
    match: PlaybookMatch | None = None
    steps: tuple[StepSpec, ...] = ()
    manual: tuple[Annotated[str, Field(min_length=1, max_length=1000)], ...] = ()
    replan: bool = False

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> "Playbook":
        if isinstance(info.context, Mapping) and info.context.get(_DEFER_CROSS_CHECKS):
            return self
        for loc, message in cross_field_problems(self):
            raise ValueError(f"{describe_loc(loc)}: {message}")
        return self

    @property
    def specificity(self) -> int:
        """2 for tools and codes, 1 for either, 0 without a match: the most specific wins."""
        if self.match is None:
            return 0
        return bool(self.match.tools) + bool(self.match.error_codes)

    def fits(self, mode: FailureMode, *, tool_action: str, codes: Collection[str]) -> bool:
        """True when this playbook answers a failure of ``mode``, ``tool_action`` and ``codes``."""
        if self.failure_mode is not mode:
            return False
        return self.match is None or self.match.fits(tool_action, codes)


def cross_field_problems(
    playbook: Playbook, params: Collection[str] | None = None
) -> list[tuple[Loc, str]]:
    """Problems spanning several fields, each with the loc of the part to change.

    With ``params`` (the parameter names runbooks define), placeholders are checked too.
    """
    problems: list[tuple[Loc, str]] = []
    mode = playbook.failure_mode
    if not (playbook.steps or playbook.manual or playbook.replan):
        problems.append(((), "give manual steps, automated steps, or (stale_context) replan"))
    if playbook.replan and mode is not FailureMode.STALE_CONTEXT:
        problems.append((("replan",), f"replan applies to stale_context only, not {mode}"))
    if playbook.replan and playbook.steps:
        problems.append((("steps",), "give steps or replan: true, not both"))
    if playbook.steps and mode is FailureMode.IN_DOUBT:
        problems.append(
            (
                ("steps",),
                "an in_doubt playbook takes manual steps only: opsgate never automates around "
                "a step whose fate is unknown; move these to manual",
            )
        )
    if playbook.match is not None:
        if playbook.match.tools and mode is FailureMode.STALE_CONTEXT:
            problems.append((("match", "tools"), "a stale plan has no failing tool; drop tools"))
        for index, code in enumerate(playbook.match.error_codes):
            if not code_fits(mode, code):
                problems.append(
                    (
                        ("match", "error_codes", index),
                        f"a {mode} failure never carries {code!r}; use {_CODE_HINTS[mode]}",
                    )
                )
    seen: set[str] = set()
    for index, step in enumerate(playbook.steps):
        problems += credential_problems(index, step)
        if step.id in seen:
            problems.append(
                (("steps", index, "id"), f"step ids must be unique; repeated: {step.id}")
            )
        seen.add(step.id)
    if params is not None:
        problems += _placeholder_problems(playbook, set(params))
    return problems


def _placeholder_problems(playbook: Playbook, params: set[str]) -> list[tuple[Loc, str]]:
    texts = set(FACT_NAMES) | params
    args = set(ARG_NAMES) | params
    problems: list[tuple[Loc, str]] = []
    for index, text in enumerate(playbook.manual):
        unknown = sorted(placeholders(text) - texts)
        if unknown:
            problems.append((("manual", index), _unknown(unknown[0], texts)))
    for index, step in enumerate(playbook.steps):
        parts: list[tuple[Loc, Any, set[str]]] = [(("title",), step.title, texts)]
        parts.append((("args",), step.args, args))
        if step.compensate is not None:
            parts.append((("compensate", "title"), step.compensate.title, texts))
            parts.append((("compensate", "args"), step.compensate.args, args))
        if step.check is not None:
            parts.append((("check", "title"), step.check.title, texts))
            parts.append((("check", "args"), step.check.args, args))
        for sub, value, known in parts:
            unknown = sorted(placeholders(value) - known)
            if unknown:
                problems.append((("steps", index, *sub), _unknown(unknown[0], known)))
                break
    return problems


def _unknown(name: str, known: set[str]) -> str:
    listed = ", ".join(f"{{{k}}}" for k in sorted(known))
    if name in FACT_NAMES:  # a fact, but in step args: free text must never reach a call
        return f"{{{name}}} cannot fill step args (free text never reaches a call); use {listed}"
    return f"{{{name}}} is not a fact of the failure nor a runbook parameter; use {listed}"


def runbook_params(runbooks: Iterable[Runbook]) -> set[str]:
    """Every parameter name some runbook defines (pattern groups and params entries)."""
    names: set[str] = set()
    for runbook in runbooks:
        names |= runbook.match.group_names() | set(runbook.params)
    return names


# --- selection ------------------------------------------------------------------------


def select_playbook(
    playbooks: Iterable[Playbook], mode: FailureMode, *, tool_action: str, codes: Collection[str]
) -> Playbook | None:
    """The most specific playbook for the failure; a tie (a check error) goes to the lower id."""
    fitting = [p for p in playbooks if p.fits(mode, tool_action=tool_action, codes=codes)]
    return min(fitting, key=lambda p: (-p.specificity, p.id), default=None)


def globs_overlap(a: str, b: str) -> bool:
    """True when some tool action matches both glob patterns (``*`` and ``?`` only)."""

    @cache
    def meet(i: int, j: int) -> bool:
        if i < len(a) and a[i] == "*":
            return meet(i + 1, j) or (j < len(b) and meet(i, j + 1))
        if j < len(b) and b[j] == "*":
            return meet(i, j + 1) or (i < len(a) and meet(i + 1, j))
        if i == len(a) or j == len(b):
            return i == len(a) and j == len(b)
        return (a[i] == b[j] or "?" in (a[i], b[j])) and meet(i + 1, j + 1)

    return meet(0, 0)


def ambiguous(a: Playbook, b: Playbook) -> bool:
    """True when one failure could match both playbooks equally specifically."""
    if a.failure_mode is not b.failure_mode or a.specificity != b.specificity:
        return False
    if a.match is None or b.match is None:
        return a.match is b.match
    if (
        a.match.tools
        and b.match.tools
        and not any(globs_overlap(x, y) for x in a.match.tools for y in b.match.tools)
    ):
        return False
    # One naming tools and the other codes: a failure of those tools with those codes fits both.
    return not (
        a.match.error_codes
        and b.match.error_codes
        and not set(a.match.error_codes) & set(b.match.error_codes)
    )


# --- loading --------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaybookSet:
    """The valid playbooks of a folder, what was wrong, and where each playbook came from."""

    playbooks: dict[str, Playbook] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    located: dict[str, LocatedYaml] = field(default_factory=dict)
    # Every file that fits the schema, valid or not, so checks can report all of its problems.
    parsed: list[tuple[Playbook, LocatedYaml]] = field(default_factory=list)


def _load(
    path: Path, params: Collection[str]
) -> tuple[Playbook | None, list[Problem], LocatedYaml | None]:
    """The playbook of ``path`` (None unless it fits the schema), its problems, its YAML."""
    source = str(path)
    try:
        located = load_located(path.read_text(encoding="utf-8"), source=source)
    except OSError as exc:
        return None, [Problem(source, None, "(file)", f"cannot read: {exc.strerror}")], None
    except YamlSyntaxError as exc:
        return None, [Problem(source, exc.line, "(syntax)", exc.message)], None
    if not isinstance(located.data, dict):
        problem = Problem(
            source, 1, "(document)", "a playbook must be a mapping with id, failure_mode, ..."
        )
        return None, [problem], located
    try:
        playbook = Playbook.model_validate(located.data, context={_DEFER_CROSS_CHECKS: True})
    except ValidationError as exc:
        return None, validation_problems(exc, located), located
    problems = [
        Problem(source, located.line_of(loc), describe_loc(loc), message)
        for loc, message in cross_field_problems(playbook, params)
    ]
    return playbook, sorted(problems, key=lambda p: p.line or 0), located


def load_playbooks(folder: Path, *, params: Collection[str]) -> PlaybookSet:
    """Load every ``*.yaml``/``*.yml`` playbook in ``folder`` (sorted); a missing folder is empty.

    ``params`` are the parameter names runbooks define (placeholders may use them). A broken
    file is left out with its problems; ambiguous playbooks are kept (the lower id wins) and
    reported.
    """
    found = PlaybookSet()
    if not folder.is_dir():
        return found
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        playbook, problems, located = _load(path, params)
        found.problems.extend(problems)
        if playbook is None or located is None:
            continue
        found.parsed.append((playbook, located))
        if problems:
            continue
        if playbook.id in found.playbooks:
            first = found.located[playbook.id].source
            found.problems.append(
                Problem(
                    str(path),
                    located.line_of(("id",)),
                    "id",
                    f"playbook id {playbook.id!r} is used by another file ({first}); rename one",
                )
            )
            continue
        for other in found.playbooks.values():
            if ambiguous(playbook, other):
                loc: Loc = ("match",) if playbook.match is not None else ("failure_mode",)
                found.problems.append(
                    Problem(
                        str(path),
                        located.line_of(loc),
                        describe_loc(loc),
                        f"as specific as playbook {other.id!r} ({found.located[other.id].source})"
                        f" for {playbook.failure_mode}: a failure could match both; narrow one "
                        "of them with match.tools or match.error_codes",
                    )
                )
        found.playbooks[playbook.id] = playbook
        found.located[playbook.id] = located
    return found


def store_playbooks(
    session: Session, *, folder: Path, runbooks: Mapping[str, Runbook], now: datetime
) -> list[Problem]:
    """Load the playbooks of ``folder`` into the knowledge store; returns their problems."""
    loaded = load_playbooks(folder, params=runbook_params(runbooks.values()))
    docs = [
        Document(PLAYBOOK_KIND, p.id, p.model_dump(mode="json"), source=loaded.located[p.id].source)
        for p in loaded.playbooks.values()
    ]
    # Like runbooks: new content becomes a version, older content is never written back, and a
    # playbook missing from this replica's folder is not deleted for everyone.
    publish_documents(session, docs, now=now)
    return loaded.problems


def latest_documents(session: Session, kinds: Sequence[str]) -> dict[tuple[str, str], Knowledge]:
    """The newest version of every live document of ``kinds``, by ``(kind, key)``."""
    rows = session.exec(
        select(Knowledge)
        .where(col(Knowledge.kind).in_(list(kinds)))
        .order_by(col(Knowledge.kind), col(Knowledge.key), col(Knowledge.version))
    )
    latest = {(row.kind, row.key): row for row in rows}
    return {key: row for key, row in latest.items() if row.body != TOMBSTONE}


def stored_playbooks(session: Session) -> dict[str, tuple[Playbook, int]]:
    """The current playbooks in the knowledge store with their versions."""
    out: dict[str, tuple[Playbook, int]] = {}
    for (_kind, key), row in latest_documents(session, [PLAYBOOK_KIND]).items():
        try:
            out[key] = (Playbook.model_validate(row.body), row.version)
        except ValidationError:
            continue  # stored by another opsgate version; its check reports the file
    return out


def fill_text(template: str, values: Mapping[str, str]) -> str:
    """``template`` with ``{name}`` filled from ``values``; a missing value is named, not lost."""

    class _Known(dict[str, str]):
        def __missing__(self, key: str) -> str:
            return f"({key} unknown)"

    try:
        return string.Formatter().vformat(template, (), _Known(values))
    except (ValueError, IndexError, AttributeError, KeyError):
        return template
