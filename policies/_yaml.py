"""Parse YAML text into plain data plus the 1-based line of every key and list item.

Pydantic reports errors by location (``("deny", 2, "args_pattern")``); the line map turns such a
location into the line an engineer should edit. Pure: text in, data out.
"""

from typing import Any

import yaml

Loc = tuple[str | int, ...]


class YamlProblem(Exception):
    """The text is not YAML we accept; ``line`` is 1-based when known."""

    def __init__(self, message: str, *, line: int | None) -> None:
        """Keep the message and line for the caller to wrap in its own error."""
        super().__init__(message)
        self.message = message
        self.line = line


def parse(text: str) -> tuple[Any, dict[Loc, int]]:
    """Return the document's data and a map from key path to 1-based line.

    Raises:
        YamlProblem: on a syntax error, a duplicate key or more than one document.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[Loc, int] = {(): node.start_mark.line + 1}
        _record(node, (), lines, frozenset())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlProblem(f"not valid YAML: {exc.problem or exc}", line=line) from exc
    except yaml.YAMLError as exc:
        raise YamlProblem(f"not valid YAML: {exc}", line=None) from exc
    finally:
        loader.dispose()
    return data, lines


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
                raise YamlProblem(
                    f"duplicate key {key!r} - keep only one of them", line=line
                ) from None
            keys.add(key)
            lines[(*loc, key)] = line
            _record(value_node, (*loc, key), lines, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*loc, index)] = item.start_mark.line + 1
            _record(item, (*loc, index), lines, seen)


def line_for(loc: Loc, lines: dict[Loc, int]) -> int | None:
    """The line of ``loc``, or of its nearest recorded ancestor (a missing key's parent)."""
    for end in range(len(loc), -1, -1):
        line = lines.get(loc[:end])
        if line is not None:
            return line
    return None
