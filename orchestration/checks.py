"""``opsgate check``: validate config, runbooks, recovery playbooks and policies; every problem
with file and line."""

import contextlib
import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from adapters import ActionSpec, AdapterError, Tool, ToolRegistry, validate_args
from adapters.alertmanager import AlertmanagerTool, Matcher, silence_refusals
from adapters.secrets import SecretSource, is_vault_name, parse_vault_ref, where_to_set
from common import Mode, Risk, Role
from common.redaction import secret_names
from common.yamlsrc import Loc, LocatedYaml, Problem, YamlSyntaxError, describe_loc, load_located
from orchestration.config import OpsgateConfig, check_config
from orchestration.errors import ConfigError
from orchestration.recovery.playbooks import (
    ARG_NAMES,
    Playbook,
    PlaybookSet,
    load_playbooks,
    runbook_params,
)
from orchestration.runbooks import Runbook, StepSpec, fill, placeholders, scan_folder
from policies import (
    Pack,
    PolicyContext,
    assess_risk,
    check_pack,
    default_pack,
    load_pack,
    missing_requirements,
)


@dataclass
class Report:
    """What ``opsgate check`` found."""

    config: OpsgateConfig | None = None
    pack: Pack | None = None
    runbooks: dict[str, Runbook] = field(default_factory=dict)
    retired: list[str] = field(default_factory=list)  # ids of retirement markers
    playbooks: dict[str, Playbook] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)  # valid, but cannot work as meant


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
                e.location or "pack",
                # PackError.message leads with the location, which Problem prints already.
                e.message.removeprefix(f"{e.location}: ") if e.location else e.message,
            )
            for e in errors
        ]
    return load_pack(config.policies), []


def _tool_problems(
    steps: Sequence[StepSpec], *, names: set[str], tools: ToolRegistry, located: LocatedYaml
) -> list[Problem]:
    """Unknown tool actions (at the ``tool`` line), args the action refuses (at the line of
    each refused argument, else of ``args``), and checks that change state."""
    source = located.source
    problems = []
    sample = dict.fromkeys(names, "example")
    for index, step in enumerate(steps):
        calls: list[tuple[Loc, str, dict[str, Any]]] = [(("steps", index), step.tool, step.args)]
        if step.compensate is not None:
            calls.append(
                (("steps", index, "compensate"), step.compensate.tool, step.compensate.args)
            )
        if step.check is not None:
            calls.append((("steps", index, "check"), step.check.tool, step.check.args))
        if step.canary is not None:
            canary_args = {**step.args, **step.canary.args}
            calls.append((("steps", index, "canary"), step.tool, canary_args))
        for base, tool_action, args in calls:
            tool_loc = (*base, "tool")
            try:
                tool, spec = tools.action(tool_action)
            except AdapterError as exc:
                problems.append(
                    Problem(source, located.line_of(tool_loc), describe_loc(tool_loc), exc.message)
                )
                continue
            try:
                validated = validate_args(spec, fill(args, sample))
            except AdapterError as exc:
                problems.extend(_args_problems(exc, tool_action, spec, (*base, "args"), located))
                continue
            problems += _silence_problems(
                tool,
                tool_action,
                raw=args,
                validated=validated,
                args_loc=(*base, "args"),
                located=located,
            )
            if base[2:3] == ("canary",) and spec.read_only:
                problems.append(
                    Problem(
                        source,
                        located.line_of(base),
                        describe_loc(base),
                        f"{tool_action} is read-only: there is nothing for a canary to try "
                        "first; remove the canary",
                    )
                )
            if base[2:3] == ("check",) and not spec.read_only:
                problems.append(
                    Problem(
                        source,
                        located.line_of(tool_loc),
                        describe_loc(tool_loc),
                        f"a check must be a read-only action; {tool_action} changes state",
                    )
                )
    return problems


def requirement_problems(
    steps: Sequence[StepSpec],
    *,
    names: set[str],
    pack: Pack,
    tools: ToolRegistry,
    located: LocatedYaml,
) -> list[Problem]:
    """Steps the pack's ``require`` rules match that lack their canary or dry run."""
    if not pack.require:
        return []
    sample = dict.fromkeys(names, "example")
    problems = []
    for index, step in enumerate(steps):
        try:
            _tool, spec = tools.action(step.tool)
        except AdapterError:
            continue  # reported by _tool_problems
        tool, _, action = step.tool.partition(".")
        ctx = PolicyContext(
            role=Role.EXECUTOR,
            tool=tool,
            action=action,
            args=fill(step.args, sample),
            risk=step.risk.at_least(spec.risk),
            read_only=spec.read_only,
            mode=Mode.SUPERVISED,
            requester="",
            approvers=frozenset(),
            has_canary=step.canary is not None,
            dry_run=spec.previews and not spec.read_only,
        )
        effective = ctx.model_copy(update={"risk": assess_risk(ctx, pack).risk})
        for rule, what in missing_requirements(effective, pack):
            if what == "canary":
                fix = "add canary: {args: {...}} naming where it cannot hurt"
            else:
                fix = f"{step.tool} cannot be tried with a dry run; use an action that can"
            loc: Loc = ("steps", index)
            problems.append(
                Problem(
                    located.source,
                    located.line_of(loc),
                    describe_loc(loc),
                    f"steps[{index}] ({step.id}) needs a "
                    f"{'canary' if what == 'canary' else 'dry run'} by policy rule {rule.id} "
                    f"({rule.reason}); {fix}",
                )
            )
    return problems


def _references(value: Any, loc: tuple[str | int, ...]) -> list[tuple[tuple[str | int, ...], str]]:
    """Every ``(loc, name)`` of a ``${secret:NAME}`` inside ``value``."""
    if isinstance(value, str):
        return [(loc, name) for name in sorted(secret_names(value))]
    if isinstance(value, Mapping):
        return [ref for key, item in value.items() for ref in _references(item, (*loc, key))]
    if isinstance(value, list | tuple):
        return [ref for i, item in enumerate(value) for ref in _references(item, (*loc, i))]
    return []


def _unresolvable(name: str, secrets: SecretSource, *, vault: bool) -> bool:
    """True when ``opsgate check`` knows that ``${secret:name}`` cannot resolve.

    A Vault reference is checked for its shape and for Vault being configured; whether the
    path exists is known only when a call reads it.
    """
    if is_vault_name(name):
        return not vault or parse_vault_ref(name) is None
    return secrets.lookup(name) is None


def _missing_problem(located: LocatedYaml, loc: Loc, name: str) -> Problem:
    return Problem(
        located.source,
        located.line_of(loc),
        describe_loc(loc),
        f"${{secret:{name}}} is not set: {where_to_set(name)}",
    )


def secret_problems(
    steps: Sequence[StepSpec],
    *,
    located: LocatedYaml,
    source: SecretSource | None = None,
    vault: bool = False,
) -> list[Problem]:
    """References to secrets that are set nowhere, each on its own line (never a value)."""
    secrets = source or SecretSource()
    problems = []
    for index, step in enumerate(steps):
        parts: list[tuple[tuple[str | int, ...], Any]] = [(("steps", index, "args"), step.args)]
        if step.compensate is not None:
            parts.append((("steps", index, "compensate", "args"), step.compensate.args))
        if step.check is not None:
            parts.append((("steps", index, "check", "args"), step.check.args))
        for base, args in parts:
            for loc, name in _references(args, base):
                if _unresolvable(name, secrets, vault=vault):
                    problems.append(_missing_problem(located, loc, name))
    return problems


def config_secret_problems(
    config: OpsgateConfig, *, source: SecretSource | None = None
) -> list[Problem]:
    """References in the config file (adapter settings, the Vault login) set nowhere, each at
    its own line; the Vault login's own credentials must come from the environment or files."""
    if config.source == "(built-in defaults)":
        return []
    path = Path(config.source)
    try:
        located = load_located(path.read_text(encoding="utf-8"), source=config.source)
    except (OSError, YamlSyntaxError):
        return []  # check_config reported it already
    secrets = source or SecretSource()
    vault = config.secrets.vault is not None
    problems = []
    for loc, name in _references(located.data, ()):
        login = loc[:2] == ("secrets", "vault")
        if login and is_vault_name(name):
            problems.append(
                Problem(
                    located.source,
                    located.line_of(loc),
                    describe_loc(loc),
                    "Vault's own login cannot come from Vault; use ${secret:NAME} from the "
                    "environment or the secrets folder",
                )
            )
        elif _unresolvable(name, secrets, vault=vault):
            problems.append(_missing_problem(located, loc, name))
    return problems


def _silence_problems(
    tool: Tool,
    tool_action: str,
    *,
    raw: Mapping[str, Any],
    validated: Mapping[str, Any],
    args_loc: Loc,
    located: LocatedYaml,
) -> list[Problem]:
    """A silence the Alertmanager adapter's allow-list refuses, at the refused matcher's line.

    A value with a ``{param}`` placeholder is known only when the plan is made: its label and
    kind are checked here, the value by the adapter at call time."""
    if tool_action != "alertmanager.silence":
        return []
    inner: object = tool
    for _ in range(32):  # the guard stack wraps the adapter (``inner``), layer by layer
        if isinstance(inner, AlertmanagerTool) or not hasattr(inner, "inner"):
            break
        inner = inner.inner
    if not isinstance(inner, AlertmanagerTool):
        return []
    matchers = [Matcher.model_validate(m) for m in validated.get("matchers") or []]
    raw_matchers = raw.get("matchers")
    raw_list = raw_matchers if isinstance(raw_matchers, list) else []
    known = [
        not (index < len(raw_list) and placeholders(raw_list[index]))
        for index in range(len(matchers))
    ]
    problems = []
    for index, reason in silence_refusals(matchers, inner.config, values_known=known):
        loc = (*args_loc, "matchers") if index is None else (*args_loc, "matchers", index)
        problems.append(
            Problem(
                located.source,
                located.line_of(loc),
                describe_loc(loc),
                f"{tool_action} would be refused: {reason}",
            )
        )
    return problems


def _args_problems(
    exc: AdapterError, tool_action: str, spec: ActionSpec, args_loc: Loc, located: LocatedYaml
) -> list[Problem]:
    """One problem per refused argument, at that argument's line (values are not echoed)."""
    cause = exc.__cause__
    if not isinstance(cause, ValidationError):
        where = describe_loc(args_loc)
        return [Problem(located.source, located.line_of(args_loc), where, exc.message)]
    accepted = ", ".join(
        field.alias or name for name, field in spec.args_model.model_fields.items()
    )
    problems = []
    for error in cause.errors(include_url=False, include_input=False):
        loc = (*args_loc, *(part for part in error["loc"] if isinstance(part, str | int)))
        name = error["loc"][0] if error["loc"] else None
        if error["type"] == "extra_forbidden":
            message = f"{tool_action} takes no argument {name!r} (it takes: {accepted})"
        elif error["type"] == "missing":
            message = f"{tool_action} needs the argument {name!r}; add it"
        else:
            message = f"{tool_action} refuses this value: {error['msg']}"
        problems.append(Problem(located.source, located.line_of(loc), describe_loc(loc), message))
    return problems


def approver_warnings(config: OpsgateConfig, pack: Pack) -> list[Problem]:
    """Settings that are valid but cannot work: no approver for the steps that need one."""
    if config.approver_ids() or config.mode is Mode.SHADOW:  # shadow mode runs nothing anyway
        return []
    needing = [
        risk.value
        for risk in Risk
        if not pack.approval.for_risk(risk).deny and pack.approval.for_risk(risk).quorum > 0
    ]
    if config.mode is Mode.GATED:
        which = f"in gated mode steps above {pack.gated_runs_alone_up_to} risk need elevation, an"
    elif needing:
        which = f"{' and '.join(needing)} risk steps need"
    else:
        return []
    line = None
    if config.source != OpsgateConfig().source:
        with contextlib.suppress(OSError, YamlSyntaxError):
            located = load_located(Path(config.source).read_text(encoding="utf-8"), source="")
            line = located.lines.get(("approvers",))
    return [
        Problem(
            config.source,
            line,
            "approvers",
            f"empty: {which} approval, which no one can give, so their plans stop there; "
            "list the Slack user or user-group ids whose votes count",
        )
    ]


def check_playbooks(
    config: OpsgateConfig, runbooks: Mapping[str, Runbook], tools: ToolRegistry | None
) -> PlaybookSet:
    """The recovery playbooks with every problem: schema, placeholders, ids, ambiguous
    matches and, given ``tools``, actions and args the tools refuse."""
    folder = config.playbook_folder()
    if config.playbooks is not None and not folder.is_dir():
        problem = Problem(str(folder), None, "(folder)", "playbook folder does not exist")
        return PlaybookSet(problems=[problem])
    params = runbook_params(runbooks.values())
    loaded = load_playbooks(folder, params=params)
    if tools is None:
        return loaded
    known = tools.names()
    names = set(ARG_NAMES) | params
    for playbook, located in loaded.parsed:
        loaded.problems.extend(
            _tool_problems(playbook.steps, names=names, tools=tools, located=located)
        )
        for index, pattern in enumerate(playbook.match.tools if playbook.match else ()):
            if not any(fnmatch.fnmatchcase(name, pattern) for name in known):
                loc = ("match", "tools", index)
                loaded.problems.append(
                    Problem(
                        located.source,
                        located.line_of(loc),
                        describe_loc(loc),
                        f"{pattern!r} matches no tool action; known actions: {', '.join(known)}",
                    )
                )
    loaded.problems.sort(key=lambda p: (p.source, p.line or 0))
    return loaded


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
    report.problems += config_secret_problems(config)
    report.pack, pack_problems = load_policies(config)
    report.problems += pack_problems
    if report.pack is not None:
        report.warnings += approver_warnings(config, report.pack)
    try:
        tools = tools_for(config)
    except ConfigError as exc:
        report.problems.append(Problem(exc.path or config.source, exc.line, "adapters", exc.detail))
        tools = None
    scan = scan_folder(config.runbooks)
    runbooks = scan.runbooks
    runbook_problems = list(scan.problems)
    report.runbooks = runbooks
    report.retired = sorted(scan.retired)
    if tools is not None:
        checked: set[str] = set()
        for path in sorted([*config.runbooks.glob("*.yaml"), *config.runbooks.glob("*.yml")]):
            runbook_id = _runbook_id(path)
            if runbook_id in runbooks and runbook_id not in checked:
                checked.add(runbook_id)
                runbook = runbooks[runbook_id]
                located = load_located(path.read_text(encoding="utf-8"), source=str(path))
                runbook_problems += _tool_problems(
                    runbook.steps,
                    names=runbook.match.group_names() | set(runbook.params),
                    tools=tools,
                    located=located,
                )
                runbook_problems += secret_problems(
                    runbook.steps, located=located, vault=config.secrets.vault is not None
                )
                if report.pack is not None:
                    runbook_problems += requirement_problems(
                        runbook.steps,
                        names=runbook.match.group_names() | set(runbook.params),
                        pack=report.pack,
                        tools=tools,
                        located=located,
                    )
    runbook_problems.sort(key=lambda p: (p.source, p.line or 0))  # file by file, top down
    report.problems += runbook_problems
    report.warnings += rollout_warnings(config, set(runbooks))
    if report.pack is not None and (gated := gated_warning(config, report.pack)) is not None:
        report.warnings.append(gated)
    playbooks = check_playbooks(config, runbooks, tools)
    report.playbooks = playbooks.playbooks
    report.problems += playbooks.problems
    return report


GATED_CHANGED = (
    "gated runs steps up to {limit} risk without approval and asks for elevation above it "
    "(gated is the most autonomous stage; earlier versions asked for approval of every step "
    "but read-only low-risk ones). To keep approvals, use mode: supervised, or set "
    "gated_runs_alone_up_to: low in the policy pack"
)


def gated_warning(config: OpsgateConfig, pack: Pack) -> Problem | None:
    """``mode: gated`` now acts alone: say so, as an upgrade may have kept the old setting."""
    if config.mode is not Mode.GATED:
        return None
    line = None
    if config.source != OpsgateConfig().source:
        with contextlib.suppress(OSError, YamlSyntaxError):
            located = load_located(Path(config.source).read_text(encoding="utf-8"), source="")
            line = located.lines.get(("mode",))
    message = GATED_CHANGED.format(limit=pack.gated_runs_alone_up_to)
    return Problem(config.source, line, "mode", message)


def rollout_warnings(config: OpsgateConfig, runbook_ids: set[str]) -> list[Problem]:
    """Rollout scopes that can never apply (an unknown runbook) or never be promoted."""
    out = []
    line_of: dict[tuple[str | int, ...], int] = {}
    if config.source != OpsgateConfig().source:
        with contextlib.suppress(OSError, YamlSyntaxError):
            line_of = load_located(Path(config.source).read_text(encoding="utf-8"), source="").lines
    for index, rule in enumerate(config.rollout.scopes):
        where = f"rollout.scopes[{index}]"
        line = line_of.get(("rollout", "scopes", index))
        if rule.runbook is not None and rule.runbook not in runbook_ids:
            message = f"{rule.id}: no runbook {rule.runbook!r}, so this scope covers no step"
            out.append(Problem(config.source, line, where, message))
    if config.rollout.scopes and not config.approver_ids():
        message = "scopes are set but no approvers: no promotion can ever be approved"
        out.append(Problem(config.source, line_of.get(("rollout",)), "rollout", message))
    return out


def _runbook_id(path: Path) -> str | None:
    try:
        data = load_located(path.read_text(encoding="utf-8"), source=str(path)).data
    except Exception:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None
