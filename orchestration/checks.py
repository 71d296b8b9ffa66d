"""``opsgate check``: validate config, runbooks and policies; every problem with file and line."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters import AdapterError, ToolRegistry, validate_args
from common.yamlsrc import Problem, load_located
from orchestration.config import OpsgateConfig, check_config
from orchestration.errors import ConfigError
from orchestration.runbooks import Runbook, fill, scan_folder
from policies import Pack, check_pack, default_pack, load_pack


@dataclass
class Report:
    """What ``opsgate check`` found."""

    config: OpsgateConfig | None = None
    pack: Pack | None = None
    runbooks: dict[str, Runbook] = field(default_factory=dict)
    retired: list[str] = field(default_factory=list)  # ids of retirement markers
    problems: list[Problem] = field(default_factory=list)


def load_policies(config: OpsgateConfig) -> tuple[Pack | None, list[Problem]]:
    """The configured policy pack (or the default) and its problems."""
    if config.policies is None:
        return default_pack(), []
    errors = check_pack(config.policies)
    if errors:
        return None, [
            Problem(
                e.path or str(config.policies),
                e.line,
                getattr(e, "location", "") or "pack",
                e.message,
            )
            for e in errors
        ]
    return load_pack(config.policies), []


def _tool_problems(runbook: Runbook, tools: ToolRegistry, source: str) -> list[Problem]:
    located = load_located(Path(source).read_text(encoding="utf-8"), source=source)
    problems = []
    sample = dict.fromkeys(runbook.match.group_names() | set(runbook.params), "example")
    for index, step in enumerate(runbook.steps):
        calls: list[tuple[tuple[str | int, ...], str, dict[str, Any]]] = [
            (("steps", index, "tool"), step.tool, step.args)
        ]
        if step.compensate is not None:
            calls.append(
                (("steps", index, "compensate", "tool"), step.compensate.tool, step.compensate.args)
            )
        if step.check is not None:
            calls.append((("steps", index, "check", "tool"), step.check.tool, step.check.args))
        for loc, tool_action, args in calls:
            try:
                _tool, spec = tools.action(tool_action)
                validate_args(spec, fill(args, sample))
            except AdapterError as exc:
                problems.append(
                    Problem(source, located.line_of(loc), ".".join(map(str, loc)), exc.message)
                )
                continue
            if loc[2:3] == ("check",) and not spec.read_only:
                problems.append(
                    Problem(
                        source,
                        located.line_of(loc),
                        ".".join(map(str, loc)),
                        f"a check must be a read-only action; {tool_action} changes state",
                    )
                )
    return problems


def check_all(
    config_path: Path | None, tools_for: Callable[[OpsgateConfig], ToolRegistry]
) -> Report:
    """Run every check; ``tools_for(config)`` builds the registry the runbooks must fit."""
    report = Report()
    config, problems = check_config(config_path)
    report.problems += problems
    if config is None:
        return report
    report.config = config
    report.pack, pack_problems = load_policies(config)
    report.problems += pack_problems
    try:
        tools = tools_for(config)
    except ConfigError as exc:
        report.problems.append(Problem(exc.path or config.source, exc.line, "adapters", exc.detail))
        tools = None
    scan = scan_folder(config.runbooks)
    runbooks = scan.runbooks
    report.problems += scan.problems
    report.runbooks = runbooks
    report.retired = sorted(scan.retired)
    if tools is not None:
        checked: set[str] = set()
        for path in sorted([*config.runbooks.glob("*.yaml"), *config.runbooks.glob("*.yml")]):
            runbook_id = _runbook_id(path)
            if runbook_id in runbooks and runbook_id not in checked:
                checked.add(runbook_id)
                report.problems += _tool_problems(runbooks[runbook_id], tools, str(path))
    return report


def _runbook_id(path: Path) -> str | None:
    try:
        data = load_located(path.read_text(encoding="utf-8"), source=str(path)).data
    except Exception:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None
