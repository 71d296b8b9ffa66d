"""The runbook schema (pydantic) and the loader that reports problems with file and line."""

import re
import string
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

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


class StepSpec(BaseModel):
    """One step of a runbook."""

    model_config = _STRICT
    id: str = Field(pattern=_ID)
    title: str = Field(min_length=1, max_length=200)
    tool: str = Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    args: dict[str, Any] = Field(default_factory=dict)
    risk: Risk
    expect: dict[ExpectKey, Any] | None = None
    compensate: CompensateSpec | None = None
    check: CheckSpec | None = None
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
    known = runbook.match.group_names() | set(runbook.params)
    for index, step in enumerate(runbook.steps):
        parts: list[tuple[Loc, Any]] = [(("title",), step.title), (("args",), step.args)]
        if step.compensate is not None:
            parts.append((("compensate",), [step.compensate.title, step.compensate.args]))
        if step.check is not None:
            parts.append((("check",), [step.check.title, step.check.args]))
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
        for _, field_name, _, _ in string.Formatter().parse(text):
            if field_name:
                names.add(field_name)
    return names


def fill(value: Any, params: Mapping[str, str]) -> Any:
    """Replace ``{name}`` in every string inside ``value`` with ``params[name]``."""
    if isinstance(value, str):
        return value.format_map(params)
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


def _load(path: Path) -> tuple[Runbook | None, list[Problem], LocatedYaml | None]:
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
    try:
        runbook = Runbook.model_validate(located.data, context={_DEFER_CROSS_CHECKS: True})
    except ValidationError as exc:
        return None, _validation_problems(exc, located), located
    problems = [
        Problem(source, located.line_of(loc), describe_loc(loc), message)
        for loc, message in cross_field_problems(runbook)
    ]
    return (None if problems else runbook), problems, located


def load_runbook(path: Path) -> tuple[Runbook | None, list[Problem]]:
    """Parse and validate one runbook file."""
    runbook, problems, _ = _load(path)
    return runbook, problems


def load_folder(folder: Path) -> tuple[dict[str, Runbook], list[Problem]]:
    """Load every ``*.yaml``/``*.yml`` runbook in ``folder`` (sorted, so loading is stable)."""
    if not folder.is_dir():
        return {}, [Problem(str(folder), None, "(folder)", "runbook folder does not exist")]
    runbooks: dict[str, Runbook] = {}
    problems: list[Problem] = []
    paths = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    for path in paths:
        runbook, found, located = _load(path)
        problems.extend(found)
        if runbook is None:
            continue
        if runbook.id in runbooks:
            line = located.line_of(("id",)) if located is not None else None
            problems.append(
                Problem(str(path), line, "id", f"runbook id {runbook.id!r} is used by another file")
            )
            continue
        runbooks[runbook.id] = runbook
    return runbooks, problems
