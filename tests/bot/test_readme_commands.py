"""The README's commands work as written on a fresh clone: every ``make`` verb it names exists,
every ``opsgate`` command in a shell block is spelled ``.venv/bin/opsgate`` (``make install``
puts nothing on PATH), and every such command parses with the real CLI parser."""

import re
import shlex
from pathlib import Path

import pytest

from bot.cli import _parser

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
MAKEFILE = (REPO / "Makefile").read_text()

SHELL_BLOCKS = re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL)
INLINE = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", README, flags=re.DOTALL))


def _commands() -> list[str]:
    lines = [line.split("#", 1)[0].strip() for block in SHELL_BLOCKS for line in block.splitlines()]
    return [line for line in lines if line] + [span for span in INLINE if ".venv/bin/" in span]


def _argv(command: str) -> list[str] | None:
    """The CLI arguments of a ``.venv/bin/opsgate`` command (usage brackets dropped)."""
    words = shlex.split(command.replace("[", "").replace("]", "").replace("…", "x"))
    if ".venv/bin/opsgate" not in words:
        return None
    argv = words[words.index(".venv/bin/opsgate") + 1 :]
    if not argv:  # the program named in prose, not a command
        return None
    return ["2026-01-31" if word == "YYYY-MM-DD" else word for word in argv]


def test_the_readme_has_commands_to_check() -> None:
    assert len(_commands()) >= 8
    assert sum(_argv(c) is not None for c in _commands()) >= 6


def test_every_make_verb_the_readme_names_exists() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", MAKEFILE, flags=re.MULTILINE))
    named = {
        m
        for text in [*SHELL_BLOCKS, *INLINE]
        for m in re.findall(r"(?:^|\n|`)\s*make ([a-z][a-z-]*)", f"`{text}")
    }
    assert {"demo", "test", "check", "install", "bench", "lint", "fmt"} <= named
    assert named <= targets, f"README names make verbs the Makefile lacks: {named - targets}"
    phony = set(re.search(r"^\.PHONY: (.*)$", MAKEFILE, flags=re.MULTILINE).group(1).split())  # type: ignore[union-attr]
    assert phony <= targets, f".PHONY lists verbs that do not exist: {phony - targets}"


def test_no_shell_block_calls_a_bare_opsgate() -> None:
    bare = [
        line
        for line in _commands()
        if re.search(r"(^|\s)opsgate\s", line) and ".venv/bin/opsgate" not in line
    ]
    assert bare == [], "after make install, opsgate is .venv/bin/opsgate (not on PATH)"


@pytest.mark.parametrize("command", [c for c in _commands() if _argv(c) is not None])
def test_every_opsgate_command_in_the_readme_parses(command: str) -> None:
    argv = _argv(command)
    assert argv is not None
    if "--help" in argv:
        return
    _parser().parse_args(argv)  # exits (fails the test) on an unknown verb or option
