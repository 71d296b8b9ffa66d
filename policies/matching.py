"""The texts a rule's ``args_pattern`` is searched in.

Searching only the canonical JSON of the args would be easy to slip past: JSON escapes a newline
inside ``"DROP\\nTABLE"`` to a backslash and an ``n``, and an argv list ``["rm", "-rf", "/"]`` never
reads ``rm -rf``. So a pattern is searched in the canonical JSON (for patterns about keys, such as
``"force":true``), in every string value on its own (``$`` then means the end of that value) and in
every list of strings joined with spaces (a command line).
"""

from collections.abc import Mapping
from typing import Any

from common import canonical_json


def match_texts(args: Mapping[str, Any]) -> tuple[str, ...]:
    """The canonical JSON of ``args``, then each string value and each joined string list."""
    texts = [canonical_json(args)]
    _collect(args, texts)
    return tuple(texts)


def _collect(value: Any, texts: list[str]) -> None:
    """Append the searchable strings inside ``value``, depth first, in canonical key order."""
    if isinstance(value, str):
        texts.append(value)
    elif isinstance(value, Mapping):
        for key in sorted(value, key=str):
            _collect(value[key], texts)
    elif isinstance(value, list | tuple):
        if value and all(isinstance(item, str) for item in value):
            texts.append(" ".join(value))
        for item in value:
            _collect(item, texts)
