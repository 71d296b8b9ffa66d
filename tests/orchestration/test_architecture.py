"""Layering: the Planner reaches no credentials or tools; Slack stays inside bot."""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "orchestration", "adapters", "policies", "common")
BELOW_BOT = ("orchestration", "adapters", "policies", "common")
PLANNER_FORBIDDEN = (
    "adapters",  # with it adapters.secrets, adapters.vault and adapters.credentials
    "orchestration.grants",
    "orchestration.executor",
    "orchestration.toolbox",
    "orchestration.authority",
)
SLACK_AND_BOT = ("slack_bolt", "slack_sdk", "bot")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=True, cache_dir=None)


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in packages)


def _source(module: str) -> Path | None:
    """The file of one of our modules, found on disk (nothing is imported)."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imports_of(module: str, source: Path) -> set[str]:
    """Every absolute name ``module`` imports or imports from, by AST."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    package = module if source.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = importlib.util.resolve_name("." * node.level + base, package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _ast_closure(start: str) -> set[str]:
    """Our modules reachable from ``start`` through imports, parents included."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        source = _source(module)
        if module in seen or source is None:
            continue  # "from pkg import Name" where Name is not a module
        seen.add(module)
        for name in _imports_of(module, source):
            if _within(name, PACKAGES):
                parts = name.split(".")
                todo.extend(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return seen


def test_planner_imports_nothing_that_holds_credentials_or_reaches_tools_ast() -> None:
    reached = _ast_closure("orchestration.planner")
    assert "orchestration.knowledge" in reached  # the walk really follows imports
    assert sorted(m for m in reached if _within(m, PLANNER_FORBIDDEN)) == []


LLM_PLANNER_FORBIDDEN = (*PLANNER_FORBIDDEN, "orchestration.agents.client")


def test_llm_planner_reaches_no_credentials_tools_or_model_client_ast() -> None:
    """The LLM Planner validates answers; the client (which holds the API key) is elsewhere."""
    reached = _ast_closure("orchestration.agents.planning")
    assert "orchestration.planner" in reached
    assert sorted(m for m in reached if _within(m, LLM_PLANNER_FORBIDDEN)) == []


def test_llm_planner_reaches_no_credentials_tools_or_model_client_grimp(
    graph: grimp.ImportGraph,
) -> None:
    for forbidden in (*LLM_PLANNER_FORBIDDEN, "openai"):
        chain = graph.find_shortest_chain(
            importer="orchestration.agents.planning", imported=forbidden, as_packages=True
        )
        assert chain is None, f"orchestration.agents.planning reaches {forbidden} via {chain}"


def test_ast_walk_does_see_the_executor_from_the_control_plane() -> None:
    """The check above can fail: the control plane, unlike the Planner, reaches tools."""
    reached = _ast_closure("orchestration.control")
    assert {"orchestration.executor", "adapters"} <= reached
    # (adapters.vault is imported where a vault reference is first resolved, not at load.)
    assert {"orchestration.authority", "adapters.secrets", "adapters.credentials"} <= reached


def test_no_tool_can_give_the_planner_a_credential() -> None:
    """Whatever a tool declares, the Planner holds none (the rule is in one place)."""
    from adapters.credentials import CredentialSpec, holds  # noqa: PLC0415 - the rule under test
    from common import Role  # noqa: PLC0415

    every = CredentialSpec(
        name="all", read_only=True, holders=frozenset({Role.RESEARCHER, Role.EXECUTOR})
    )
    assert not holds(Role.PLANNER, every)
    with pytest.raises(ValueError, match="Planner never holds"):
        CredentialSpec(name="p", read_only=True, holders=frozenset({Role.PLANNER}))


def test_planner_imports_nothing_that_holds_credentials_or_reaches_tools_grimp(
    graph: grimp.ImportGraph,
) -> None:
    for forbidden in PLANNER_FORBIDDEN:
        chain = graph.find_shortest_chain(
            importer="orchestration.planner", imported=forbidden, as_packages=True
        )
        assert chain is None, f"orchestration.planner reaches {forbidden} via {chain}"


@pytest.mark.parametrize("package", BELOW_BOT)
def test_nothing_below_bot_imports_slack_or_bot(graph: grimp.ImportGraph, package: str) -> None:
    offenders = {
        (module, imported)
        for module in graph.find_descendants(package) | {package}
        for imported in graph.find_modules_directly_imported_by(module)
        if _within(imported, SLACK_AND_BOT)
    }
    assert offenders == set()


def test_lint_imports_contracts_are_kept() -> None:
    proc = subprocess.run(
        # importlinter has no __main__; call the lint-imports entry point in this interpreter
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command as m; sys.exit(m())",
            "--no-cache",
            "--no-logo",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout
