"""The runbook schema (pydantic) and the loader that reports problems with file and line.

A file holding only ``id``, ``version`` and ``retired: true`` (and an optional ``reason``) is a
retirement marker: it retires that runbook everywhere (see ``orchestration.knowledge``).
"""

import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from common import Risk
from common.incident_refs import LATE_REF
from common.redaction import literal_credentials
from common.yamlsrc import (
    Loc,
    LocatedYaml,
    Problem,
    YamlSyntaxError,
    describe_loc,
    load_located,
    validation_problems,
)
from orchestration.auditor import EXPECT_KEYS

_STRICT = ConfigDict(extra="forbid", frozen=True)
_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"
DEFAULT_PARAM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# Validation context key: the loader reports cross-field problems itself, with lines.
_DEFER_CROSS_CHECKS = "defer_cross_checks"


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
    return value


def _expect_key(value: str) -> str:
    if value not in EXPECT_KEYS:
        raise ValueError(
            f"unknown expect key {value!r}; use one of {', '.join(sorted(EXPECT_KEYS))}"
        )
    return value


# Validated per item, so a bad pattern or expect key is reported at its own loc (and line).
RegexStr = Annotated[str, AfterValidator(_regex)]
ExpectKey = Annotated[str, AfterValidator(_expect_key)]


class MatchSpec(BaseModel):
    """How a runbook recognises an incident."""

    model_config = _STRICT
    keywords: tuple[str, ...] = ()
    patterns: tuple[RegexStr, ...] = ()

    @model_validator(mode="after")
    def _something(self) -> "MatchSpec":
        if not self.keywords and not self.patterns:
            raise ValueError("give at least one keyword or pattern")
        return self

    def group_names(self) -> set[str]:
        """Named groups of all patterns."""
        names: set[str] = set()
        for pattern in self.patterns:
            names.update(re.compile(pattern).groupindex)
        return names


class ParamSpec(BaseModel):
    """Validation of one parameter taken from the incident text."""

    model_config = _STRICT
    pattern: str = DEFAULT_PARAM_PATTERN
    description: str = ""

    @field_validator("pattern")
    @classmethod
    def _compile(cls, value: str) -> str:
        return _regex(value)


class CompensateSpec(BaseModel):
    """The call that undoes a step."""

    model_config = _STRICT
    tool: str = Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    args: dict[str, Any] = Field(default_factory=dict)
    title: str = ""
    risk: Risk = Risk.MEDIUM


class CheckSpec(BaseModel):
    """A read-only probe that tells whether a step took effect (run when the step is in doubt)."""

    model_config = _STRICT
    tool: str = Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    args: dict[str, Any] = Field(default_factory=dict)
    expect: dict[ExpectKey, Any] | None = None
    title: str = ""


class CanarySpec(BaseModel):
    """The same action tried first where it cannot hurt: ``args`` override the step's args.

    The canary runs before the step and must meet the step's ``expect``; if it fails, the step
    is never offered for approval and the plan halts.
    """

    model_config = _STRICT
    args: dict[str, Any] = Field(default_factory=dict)
    title: str = ""
    risk: Risk = Risk.MEDIUM


class StepSpec(BaseModel):
    """One step of a runbook."""

    model_config = _STRICT
    id: str = Field(pattern=_ID)
    title: str = Field(min_length=1, max_length=200)
    tool: str = Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    args: dict[str, Any] = Field(default_factory=dict)
    risk: Risk
    expect: dict[ExpectKey, Any] | None = None
    # An observation, never a failure: what a healthy answer looks like (``expect``'s keys),
    # and whether seeing it (or its opposite) ends the plan (see ``orchestration.observe``).
    healthy: dict[ExpectKey, Any] | None = None
    end_if: Literal["healthy", "unhealthy"] | None = None
    compensate: CompensateSpec | None = None
    check: CheckSpec | None = None
    canary: CanarySpec | None = None
    cost_usd: float | None = Field(default=None, ge=0)


class BudgetSpec(BaseModel):
    """A runbook's own per-plan budget."""

    model_config = _STRICT
    usd: float | None = Field(default=None, ge=0)
    tokens: int | None = Field(default=None, ge=0)


class Runbook(BaseModel):
    """A runbook: match rules and ordered steps with ``{param}`` placeholders."""

    model_config = _STRICT
    id: str = Field(pattern=_ID)
    version: int = Field(ge=1)
    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    match: MatchSpec
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    steps: tuple[StepSpec, ...] = Field(min_length=1)
    budget: BudgetSpec | None = None
    # With ``llm:`` configured, the Researcher reads first and posts findings beside this plan.
    research: bool = False

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> "Runbook":
        # Programmatic construction stays safe; the loader defers these checks so it can
        # report each one on its own line (see cross_field_problems and load_runbook).
        if isinstance(info.context, Mapping) and info.context.get(_DEFER_CROSS_CHECKS):
            return self
        for loc, message in cross_field_problems(self):
            raise ValueError(f"{describe_loc(loc)}: {message}")
        return self

    def param_pattern(self, name: str) -> str:
        """The validation pattern of parameter ``name``."""
        spec = self.params.get(name)
        return spec.pattern if spec else DEFAULT_PARAM_PATTERN


class RetiredRunbook(BaseModel):
    """A marker file that retires runbook ``id``; bump ``version`` to retire it again later."""

    model_config = _STRICT
    id: str = Field(pattern=_ID)
    version: int = Field(ge=1)
    retired: Literal[True]
    reason: str = ""


def cross_field_problems(runbook: Runbook) -> list[tuple[Loc, str]]:
    """Problems spanning several fields, each with the loc of the part to change."""
    problems: list[tuple[Loc, str]] = []
    seen: set[str] = set()
    for index, step in enumerate(runbook.steps):
        if step.id in seen:
            problems.append(
                (("steps", index, "id"), f"step ids must be unique; repeated: {step.id}")
            )
        seen.add(step.id)
    for index, step in enumerate(runbook.steps):
        problems.extend(_observe_problems(index, step, last=index == len(runbook.steps) - 1))
    known = runbook.match.group_names() | set(runbook.params)
    for index, step in enumerate(runbook.steps):
        problems.extend(credential_problems(index, step))
        parts: list[tuple[Loc, Any]] = [(("title",), step.title), (("args",), step.args)]
        if step.compensate is not None:
            parts.append((("compensate",), [step.compensate.title, step.compensate.args]))
        if step.check is not None:
            parts.append((("check",), [step.check.title, step.check.args]))
        if step.canary is not None:
            parts.append((("canary",), [step.canary.title, step.canary.args]))
        for sub, value in parts:
            unknown = sorted(placeholders(value) - known)
            if unknown:
                problems.append(
                    (
                        ("steps", index, *sub),
                        f"steps[{index}] ({step.id}) uses {{{unknown[0]}}}, which no pattern group "
                        f"or params entry defines; add a named group (?P<{unknown[0]}>...) "
                        "to a pattern",
                    )
                )
                break
    return problems


def credential_problems(index: int, step: StepSpec) -> list[tuple[Loc, str]]:
    """Credentials written into a step's args (the store must never hold one): refused."""
    problems: list[tuple[Loc, str]] = []
    parts: list[tuple[Loc, Any]] = [(("args",), step.args)]
    if step.compensate is not None:
        parts.append((("compensate", "args"), step.compensate.args))
    if step.check is not None:
        parts.append((("check", "args"), step.check.args))
    if step.canary is not None:
        parts.append((("canary", "args"), step.canary.args))
    for sub, args in parts:
        for where in literal_credentials(args):
            loc: Loc = ("steps", index, *sub, *_loc_of(where))
            problems.append(
                (
                    loc,
                    f"steps[{index}] ({step.id}) {'.'.join(map(str, sub))}.{where} holds a "
                    "literal credential; write it as ${secret:NAME} and give the value in "
                    "OPSGATE_SECRET_NAME or a file NAME in OPSGATE_SECRETS_DIR",
                )
            )
    return problems


def _loc_of(where: str) -> Loc:
    """``headers.Authorization`` / ``items[2]`` as a loc, for the line of the offending key."""
    loc: list[str | int] = []
    for part in where.split("."):
        name, _, rest = part.partition("[")
        if name:
            loc.append(name)
        for index in re.findall(r"(\d+)\]", "[" + rest if rest else ""):
            loc.append(int(index))
    return tuple(loc)


def _observe_problems(index: int, step: StepSpec, *, last: bool) -> list[tuple[Loc, str]]:
    """``healthy`` and ``end_if`` make sense together, on a step that something follows."""
    where = f"steps[{index}] ({step.id})"
    if step.healthy is not None and not step.healthy:
        return [
            (
                ("steps", index, "healthy"),
                f"{where} has an empty healthy; say what a healthy answer looks like, "
                "e.g. healthy: {status: 200}",
            )
        ]
    if step.end_if is None:
        return []
    if step.healthy is None:
        return [
            (
                ("steps", index, "end_if"),
                f"{where} has end_if: {step.end_if} but no healthy expectation to judge its "
                "answer by; add healthy: {status: 200} (or what a healthy answer looks like)",
            )
        ]
    if last:
        return [
            (
                ("steps", index, "end_if"),
                f"{where} is the last step, so end_if has nothing left to skip; remove it",
            )
        ]
    return []


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def placeholders(value: Any) -> set[str]:
    """Names of ``{name}`` placeholders in every string inside ``value``."""
    names: set[str] = set()
    for text in _strings(value):
        for _, field_name, _, _ in string.Formatter().parse(LATE_REF.sub("", text)):
            if field_name:
                names.add(field_name)
    return names


def fill(value: Any, params: Mapping[str, str]) -> Any:
    """Replace ``{name}`` in every string inside ``value`` with ``params[name]``.

    ``${secret:NAME}`` and ``${incident:NAME}`` references are left as they are: they are
    resolved at call time, inside the guards.
    """
    if isinstance(value, str):
        parts = LATE_REF.split(value)
        if len(parts) == 1:
            return value.format_map(params)
        # split() alternates text and captured references: format the text, keep the references.
        return "".join(
            part.format_map(params) if i % 2 == 0 else part for i, part in enumerate(parts)
        )
    if isinstance(value, Mapping):
        return {key: fill(item, params) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [fill(item, params) for item in value]
    return value


def _validation_problems(exc: ValidationError, located: LocatedYaml) -> list[Problem]:
    """Like ``validation_problems``, but a bad mapping key is reported on the key's own line."""
    problems = validation_problems(exc, located)
    for index, err in enumerate(exc.errors()):
        loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
        if len(loc) >= 2 and loc[-1] == "[key]":
            old = problems[index]
            problems[index] = Problem(
                old.source, located.line_of(loc[:-1]), describe_loc(loc[:-2]), old.message
            )
    return problems


def _load(
    path: Path,
) -> tuple[Runbook | RetiredRunbook | None, list[Problem], LocatedYaml | None]:
    source = str(path)
    try:
        located = load_located(path.read_text(encoding="utf-8"), source=source)
    except OSError as exc:
        return None, [Problem(source, None, "(file)", f"cannot read: {exc.strerror}")], None
    except YamlSyntaxError as exc:
        return None, [Problem(source, exc.line, "(syntax)", exc.message)], None
    if not isinstance(located.data, dict):
        problem = Problem(source, 1, "(document)", "a runbook must be a mapping with id, ...")
        return None, [problem], located
    if "retired" in located.data:
        marker, problems = _load_marker(located)
        return marker, problems, located
    try:
        runbook = Runbook.model_validate(located.data, context={_DEFER_CROSS_CHECKS: True})
    except ValidationError as exc:
        return None, _validation_problems(exc, located), located
    problems = [
        Problem(source, located.line_of(loc), describe_loc(loc), message)
        for loc, message in cross_field_problems(runbook)
    ]
    return (None if problems else runbook), problems, located


def _load_marker(located: LocatedYaml) -> tuple[RetiredRunbook | None, list[Problem]]:
    try:
        return RetiredRunbook.model_validate(located.data), []
    except ValidationError as exc:
        hint = "a retirement marker holds only id, version, retired: true and reason"
        problems = _validation_problems(exc, located)
        return None, [replace(p, message=f"{p.message} ({hint})") for p in problems]


def load_runbook(path: Path) -> tuple[Runbook | None, list[Problem]]:
    """Parse and validate one runbook file (a retirement marker gives no runbook)."""
    runbook, problems, _ = _load(path)
    return (runbook if isinstance(runbook, Runbook) else None), problems


@dataclass(frozen=True)
class FolderScan:
    """What a runbook folder holds: valid runbooks, retirement markers, and every problem."""

    runbooks: dict[str, Runbook] = field(default_factory=dict)
    retired: dict[str, RetiredRunbook] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # runbook id -> file


def runbook_files(folder: Path) -> list[Path]:
    """The runbook files of ``folder``, sorted so loading is stable."""
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def scan_folder(folder: Path) -> FolderScan:
    """Load every ``*.yaml``/``*.yml`` file of ``folder``: runbooks and retirement markers."""
    if not folder.is_dir():
        return FolderScan(
            problems=[Problem(str(folder), None, "(folder)", "runbook folder does not exist")]
        )
    scan = FolderScan()
    for path in runbook_files(folder):
        item, found, located = _load(path)
        scan.problems.extend(found)
        if item is None:
            continue
        if item.id in scan.sources:
            line = located.line_of(("id",)) if located is not None else None
            scan.problems.append(
                Problem(
                    str(path),
                    line,
                    "id",
                    f"runbook id {item.id!r} is used by another file "
                    f"({scan.sources[item.id]}); rename one",
                )
            )
            continue
        scan.sources[item.id] = str(path)
        if isinstance(item, Runbook):
            scan.runbooks[item.id] = item
        else:
            scan.retired[item.id] = item
    return scan


def load_folder(folder: Path) -> tuple[dict[str, Runbook], list[Problem]]:
    """The valid runbooks of ``folder`` (retirement markers left out) and every problem."""
    scan = scan_folder(folder)
    return scan.runbooks, scan.problems
