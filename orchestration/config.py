"""opsgate.yaml: the configuration schema, its defaults and its loader.

``OPSGATE_CONFIG`` names the file; else ``./opsgate.yaml`` when present; else built-in defaults.
Relative paths inside the file are resolved against the file's folder.
"""

import datetime as dt
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# The adapters' schemas, not the adapters: reading the config loads no client library.
from adapters.kubernetes.settings import KubernetesConfig
from adapters.settings.alertmanager import AlertmanagerConfig
from adapters.settings.base import require_secret_ref
from adapters.settings.http import HttpConfig
from adapters.settings.pagerduty import PagerDutyConfig
from adapters.settings.prometheus import PrometheusConfig
from adapters.settings.sql import SqlConfig
from adapters.settings.tickets import TicketConfig
from adapters.settings.vault import VaultConfig
from adapters.shell import ShellCommand, ShellConfig
from common import Mode
from common.yamlsrc import Problem, YamlSyntaxError, load_located, validation_problems
from orchestration.errors import ConfigError
from orchestration.rollout.settings import RolloutConfig

_STRICT = ConfigDict(extra="forbid")
_HHMM = re.compile(r"(\d{1,2}):(\d{2})")


class BudgetConfig(BaseModel):
    """Per-plan budgets and thresholds."""

    model_config = _STRICT
    plan_usd: float = Field(default=1.0, ge=0)
    plan_tokens: int = Field(default=2000, ge=0)
    soft_ratio: float = Field(default=0.8, gt=0, le=1)
    soft_wait_minutes: int = Field(default=10, ge=1)
    channel_daily_usd: float | None = Field(default=None, ge=0)  # per-channel cap per UTC day


class ExecutionConfig(BaseModel):
    """How the Executor runs steps."""

    model_config = _STRICT
    max_attempts: int = Field(default=3, ge=1, le=10)
    backoff_initial_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=8.0, ge=0)
    no_progress_steps: int = Field(default=3, ge=1)
    grant_ttl_s: int = Field(default=120, ge=1, le=3600)
    step_timeout_s: float = Field(default=30.0, gt=0)
    # A running step's lease: renewed every lease_s / 3 by its process; once lapsed, any
    # replica's reconciler (every reconcile_s) re-runs it (idempotent) or marks it in doubt.
    lease_s: float = Field(default=15.0, ge=1, le=600)
    reconcile_s: float = Field(default=5.0, gt=0, le=300)
    # Tool calls one process has in flight at once (steps, in-doubt checks); the next approved
    # step waits for a free slot, under its lease. A bulkhead: a burst cannot open thousands of
    # connections from one replica, and more replicas add room.
    max_concurrent_calls: int = Field(default=32, ge=1, le=10_000)


class ToolLimits(BaseModel):
    """Guards every tool gets: rate limit and circuit breaker."""

    model_config = _STRICT
    rate_per_s: float = Field(default=5.0, gt=0)
    burst: int = Field(default=5, ge=1)
    # An approved state-changing call waits this long for a slot rather than fail: it was never
    # sent, and a late restart beats a failed one (reads: rate_read_max_wait_s).
    rate_max_wait_s: float = Field(default=20.0, ge=0)
    # Read-only idempotent calls wait this long for a slot (None: the step timeout).
    rate_read_max_wait_s: float | None = Field(default=None, ge=0)
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_reset_s: float = Field(default=30.0, gt=0)
    cache_ttl_s: float = Field(default=0.0, ge=0)  # read-only results reused this long; 0 = off


class HttpAdapterConfig(HttpConfig, ToolLimits):
    """The http adapter: its own settings (``adapters.http.HttpConfig``) plus its guards."""

    allow_hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1", "localhost"])
    cost_per_call_usd: float = Field(default=0.0001, ge=0)
    cache_ttl_s: float = Field(default=15.0, ge=0)


class ShellAdapterConfig(ShellConfig, ToolLimits):
    """The shell adapter: allow-listed argv templates (``adapters.shell``) plus its guards."""

    commands: dict[str, ShellCommand] = Field(default_factory=dict)


class SqlAdapterConfig(SqlConfig, ToolLimits):
    """The sql adapter: named read-only databases (``adapters.sql``) plus its guards."""


class PagerDutyAdapterConfig(PagerDutyConfig, ToolLimits):
    """The pagerduty adapter: API key reference and From email plus its guards."""


class TicketAdapterConfig(TicketConfig, ToolLimits):
    """The ticket adapter: one backend, GitHub Issues or Jira Cloud, plus its guards."""


class PrometheusAdapterConfig(PrometheusConfig, ToolLimits):
    """The prometheus adapter: base URL and headers (``adapters.prometheus``) plus its guards."""

    cost_per_call_usd: float = Field(default=0.0001, ge=0)
    cache_ttl_s: float = Field(default=10.0, ge=0)


class AlertmanagerAdapterConfig(AlertmanagerConfig, ToolLimits):
    """The alertmanager adapter: base URL, headers, silence allow-list, plus its guards."""

    cost_per_call_usd: float = Field(default=0.0001, ge=0)
    cache_ttl_s: float = Field(default=5.0, ge=0)


class KubernetesAdapterConfig(KubernetesConfig, ToolLimits):
    """The kubernetes adapter (``adapters.kubernetes``; see docs/kubernetes.md) plus its guards."""


class AdaptersConfig(BaseModel):
    """Which adapters are on, and how."""

    model_config = _STRICT
    http: HttpAdapterConfig = Field(default_factory=HttpAdapterConfig)
    shell: ShellAdapterConfig | None = None
    sql: SqlAdapterConfig | None = None
    pagerduty: PagerDutyAdapterConfig | None = None
    ticket: TicketAdapterConfig | None = None
    prometheus: PrometheusAdapterConfig | None = None
    alertmanager: AlertmanagerAdapterConfig | None = None
    kubernetes: KubernetesAdapterConfig | None = None


class PagerDutyIntakeConfig(BaseModel):
    """``POST /alerts/pagerduty``: Webhooks V3 signed with the subscription's secret."""

    model_config = _STRICT
    webhook_secret: str  # ${secret:NAME}
    channel: str | None = None  # where its incidents open; default: slack.alert_channel

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        return require_secret_ref(value, example="PAGERDUTY_WEBHOOK_SECRET")


class IntakeConfig(BaseModel):
    """Webhooks from other systems that open and close incidents."""

    model_config = _STRICT
    pagerduty: PagerDutyIntakeConfig | None = None


class SecretsConfig(BaseModel):
    """Where ``${secret:vault:...}`` references are read (the environment and
    ``OPSGATE_SECRETS_DIR`` need no configuration)."""

    model_config = _STRICT
    vault: VaultConfig | None = None


class SlackConfig(BaseModel):
    """Slack surface settings."""

    model_config = _STRICT
    incident_channels: list[str] = Field(default_factory=list)
    ops_channel: str | None = None
    alert_channel: str | None = None  # where Alertmanager alerts open incidents
    # An incident opened by an alert group is resolved once every alert of the group has
    # resolved and its plan has finished; false: resolved alerts are only posted to the thread.
    alerts_close_incidents: bool = True
    # Accept alerts without OPSGATE_ALERT_TOKEN (logged at every start); never the default.
    allow_unauthenticated_alerts: bool = False
    channel_rate_per_s: float = Field(default=1.0, gt=0)  # Slack allows about 1 message/s/channel
    # Where people reach this opsgate over HTTP (``https://opsgate.example.com``): messages link
    # their trace id to a signed ``GET /traces/{id}`` page there. None: no trace links.
    public_url: str | None = None
    trace_link_ttl_hours: int = Field(default=7 * 24, ge=1, le=90 * 24)

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")) or any(c in value for c in ' <>|"\n'):
            raise ValueError(f"{value!r} is not an http(s) URL like https://opsgate.example.com")
        return value.rstrip("/")


def _time_of_day(value: object) -> str:
    """A ``time:`` setting as HH:MM."""
    if isinstance(value, int):  # YAML 1.1 reads an unquoted 9:05 as the number 545
        raise ValueError('quote the time of day, like time: "09:05"')
    match = _HHMM.fullmatch(str(value))
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(f"{value!r} is not a time of day like 09:00 (HH:MM)")
    return f"{int(match[1]):02d}:{match[2]}"


class DigestConfig(BaseModel):
    """The daily cost and operations digest posted to the ops channel."""

    model_config = _STRICT
    enabled: bool = True
    channel: str | None = None  # default: slack.ops_channel; no channel, no digest
    time: str = "09:00"  # local wall-clock time, HH:MM
    timezone: str = "UTC"  # IANA name, e.g. Europe/Paris
    claim_timeout_minutes: int = Field(default=10, ge=1, le=24 * 60)
    retry_minutes: int = Field(default=5, ge=1, le=24 * 60)
    misfire_grace_s: int = Field(default=3600, ge=1)
    chart: bool = True
    # Set it and the digest prices the people time of approvals (card posted -> vote).
    people_usd_per_hour: float | None = Field(default=None, ge=0)

    _hhmm = field_validator("time", mode="before")(_time_of_day)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone like Europe/Paris") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        """The configured time zone."""
        return ZoneInfo(self.timezone)

    @property
    def at(self) -> dt.time:
        """The local time of day the digest is posted."""
        return dt.time.fromisoformat(self.time)


class KnowledgeConfig(BaseModel):
    """How often each replica re-reads its knowledge files and the database's versions."""

    model_config = _STRICT
    # A change published by one replica's file scan reaches the others by their next database
    # check: at most two periods end to end, so 3 s keeps propagation well under 10 s.
    refresh_s: float = Field(default=3.0, gt=0, le=300)


class RetentionDays(BaseModel):
    """How many days each stream is kept in the database (null: forever)."""

    model_config = _STRICT
    audit: int | None = Field(default=400, ge=1)
    spans: int | None = Field(default=30, ge=1)  # replay reads them: older plans replay less
    costs: int | None = Field(default=90, ge=1)  # the digest's window and trend are 7 days
    outbox: int | None = Field(default=7, ge=1)  # delivered messages only
    inbox: int | None = Field(default=7, ge=1)  # finished requests (dedupe rows) only


class ArchiveBucket(BaseModel):
    """An S3-compatible bucket (AWS S3, MinIO, Ceph, ...) the archive files go to."""

    model_config = _STRICT
    name: str = Field(min_length=3, max_length=63)
    prefix: str = "opsgate-archive"
    endpoint_url: str | None = None  # None: AWS S3 itself
    region: str = "us-east-1"
    access_key_id: str  # ${secret:NAME}
    secret_access_key: str  # ${secret:NAME}

    @field_validator("access_key_id", "secret_access_key")
    @classmethod
    def _secret(cls, value: str) -> str:
        return require_secret_ref(value, example="ARCHIVE_SECRET_ACCESS_KEY")


class RetentionConfig(BaseModel):
    """The daily job that archives old rows as compressed JSON Lines, then deletes them."""

    model_config = _STRICT
    enabled: bool = True
    archive: Path = Path(".opsgate/archive")  # a folder (relative to the config file)
    bucket: ArchiveBucket | None = None  # with it, files go to the bucket (archive: staging)
    time: str = "03:30"  # UTC, HH:MM
    days: RetentionDays = Field(default_factory=RetentionDays)
    batch_rows: int = Field(default=1000, ge=10, le=100_000)
    pause_s: float = Field(default=0.02, ge=0, le=10)  # between batches: live work goes first
    claim_timeout_minutes: int = Field(default=60, ge=1, le=24 * 60)

    _hhmm = field_validator("time", mode="before")(_time_of_day)

    @property
    def at(self) -> dt.time:
        """The time of day the job runs (UTC)."""
        hours, minutes = self.time.split(":")
        return dt.time(int(hours), int(minutes))


class LlmConfig(BaseModel):
    """An OpenAI-compatible model endpoint for the Researcher and the LLM Planner.

    ``api_key`` is a ``${secret:NAME}`` reference (or empty for endpoints that need none); it
    is resolved when the client is built, never stored or logged.
    ``OPSGATE_LLM_BASE_URL``, ``OPSGATE_LLM_MODEL`` and ``OPSGATE_LLM_API_KEY`` override it.
    """

    model_config = _STRICT
    base_url: str = "http://127.0.0.1:11434/v1"
    model: str = "gpt-4o-mini"
    api_key: str = ""
    usd_per_1m_input: float = Field(default=0.15, ge=0)
    usd_per_1m_cached_input: float | None = Field(default=None, ge=0)  # default: the input price
    usd_per_1m_output: float = Field(default=0.60, ge=0)
    max_tokens_per_call: int = Field(default=400, ge=16, le=32000)
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_retries: int = Field(default=3, ge=0, le=10)  # on 429 / 5xx / connection errors
    backoff_initial_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=8.0, ge=0)
    researcher_max_tool_calls: int = Field(default=4, ge=0, le=50)
    researcher_max_calls: int = Field(default=4, ge=1, le=50)  # model calls per Researcher run
    agent_wall_s: float = Field(default=60.0, gt=0, le=3600)  # per agent run
    tool_output_chars: int = Field(default=1500, ge=100, le=20000)  # quoted to the model
    transcript_retention_days: int = Field(default=30, ge=1, le=3650)

    @field_validator("api_key")
    @classmethod
    def _key_is_a_reference(cls, value: str) -> str:
        """A key in the file would be a secret in the file: only a reference (or none)."""
        return require_secret_ref(value, example="OPENAI_API_KEY") if value.strip() else ""

    # Ask for token log-probabilities (where the provider returns them): their mean is kept as
    # the answer's confidence on the plan and in failure reasons, beside any stated one.
    logprobs: bool = False


class OpsgateConfig(BaseModel):
    """The whole configuration."""

    model_config = _STRICT
    mode: Mode = Mode.SUPERVISED
    runbooks: Path = Path("runbooks")
    playbooks: Path | None = None  # recovery playbooks; default: the runbooks folder's recovery/
    policies: Path | None = None
    approvers: list[str] = Field(default_factory=list)
    approver_groups: dict[str, list[str]] = Field(default_factory=dict)
    approval_ttl_minutes: int | None = Field(default=None, ge=1, le=24 * 60)  # else the pack's
    budgets: BudgetConfig = Field(default_factory=BudgetConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    adapters: AdaptersConfig = Field(default_factory=AdaptersConfig)
    secrets: SecretsConfig = Field(default_factory=SecretsConfig)
    slack: SlackConfig = Field(default_factory=SlackConfig)
    intake: IntakeConfig = Field(default_factory=IntakeConfig)
    digest: DigestConfig = Field(default_factory=DigestConfig)
    knowledge: KnowledgeConfig = Field(default_factory=KnowledgeConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    llm: LlmConfig | None = None  # without it opsgate plans from runbooks only
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)  # stages per scope
    source: str = Field(default="(built-in defaults)", exclude=True)

    @field_validator("approvers")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item or not item[0].isalpha() or not item.isalnum():
                raise ValueError(f"{item!r} is not a Slack user or user-group id (like U0123)")
        return value

    def digest_channel(self) -> str | None:
        """Where the daily digest goes: ``digest.channel``, else ``slack.ops_channel``."""
        if not self.digest.enabled:
            return None
        return self.digest.channel or self.slack.ops_channel

    def playbook_folder(self) -> Path:
        """Where recovery playbooks live: ``playbooks``, else ``<runbooks>/recovery``."""
        return self.playbooks if self.playbooks is not None else self.runbooks / "recovery"

    def llm_settings(self, environ: Mapping[str, str] | None = None) -> LlmConfig | None:
        """``llm:`` with the ``OPSGATE_LLM_*`` overrides applied; None when neither is set.

        ``OPSGATE_LLM_BASE_URL`` alone enables the agents with default settings.
        """
        env = os.environ if environ is None else environ
        overrides = {
            key: env[name]
            for key, name in (
                ("base_url", "OPSGATE_LLM_BASE_URL"),
                ("model", "OPSGATE_LLM_MODEL"),
                ("api_key", "OPSGATE_LLM_API_KEY"),
            )
            if env.get(name)
        }
        if self.llm is None and "base_url" not in overrides:
            return None
        base = self.llm if self.llm is not None else LlmConfig()
        return base.model_copy(update=overrides) if overrides else base

    def approver_ids(self) -> frozenset[str]:
        """Configured approvers with user groups expanded to their members."""
        out: set[str] = set()
        for item in self.approvers:
            out.update(self.approver_groups.get(item, [item]))
        return frozenset(out)


def config_path() -> Path | None:
    """The config file to read, or None for built-in defaults."""
    env = os.environ.get("OPSGATE_CONFIG")
    if env:
        return Path(env)
    local = Path("opsgate.yaml")
    return local if local.exists() else None


def check_config(path: Path | None = None) -> tuple[OpsgateConfig | None, list[Problem]]:
    """Load the config and return it with every problem found (file, line, what to change)."""
    path = path if path is not None else config_path()
    if path is None:
        return OpsgateConfig(), []
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [Problem(source, None, "(file)", f"cannot read: {exc.strerror}")]
    try:
        located = load_located(text, source=source)
    except YamlSyntaxError as exc:
        return None, [Problem(source, exc.line, "(syntax)", exc.message)]
    data = located.data if located.data is not None else {}
    if not isinstance(data, dict):
        return None, [Problem(source, 1, "(document)", "must be a mapping of settings")]
    try:
        config = OpsgateConfig.model_validate(data)
    except ValidationError as exc:
        return None, validation_problems(exc, located)
    base = path.parent
    updates: dict[str, Any] = {"source": source}
    if not config.runbooks.is_absolute():
        updates["runbooks"] = base / config.runbooks
    if config.policies is not None and not config.policies.is_absolute():
        updates["policies"] = base / config.policies
    if config.playbooks is not None and not config.playbooks.is_absolute():
        updates["playbooks"] = base / config.playbooks
    if not config.retention.archive.is_absolute():
        updates["retention"] = config.retention.model_copy(
            update={"archive": base / config.retention.archive}
        )
    return config.model_copy(update=updates), []


def load_config(path: Path | None = None) -> OpsgateConfig:
    """Load the config or raise ConfigError naming the first problem."""
    config, problems = check_config(path)
    if problems or config is None:
        first = problems[0]
        raise ConfigError(f"{first.where}: {first.message}", path=first.source, line=first.line)
    return config
