"""Builds the tool registry from the config, each tool wrapped in its guards.

Only the composition root and the Executor's owner use this; the Planner never imports it.
"""

from collections.abc import Iterable

from pydantic import ValidationError

from adapters import GrantSigner, HttpTool, ShellCommand, ShellTool, Tool, ToolRegistry, guarded
from common import Clock
from orchestration.config import OpsgateConfig, ToolLimits
from orchestration.errors import ConfigError


def _guard(
    tool: Tool, limits: ToolLimits, *, timeout_s: float, signer: GrantSigner, clock: Clock
) -> Tool:
    return guarded(
        tool,
        signer=signer,
        clock=clock,
        timeout_s=timeout_s,
        rate_per_s=limits.rate_per_s,
        burst=limits.burst,
        rate_max_wait_s=limits.rate_max_wait_s,
        breaker_threshold=limits.breaker_threshold,
        breaker_reset_s=limits.breaker_reset_s,
    )


def build_registry(
    config: OpsgateConfig,
    *,
    signer: GrantSigner,
    clock: Clock,
    extra: Iterable[tuple[Tool, ToolLimits]] = (),
) -> ToolRegistry:
    """The configured tools (http always, shell when configured, plus ``extra``), guarded."""
    http_cfg = config.adapters.http
    http = HttpTool(
        allow_hosts=http_cfg.allow_hosts,
        timeout_s=http_cfg.timeout_s,
        max_body_bytes=http_cfg.max_body_bytes,
        cost_per_call_usd=http_cfg.cost_per_call_usd,
    )
    step_timeout = config.execution.step_timeout_s
    tools = [_guard(http, http_cfg, timeout_s=step_timeout, signer=signer, clock=clock)]
    shell_cfg = config.adapters.shell
    if shell_cfg is not None:
        try:
            commands = {n: ShellCommand.model_validate(c) for n, c in shell_cfg.commands.items()}
            shell = ShellTool(
                commands=commands,
                timeout_s=shell_cfg.timeout_s,
                max_output_bytes=shell_cfg.max_output_bytes,
                cost_per_call_usd=shell_cfg.cost_per_call_usd,
            )
        except (ValidationError, ValueError) as exc:
            raise ConfigError(f"adapters.shell: {exc}", path=config.source) from exc
        tools.append(_guard(shell, shell_cfg, timeout_s=step_timeout, signer=signer, clock=clock))
    for tool, limits in extra:
        tools.append(_guard(tool, limits, timeout_s=step_timeout, signer=signer, clock=clock))
    return ToolRegistry(tools)
