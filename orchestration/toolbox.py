"""Builds the tool registry from the config, each tool wrapped in its guards.

Only the composition root and the Executor's owner use this; the Planner never imports it.
"""

from collections.abc import Iterable

from adapters import GrantSigner, HttpTool, ShellTool, Tool, ToolRegistry, guarded
from adapters.http import HttpConfig
from adapters.shell import ShellConfig
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
    step_timeout = config.execution.step_timeout_s
    http_cfg = config.adapters.http
    http = HttpTool.from_config(http_cfg.model_dump(include=set(HttpConfig.model_fields)))
    tools = [_guard(http, http_cfg, timeout_s=step_timeout, signer=signer, clock=clock)]
    shell_cfg = config.adapters.shell
    if shell_cfg is not None:
        try:
            shell = ShellTool.from_config(
                shell_cfg.model_dump(include=set(ShellConfig.model_fields))
            )
        except ValueError as exc:
            raise ConfigError(f"adapters.shell: {exc}", path=config.source) from exc
        tools.append(_guard(shell, shell_cfg, timeout_s=step_timeout, signer=signer, clock=clock))
    for tool, limits in extra:
        tools.append(_guard(tool, limits, timeout_s=step_timeout, signer=signer, clock=clock))
    return ToolRegistry(tools)
