"""The runbook schema (pydantic) and the loader that reports problems with file and line."""

import re
import string
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common import Risk
from common.yamlsrc import Problem, YamlSyntaxError, load_located, validation_problems
from orchestration.auditor import EXPECT_KEYS

_STRICT = ConfigDict(extra="forbid", frozen=True)
_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"
DEFAULT_PARAM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class MatchSpec(BaseModel):
    """How a runbook recognises an incident."""

    model_config = _STRICT
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    @field_validator("patterns")
    @classmethod
    def _compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
        return value

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
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
        return value


class CompensateSpec(BaseModel):
    """The call that undoes a step."""

    model_config = _STRICT
    tool: str = Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
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
    expect: dict[str, Any] | None = None
    compensate: CompensateSpec | None = None
    cost_usd: float | None = Field(default=None, ge=0)

    @field_validator("expect")
    @classmethod
    def _expect_keys(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        unknown = sorted(set(value or {}) - EXPECT_KEYS)
        if unknown:
            raise ValueError(
                f"unknown expect key {unknown[0]!r}; use one of {', '.join(sorted(EXPECT_KEYS))}"
            )
        return value


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
    def _consistent(self) -> "Runbook":
        ids = [step.id for step in self.steps]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"step ids must be unique; repeated: {', '.join(dupes)}")
        known = self.match.group_names() | set(self.params)
        for index, step in enumerate(self.steps):
            used = placeholders(step.title) | placeholders(step.args)
            if step.compensate is not None:
                used |= placeholders(step.compensate.args) | placeholders(step.compensate.title)
            unknown = sorted(used - known)
            if unknown:
                raise ValueError(
                    f"steps[{index}] ({step.id}) uses {{{unknown[0]}}}, which no pattern group "
                    f"or params entry defines; add a named group (?P<{unknown[0]}>...) to a pattern"
                )
        return self

    def param_pattern(self, name: str) -> str:
        """The validation pattern of parameter ``name``."""
        spec = self.params.get(name)
        return spec.pattern if spec else DEFAULT_PARAM_PATTERN


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


def load_runbook(path: Path) -> tuple[Runbook | None, list[Problem]]:
    """Parse and validate one runbook file."""
    source = str(path)
    try:
        located = load_located(path.read_text(encoding="utf-8"), source=source)
    except OSError as exc:
        return None, [Problem(source, None, "(file)", f"cannot read: {exc.strerror}")]
    except YamlSyntaxError as exc:
        return None, [Problem(source, exc.line, "(syntax)", exc.message)]
    if not isinstance(located.data, dict):
        return None, [Problem(source, 1, "(document)", "a runbook must be a mapping with id, ...")]
    try:
        return Runbook.model_validate(located.data), []
    except ValidationError as exc:
        return None, validation_problems(exc, located)


def load_folder(folder: Path) -> tuple[dict[str, Runbook], list[Problem]]:
    """Load every ``*.yaml``/``*.yml`` runbook in ``folder`` (sorted, so loading is stable)."""
    if not folder.is_dir():
        return {}, [Problem(str(folder), None, "(folder)", "runbook folder does not exist")]
    runbooks: dict[str, Runbook] = {}
    problems: list[Problem] = []
    paths = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    for path in paths:
        runbook, found = load_runbook(path)
        problems.extend(found)
        if runbook is None:
            continue
        if runbook.id in runbooks:
            problems.append(
                Problem(str(path), 1, "id", f"runbook id {runbook.id!r} is used by another file")
            )
            continue
        runbooks[runbook.id] = runbook
    return runbooks, problems
