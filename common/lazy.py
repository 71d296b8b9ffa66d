"""Package exports loaded on first use (PEP 562), so importing a package's light module does
not load the package's heavy ones.

A package lists ``name -> module`` in ``EXPORTS`` and sets ``__getattr__ = lazy(...)``; it also
imports the same names under ``TYPE_CHECKING``, so type checkers and linters see ordinary
imports.
"""

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: loads ``exports[name]`` and caches the value."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook's name
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
