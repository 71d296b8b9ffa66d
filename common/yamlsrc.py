"""YAML that remembers where each value came from, so errors can name file and line."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

Loc = tuple[str | int, ...]


@dataclass
class LocatedYaml:
    """Parsed YAML data plus the 1-based line of every mapping key and sequence item."""

    data: Any
    source: str
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The line of ``loc`` or of its nearest known parent."""
        path = tuple(loc)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


class YamlSyntaxError(ValueError):
    """The text is not valid YAML; carries the line of the problem."""

    def __init__(self, message: str, *, source: str, line: int | None) -> None:
        super().__init__(message)
        self.source = source
        self.line = line
        self.message = message


def _record(node: yaml.Node, loc: Loc, lines: dict[Loc, int], seen: frozenset[int]) -> None:
    """Walk ``node`` recording lines; ``seen`` guards against recursive aliases."""
    if id(node) in seen:
        return
    seen = seen | {id(node)}
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in keys and key != "<<":
                raise _Duplicate(f"duplicate key {key!r}; keep only one of them", line)
            keys.add(key)
            lines[(*loc, key)] = line
            _record(value_node, (*loc, key), lines, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*loc, index)] = item.start_mark.line + 1
            _record(item, (*loc, index), lines, seen)


class _Duplicate(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def load_located(text: str, *, source: str) -> LocatedYaml:
    """Parse one YAML document with line numbers, parsing once.

    Raises:
        YamlSyntaxError: on a syntax error, a duplicate key or more than one document.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return LocatedYaml(data=None, source=source)
        lines: dict[Loc, int] = {(): node.start_mark.line + 1}
        _record(node, (), lines, frozenset())
        data = loader.construct_document(node)
    except _Duplicate as exc:
        raise YamlSyntaxError(exc.message, source=source, line=exc.line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlSyntaxError(
            f"invalid YAML: {exc.problem or exc}", source=source, line=line
        ) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"invalid YAML: {exc}", source=source, line=None) from exc
    finally:
        loader.dispose()
    return LocatedYaml(data=data, source=source, lines=lines)


def describe_loc(loc: Sequence[str | int]) -> str:
    """``("steps", 2, "risk")`` -> ``steps[2].risk``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(document)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file: where, and what to change."""

    source: str
    line: int | None
    where: str
    message: str

    def __str__(self) -> str:
        at = f"{self.source}:{self.line}" if self.line else self.source
        return f"{at}: {self.where}: {self.message}"


_HINTS = {
    "extra_forbidden": "unknown key; remove it or check its spelling",
    "missing": "required; add it",
}


def validation_problems(exc: ValidationError, located: LocatedYaml) -> list[Problem]:
    """Turn a pydantic ValidationError on ``located.data`` into problems with lines."""
    problems = []
    errors = exc.errors()
    parents = {tuple(e["loc"][:n]) for e in errors for n in range(len(e["loc"]))}
    for err in errors:
        loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
        if err["type"] == "too_short" and tuple(err["loc"]) in parents:
            continue  # pydantic counts only the valid items: the items' own errors say it all
        message = _HINTS.get(err["type"], err["msg"])
        if err["type"] == "value_error":  # our validator's own words, without "Value error, "
            message = str(err.get("ctx", {}).get("error", message))
        got = repr(err["input"]) if "input" in err else ""
        quoted = got in message  # a validator that names the value: quote it once
        whole = isinstance(err["input"], dict | list | tuple)  # too long to repeat usefully
        if err["type"] not in _HINTS and got and not quoted and not whole:
            message = f"{message} (got {got})"
        problems.append(
            Problem(
                source=located.source,
                line=located.line_of(loc),
                where=describe_loc(loc),
                message=message,
            )
        )
    return problems
