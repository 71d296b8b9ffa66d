"""Builds the tool registry from the config, each tool wrapped in its guards.

Only the composition root and the Executor's owner use this; the Planner never imports it.
"""

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel

from adapters import BreakerStore, GrantSigner, HttpTool, ShellTool, Tool, ToolRegistry, guarded
from adapters.alertmanager import AlertmanagerTool
from adapters.guards import Sleep
from adapters.kubernetes import KubernetesConfig, KubernetesTool
from adapters.pagerduty import PagerDutyTool
from adapters.prometheus import PrometheusTool
from adapters.secrets import SecretResolver
from adapters.settings.alertmanager import AlertmanagerConfig
from adapters.settings.http import HttpConfig
from adapters.settings.pagerduty import PagerDutyConfig
from adapters.settings.prometheus import PrometheusConfig
from adapters.settings.sql import SqlConfig
from adapters.settings.tickets import TicketConfig
from adapters.shell import ShellConfig
from adapters.sql import SqlTool
from adapters.testing import InMemoryBreakerStore
from adapters.tickets import TicketTool
from adapters.vault import HvacVault
from common import Clock
from orchestration.config import OpsgateConfig, ToolLimits
from orchestration.errors import ConfigError


def tool_limits(config: OpsgateConfig) -> dict[str, ToolLimits]:
    """The guard settings of each configured tool, by tool name."""
    limits: dict[str, ToolLimits] = {"http": config.adapters.http}
    for name in ("shell", "sql", "pagerduty", "ticket", "prometheus", "alertmanager", "kubernetes"):
        section = getattr(config.adapters, name)
        if section is not None:
            limits[name] = section
    return limits


def secret_resolver(config: OpsgateConfig, *, clock: Clock) -> SecretResolver:
    """The resolver of ``${secret:...}``: environment, secrets folder, and Vault if configured."""
    vault = config.secrets.vault
    return SecretResolver(vault=HvacVault(vault) if vault is not None else None, clock=clock)


def build_registry(
    config: OpsgateConfig,
    *,
    signer: GrantSigner,
    clock: Clock,
    breakers: BreakerStore | None = None,
    sleep: Sleep = asyncio.sleep,
    extra: Iterable[tuple[Tool, ToolLimits]] = (),
    resolver: SecretResolver | None = None,
) -> ToolRegistry:
    """The configured tools (http always; shell, sql, pagerduty, ticket, prometheus,
    alertmanager, kubernetes when configured; plus ``extra``), guarded.

    ``breakers`` is where circuit breakers live; replicas share theirs through the database
    store (``orchestration.breakers``); without one, this process keeps its own in memory.
    ``sleep`` is what rate-limited calls wait with. ``resolver`` resolves secret references
    (default: the environment, the secrets folder and ``secrets.vault`` when configured).
    """
    store = breakers if breakers is not None else InMemoryBreakerStore(clock)
    secrets = resolver if resolver is not None else secret_resolver(config, clock=clock)
    step_timeout = config.execution.step_timeout_s

    def guard(tool: Tool, limits: ToolLimits) -> Tool:
        return guarded(
            tool,
            signer=signer,
            clock=clock,
            breakers=store,
            timeout_s=step_timeout,
            rate_per_s=limits.rate_per_s,
            burst=limits.burst,
            rate_max_wait_s=limits.rate_max_wait_s,
            rate_read_max_wait_s=limits.rate_read_max_wait_s,
            breaker_threshold=limits.breaker_threshold,
            breaker_reset_s=limits.breaker_reset_s,
            sleep=sleep,
            resolver=secrets,
        )

    http_cfg = config.adapters.http
    http = HttpTool.from_config(http_cfg.model_dump(include=set(HttpConfig.model_fields)))
    tools = [guard(http, http_cfg)]
    shell_cfg = config.adapters.shell
    if shell_cfg is not None:
        try:
            shell = ShellTool.from_config(
                shell_cfg.model_dump(include=set(ShellConfig.model_fields))
            )
        except ValueError as exc:
            raise ConfigError(f"adapters.shell: {exc}", path=config.source) from exc
        tools.append(guard(shell, shell_cfg))
    adapters = config.adapters
    optional: list[tuple[str, ToolLimits | None, Callable[[], Tool]]] = [
        (
            "sql",
            adapters.sql,
            lambda: SqlTool.from_config(_own(adapters.sql, SqlConfig)),
        ),
        (
            "pagerduty",
            adapters.pagerduty,
            lambda: PagerDutyTool.from_config(_own(adapters.pagerduty, PagerDutyConfig)),
        ),
        (
            "ticket",
            adapters.ticket,
            lambda: TicketTool.from_config(_own(adapters.ticket, TicketConfig)),
        ),
        (
            "prometheus",
            adapters.prometheus,
            lambda: PrometheusTool.from_config(_own(adapters.prometheus, PrometheusConfig)),
        ),
        (
            "alertmanager",
            adapters.alertmanager,
            lambda: AlertmanagerTool.from_config(_own(adapters.alertmanager, AlertmanagerConfig)),
        ),
    ]
    for name, limits, build in optional:
        if limits is None:
            continue
        try:
            tool = build()
        except ValueError as exc:
            raise ConfigError(f"adapters.{name}: {exc}", path=config.source) from exc
        tools.append(guard(tool, limits))
    kube_cfg = config.adapters.kubernetes
    if kube_cfg is not None:
        settings = KubernetesConfig.model_validate(
            kube_cfg.model_dump(include=set(KubernetesConfig.model_fields))
        )
        tools.append(guard(KubernetesTool(settings, clock=clock), kube_cfg))
    tools.extend(guard(tool, limits) for tool, limits in extra)
    return ToolRegistry(tools)


def _own(section: BaseModel | None, model: type[BaseModel]) -> dict[str, Any]:
    """The adapter's own settings of a config section (without the guard settings)."""
    assert section is not None
    return section.model_dump(include=set(model.model_fields))
