"""The policy pack: its schema, and the one place policies read a file.

A pack is YAML (see ``policies/default.yaml``). ``load_pack`` raises the first
:class:`~policies.model.PackError`; ``check_pack`` returns all of them for ``opsgate check``.
Every error names the file, the 1-based line and the key path, and says what to change.
"""

import fnmatch
import functools
import itertools
import os
import re
from enum import StrEnum
from importlib import resources
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from common import Risk
from common.yamlsrc import Loc, LocatedYaml, YamlSyntaxError, load_located
from policies.model import SNAKE_CASE, PackError

RULE_ID = r"^[a-z0-9][a-z0-9_-]*$"
DEFAULT_PACK = "default.yaml"


class _Strict(BaseModel):
    """Base of every pack section: immutable, and unknown keys are errors (typos hide rules)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ApprovalLevel(_Strict):
    """What the gate needs for one effective risk level."""

    quorum: int = Field(default=0, ge=0, le=10, description="Distinct approvals needed.")
    exclude_requester: bool = Field(default=False, description="The requester's vote never counts.")
    deny: bool = Field(default=False, description="Steps at this risk never run.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """A denied level takes no votes; excluding the requester needs a vote to exclude."""
        if self.deny and (self.quorum or self.exclude_requester):
            raise ValueError("a denied level takes no quorum - drop quorum/exclude_requester")
        if self.exclude_requester and not self.quorum:
            raise ValueError("exclude_requester needs quorum >= 1 - set a quorum or drop it")
        return self


class Approval(_Strict):
    """The approval table, one level per effective risk; defaults follow DESIGN.md."""

    low: ApprovalLevel = ApprovalLevel(quorum=0)
    medium: ApprovalLevel = ApprovalLevel(quorum=1)
    high: ApprovalLevel = ApprovalLevel(quorum=2, exclude_requester=True)
    critical: ApprovalLevel = ApprovalLevel(deny=True)

    def for_risk(self, risk: Risk) -> ApprovalLevel:
        """The level that applies at ``risk``."""
        level: ApprovalLevel = getattr(self, risk.value)
        return level

    @model_validator(mode="after")
    def _monotonic(self) -> Self:
        """Higher risk never needs less: critical is denied, quorums and denials only grow."""
        if not self.critical.deny:
            raise ValueError("critical steps never run - set critical: {deny: true}")
        levels = [(risk, self.for_risk(risk)) for risk in Risk]
        for (_, lower), (risk, higher) in itertools.pairwise(levels):
            weaker = not higher.deny and (
                higher.quorum < lower.quorum or lower.exclude_requester > higher.exclude_requester
            )
            if (lower.deny and not higher.deny) or weaker:
                raise ValueError(
                    f"{risk} needs less than the level below it - "
                    "give higher risks at least the same quorum, requester rule and denial"
                )
        return self


class Rule(_Strict):
    """A pattern over a tool call: a ``tool.action`` glob and, optionally, an args regex."""

    id: str = Field(pattern=RULE_ID)
    tool: tuple[str, ...] = Field(default=("*",), min_length=1)
    args_pattern: re.Pattern[str] | None = None
    read_only: bool | None = Field(default=None, description="Match only (non-)read-only calls.")
    reason: str = Field(min_length=1)

    @field_validator("tool", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        """``tool: "sql.*"`` is shorthand for ``tool: ["sql.*"]``."""
        return (value,) if isinstance(value, str) else value

    @field_validator("tool")
    @classmethod
    def _globs_not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """An empty glob matches nothing, which is never what the author meant."""
        if any(not glob.strip() for glob in value):
            raise ValueError("empty tool glob - use '*' to match every tool")
        return value

    @field_validator("args_pattern", mode="before")
    @classmethod
    def _compile(cls, value: Any) -> Any:
        """Compile at load time so a bad regex is a load error, not a runtime surprise."""
        if not isinstance(value, str):
            return value
        try:
            return re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex {value!r} ({exc.msg}) - fix the pattern") from None

    def matches(self, *, tool_action: str, read_only: bool, texts: tuple[str, ...]) -> bool:
        """Whether the rule applies to a call, given the texts its args are searched in."""
        if self.read_only is not None and self.read_only != read_only:
            return False
        if not any(fnmatch.fnmatchcase(tool_action, glob) for glob in self.tool):
            return False
        pattern = self.args_pattern
        return pattern is None or any(pattern.search(text) for text in texts)


class DenyRule(Rule):
    """A call matching this rule never runs; ``code`` is what the decision carries."""

    code: str = Field(pattern=SNAKE_CASE)


class EscalateRule(Rule):
    """A call matching this rule counts as at least ``to`` risk (never lower)."""

    to: Risk


class RequireRule(Rule):
    """Calls matching this rule (at ``min_risk`` or above) must have a canary and/or a dry run.

    ``opsgate check`` reports runbook steps that lack them; at run time such a step is denied.
    """

    canary: bool = False
    dry_run: bool = False
    min_risk: Risk = Risk.LOW

    @model_validator(mode="after")
    def _requires_something(self) -> Self:
        """A rule that requires nothing would never matter."""
        if not (self.canary or self.dry_run):
            raise ValueError("a require rule needs canary: true, dry_run: true or both")
        return self


class Closer(StrEnum):
    """Who, relative to an incident, may close it by hand."""

    REQUESTER = "requester"  # opened it (or the person its alert names)
    PARTICIPANT = "participant"  # the requester, or voted on one of its steps
    APPROVER = "approver"  # a configured approver
    RESPONDER = "responder"  # listed in ``incidents.responders``


class Incidents(_Strict):
    """Who may resolve or cancel an incident (``/incident resolve|cancel``)."""

    resolve: tuple[Closer, ...] = Field(
        default=(Closer.REQUESTER, Closer.APPROVER, Closer.RESPONDER), min_length=1
    )
    cancel: tuple[Closer, ...] = Field(
        default=(Closer.PARTICIPANT, Closer.APPROVER, Closer.RESPONDER), min_length=1
    )
    responders: tuple[str, ...] = Field(default=(), description="Slack user ids.")

    @field_validator("responders")
    @classmethod
    def _user_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not re.fullmatch(r"[A-Z][A-Z0-9]{2,20}", item):
                raise ValueError(f"{item!r} is not a Slack user id (like U0123)")
        return value


class Pack(_Strict):
    """A whole policy pack."""

    version: Literal[1]
    approval: Approval = Approval()
    approval_ttl_minutes: int = Field(default=30, ge=1, le=24 * 60)
    max_denials_per_plan: int = Field(default=3, ge=1)
    gated_runs_alone_up_to: Risk = Field(
        default=Risk.MEDIUM,
        description="Gated stage without a scope rule: steps up to this effective risk run "
        "alone; riskier ones ask for elevation.",
    )
    promotion_quorum: int = Field(
        default=2, ge=1, le=10, description="Approvals a rollout promotion needs."
    )
    deny: tuple[DenyRule, ...] = ()
    escalate: tuple[EscalateRule, ...] = ()
    require: tuple[RequireRule, ...] = ()
    canary_runs_alone_up_to: Risk = Field(
        default=Risk.MEDIUM,
        description="A canary at or below this effective risk runs without approval.",
    )
    incidents: Incidents = Incidents()

    @model_validator(mode="before")
    @classmethod
    def _removed_settings(cls, data: Any) -> Any:
        """Say what replaced a setting this version of opsgate no longer reads."""
        if isinstance(data, dict) and "gated_min_quorum" in data:
            raise ValueError(
                "gated_min_quorum was removed: gated is now the most autonomous stage (steps "
                "up to gated_runs_alone_up_to risk run alone, riskier ones ask for elevation); "
                "use gated_runs_alone_up_to, or stay in supervised mode"
            )
        return data

    @field_validator("gated_runs_alone_up_to")
    @classmethod
    def _gated_never_critical(cls, value: Risk) -> Risk:
        if value is Risk.CRITICAL:
            raise ValueError("critical never runs, in any stage: use high at most")
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        """Decisions name the rule that decided, so rule ids must be unique across the pack."""
        seen: set[str] = set()
        for rule in (*self.deny, *self.escalate, *self.require):
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice - give each rule its own id")
            seen.add(rule.id)
        return self


def load_pack(path: str | os.PathLike[str]) -> Pack:
    """Read and validate the pack at ``path``; raise the first :class:`PackError`."""
    problems, pack = _check_path(path)
    if pack is None:
        raise problems[0]
    return pack


def load_pack_text(text: str, *, source: str = "<policy pack>") -> Pack:
    """Validate a pack given as YAML text; ``source`` names it in errors."""
    problems, pack = _check_text(text, source=source)
    if pack is None:
        raise problems[0]
    return pack


def check_pack(path: str | os.PathLike[str]) -> list[PackError]:
    """Every problem in the pack at ``path``, in file order; empty when it is valid."""
    return _check_path(path)[0]


def check_pack_text(text: str, *, source: str = "<policy pack>") -> list[PackError]:
    """Every problem in a pack given as YAML text; empty when it is valid."""
    return _check_text(text, source=source)[0]


@functools.cache
def default_pack() -> Pack:
    """The pack shipped as ``policies/default.yaml`` (parsed once; packs are immutable)."""
    text = resources.files("policies").joinpath(DEFAULT_PACK).read_text(encoding="utf-8")
    return load_pack_text(text, source=DEFAULT_PACK)


def _check_path(path: str | os.PathLike[str]) -> tuple[list[PackError], Pack | None]:
    """Read the file, then validate its text."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return [PackError(f"cannot read the file ({reason}) - check the path", path=name)], None
    return _check_text(text, source=name)


def _check_text(text: str, *, source: str) -> tuple[list[PackError], Pack | None]:
    """Parse and validate; return the problems (sorted by line) and the pack when valid."""
    try:
        located = load_located(text, source=source)
    except YamlSyntaxError as exc:
        return [PackError(exc.message, path=source, line=exc.line)], None
    data = located.data
    if not isinstance(data, dict):
        message = "a policy pack is a mapping with at least 'version: 1' - start from default.yaml"
        return [PackError(message, path=source, line=located.line_of(()))], None
    try:
        pack = Pack.model_validate(data)
    except ValidationError as exc:
        problems = [_to_pack_error(error, located) for error in exc.errors()]
        problems.sort(key=lambda problem: problem.line or 0)
        return problems, None
    return [], pack


def _to_pack_error(error: ErrorDetails, located: LocatedYaml) -> PackError:
    """One pydantic error as a PackError with its line, key path and a fix."""
    loc = tuple(error["loc"])
    return PackError(
        _message(error, loc),
        path=located.source,
        line=located.line_of(loc),
        location=_dotted(loc),
    )


def _message(error: ErrorDetails, loc: Loc) -> str:
    """Plain words for a pydantic error, ending with what to change."""
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(loc[:-1])) or "none"
        return f"unknown key - remove it or fix its spelling (allowed here: {allowed})"
    if kind == "missing":
        return "required key is missing - add it"
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    got = repr(error["input"])
    got = got if len(got) <= 60 else got[:57] + "..."
    return f"{error['msg']} (got {got}) - fix the value"


def _dotted(loc: Loc) -> str:
    """``("deny", 2, "args_pattern")`` as ``deny[2].args_pattern``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _allowed_keys(loc: Loc) -> list[str]:
    """The keys the schema accepts at ``loc`` (a mapping inside the pack)."""
    model: Any = Pack
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if _is_model(model) else None
        if field is None:
            return []
        model = _element_type(field.annotation)
    return list(model.model_fields) if _is_model(model) else []


def _element_type(annotation: Any) -> Any:
    """The model a field holds, looking through ``tuple[X, ...]``."""
    args: tuple[Any, ...] = getattr(annotation, "__args__", ())
    return args[0] if args and _is_model(args[0]) else annotation


def _is_model(value: Any) -> bool:
    """Whether ``value`` is a pydantic model class."""
    return isinstance(value, type) and issubclass(value, BaseModel)
