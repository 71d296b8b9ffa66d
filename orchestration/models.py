"""SQLModel tables: the whole durable state of opsgate.

Every timestamp is timezone-aware UTC. JSON columns hold sanitised, JSON-serialisable data only.
No column holds a credential: JSON columns and free-text columns redact what is bound to them
(``RedactedJSON``, ``RedactedText``, through :mod:`common.redaction`), whichever code writes the
row; the JSON columns marked ``sanitised`` are redacted by their one writer (``records``, inbox).
A change here comes with a revision in ``orchestration/store/migrations/versions/``.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    TypeDecorator,
    UniqueConstraint,
)
from sqlmodel import AutoString, Field, SQLModel

from common.redaction import redact, redact_text


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store in UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class RedactedJSON(TypeDecorator[Any]):
    """JSON whose credentials are redacted on the way in, whoever writes it (ORM or Core)."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Store a redacted, JSON-safe copy."""
        return None if value is None else redact(value)


class RedactedText(TypeDecorator[str]):
    """Free text (reasons, errors, incident text) whose credentials are redacted on the way in."""

    impl = AutoString
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        """Store the redacted text."""
        return None if value is None else redact_text(value)


def _text(default: str | None = "") -> Any:
    return Field(default=default, sa_type=RedactedText)


def _ts(*, nullable: bool = False, index: bool = False, primary_key: bool = False) -> Any:
    column: Column[datetime] = Column(
        UTCDateTime(), nullable=nullable, index=index, primary_key=primary_key
    )
    return Field(default=None, sa_column=column)


def _json(default: Any = None, *, sanitised: bool = False) -> Any:
    # ``sanitised``: every writer already passes the value through ``telemetry.sanitise``
    # (audit details, spans, outbox payloads, inbox requests), so a second pass is saved.
    kind: Any = JSON if sanitised else RedactedJSON
    if default is None:
        return Field(default=None, sa_column=Column(kind, nullable=True))
    return Field(default_factory=default, sa_column=Column(kind, nullable=False))


class Incident(SQLModel, table=True):
    """An incident opened from Slack or an alert."""

    __tablename__ = "incidents"
    id: str = Field(primary_key=True)
    text: str = _text()
    requester: str
    channel: str = ""
    thread_ts: str | None = None
    status: str = Field(index=True)
    source: str = "slack"
    # The external incident this one mirrors (``pagerduty:<id>``): its resolution closes it.
    external_ref: str | None = Field(default=None, index=True)
    correlation_id: str
    created_at: datetime = _ts()
    resolved_at: datetime | None = _ts(nullable=True)


class Plan(SQLModel, table=True):
    """One version of an incident's plan; a new version is a new row."""

    __tablename__ = "plans"
    __table_args__ = (UniqueConstraint("incident_id", "version"),)
    id: str = Field(primary_key=True)
    incident_id: str = Field(index=True)
    version: int
    runbook_id: str
    runbook_version: int
    knowledge_pins: dict[str, int] = _json(dict)
    params: dict[str, str] = _json(dict)
    plan_hash: str
    status: str = Field(index=True)
    status_reason: str = _text()
    mode: str
    requester: str
    channel: str = ""
    budget_usd: float
    budget_tokens: int
    soft_ratio: float = 0.8
    soft_acknowledged: bool = False
    spent_usd: float = 0.0
    spent_tokens: int = 0
    forecast_usd: float = 0.0
    denials: int = 0
    no_progress: int = 0
    correlation_id: str
    created_at: datetime = _ts()
    finished_at: datetime | None = _ts(nullable=True)


class Step(SQLModel, table=True):
    """A step of a plan: what to call, how risky, what to expect, how to undo."""

    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("plan_id", "position"),)
    id: str = Field(primary_key=True)
    plan_id: str = Field(index=True)
    position: int
    key: str
    kind: str = "runbook"
    title: str = _text()
    tool_action: str
    args: dict[str, Any] = _json(dict)
    args_hash: str
    declared_risk: str
    risk: str
    read_only: bool
    idempotent: bool
    expect: dict[str, Any] | None = _json()
    compensate: dict[str, Any] | None = _json()
    compensates_step: str | None = None
    status: str
    decision_code: str = ""
    decision_reason: str = _text()
    quorum: int = 0
    exclude_requester: bool = False
    attempts: int = 0
    result: dict[str, Any] | None = _json()
    error_code: str | None = None
    error: str | None = _text(None)
    estimate_usd: float = 0.0
    cost_usd: float = 0.0
    tokens: int = 0
    duration_ms: float = 0.0
    started_at: datetime | None = _ts(nullable=True)
    finished_at: datetime | None = _ts(nullable=True)
    # A running step is held under a lease its process renews; a lapsed lease hands the step
    # to the reconciler (re-run if idempotent, else in doubt).
    lease_owner: str | None = None
    lease_until: datetime | None = _ts(nullable=True, index=True)
    # The runbook's read-only probe that tells whether an in-doubt step took effect.
    in_doubt_check: dict[str, Any] | None = _json()
    # A probe's ``healthy`` expectation and ``end_if`` (orchestration.observe), and once it
    # answered, what it saw: ``seen`` (healthy or unhealthy), ``why``, ``status``, ``exit_code``.
    observe: dict[str, Any] | None = _json()
    # The id of this step's canary (a ``canary`` step before it that must pass first).
    canary_step: str | None = None
    # The rollout stage the step was planned under (``rollout.StageChoice``): stage, scope,
    # tool class, why, and for gated scopes the highest risk that runs alone.
    rollout: dict[str, Any] | None = _json()


class Approval(SQLModel, table=True):
    """A single-use, nonce-tagged approval record bound to one plan version and exact args."""

    __tablename__ = "approvals"
    id: str = Field(primary_key=True)
    nonce: str = Field(unique=True)
    purpose: str = "step"
    incident_id: str = Field(index=True)
    plan_id: str = Field(index=True)
    plan_version: int
    step_id: str | None = Field(default=None, index=True)
    args_hash: str
    quorum: int
    exclude_requester: bool
    requester: str
    state: str = Field(index=True)
    reason: str = _text()
    created_at: datetime = _ts()
    expires_at: datetime = _ts(index=True)
    decided_at: datetime | None = _ts(nullable=True)
    decided_by: str | None = None


class Vote(SQLModel, table=True):
    """A counted vote: one per distinct voter and approval."""

    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("approval_id", "voter"),)
    id: int | None = Field(default=None, primary_key=True)
    approval_id: str = Field(index=True)
    voter: str
    choice: str
    reason: str = _text()
    created_at: datetime = _ts()


class Grant(SQLModel, table=True):
    """A short-lived credential scoped to one tool action and args hash."""

    __tablename__ = "grants"
    id: str = Field(primary_key=True)
    step_id: str = Field(index=True)
    tool: str
    action: str
    args_hash: str
    issued_at: datetime = _ts()
    expires_at: datetime = _ts()
    signature: str


class AuditEvent(SQLModel, table=True):
    """Who did what, when, under which correlation id: append-only."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_plan", "plan_id", "id"),)
    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    at: datetime = _ts(index=True)
    event: str = Field(index=True)
    actor: str
    role: str
    correlation_id: str = Field(index=True)
    incident_id: str | None = None
    plan_id: str | None = None
    step_id: str | None = None
    nonce: str | None = None
    code: str | None = None
    detail: dict[str, Any] = _json(dict, sanitised=True)


class Span(SQLModel, table=True):
    """One span of a trace: plan, step or tool call, with sanitised inputs and outputs."""

    __tablename__ = "spans"
    __table_args__ = (Index("ix_spans_started_at", "started_at"),)  # retention ages them out
    id: str = Field(primary_key=True)
    trace_id: str = Field(index=True)
    parent_id: str | None = None
    kind: str
    name: str
    plan_id: str | None = Field(default=None, index=True)
    step_id: str | None = None
    started_at: datetime = _ts()
    ended_at: datetime | None = _ts(nullable=True)
    duration_ms: float = 0.0
    status: str = "ok"
    attributes: dict[str, Any] = _json(dict, sanitised=True)


class CostEntry(SQLModel, table=True):
    """A cost delta of one tool call, with the dimensions it is aggregated by."""

    __tablename__ = "cost_entries"
    __table_args__ = (
        # A channel's spend today (budgets) and a channel's share of a digest window.
        Index("ix_cost_entries_channel_at", "channel", "at"),
        # A window's spend by dimension and by plan (the digest, /metrics) read from the index
        # alone: on SQLite, reading each row of a million-row day from the table costs seconds.
        Index(
            "ix_cost_entries_at_spend",
            "at",
            "role",
            "tool",
            "runbook_id",
            "channel",
            "plan_id",
            "usd",
            "tokens",
        ),
        # A plan's entries, and the spend of a cohort of plans, from the index alone.
        Index("ix_cost_entries_plan_spend", "plan_id", "usd"),
    )
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    incident_id: str | None = None
    plan_id: str
    step_id: str | None = None
    role: str
    tool: str
    runbook_id: str
    channel: str = ""
    usd: float
    tokens: int = 0
    duration_ms: float = 0.0


class Knowledge(SQLModel, table=True):
    """A version of one durable document (runbook, fact, config); a change is a new version."""

    __tablename__ = "knowledge"
    __table_args__ = (UniqueConstraint("kind", "key", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    kind: str
    key: str
    version: int
    content_hash: str
    body: dict[str, Any] = _json(dict)
    source: str = ""
    created_at: datetime = _ts()


class CacheEntry(SQLModel, table=True):
    """A cached read-only tool result."""

    __tablename__ = "cache_entries"
    key: str = Field(primary_key=True)
    tool_action: str = Field(index=True)
    value: dict[str, Any] = _json(dict)
    expires_at: datetime = _ts(index=True)


class OutboxMessage(SQLModel, table=True):
    """A message for the chat surface, not yet delivered; delivered in id order per channel."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "delivered_at", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    kind: str
    channel: str = ""
    incident_id: str | None = None
    plan_id: str | None = None
    step_id: str | None = None
    payload: dict[str, Any] = _json(dict, sanitised=True)
    created_at: datetime = _ts()
    attempts: int = 0
    next_attempt_at: datetime | None = _ts(nullable=True)
    delivered_at: datetime | None = _ts(nullable=True)
    last_error: str | None = _text(None)


class TaskMemory(SQLModel, table=True):
    """Short-term memory of one plan execution; pruned when the plan ends."""

    __tablename__ = "task_memory"
    plan_id: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    value: dict[str, Any] = _json(dict)
    updated_at: datetime = _ts()


class CacheCounter(SQLModel, table=True):
    """Cache hits and misses of one read-only tool action on one UTC day."""

    __tablename__ = "cache_counters"
    day: str = Field(primary_key=True)  # YYYY-MM-DD (UTC)
    tool_action: str = Field(primary_key=True)
    hits: int = 0
    misses: int = 0


class StepCostStat(SQLModel, table=True):
    """Finished steps of one tool action and what they cost: the forecasts' history.

    Maintained by database triggers on ``steps`` (migration 0009) in the transaction that
    finishes, changes or deletes a step, so a forecast reads a few rows instead of scanning
    every step ever run. ``shard`` (the first character of the step id) spreads concurrent
    finishes of the same tool action over several rows, so no single row is hot.
    """

    __tablename__ = "step_cost_stats"
    tool_action: str = Field(primary_key=True)
    shard: str = Field(primary_key=True)
    finished: int = 0  # steps that succeeded or failed
    total_usd: float = 0.0  # the sum of their cost_usd


class DigestRun(SQLModel, table=True):
    """One daily digest per channel and day: the row is the claim that makes it exactly-once."""

    __tablename__ = "digest_runs"
    channel: str = Field(primary_key=True)
    day: str = Field(primary_key=True)  # the day the digest reports on (YYYY-MM-DD, local tz)
    claimed_by: str
    claimed_at: datetime = _ts()
    posted_at: datetime | None = _ts(nullable=True)
    error: str | None = _text(None)


class OutboxLease(SQLModel, table=True):
    """Which relay delivers a channel's messages right now (one at a time keeps the order)."""

    __tablename__ = "outbox_leases"
    channel: str = Field(primary_key=True)
    holder: str
    until: datetime = _ts()


class InboxItem(SQLModel, table=True):
    """A request recorded before its 2xx went out; its work is resumed after a crash.

    ``owner`` holds it under ``lease_until`` while it is worked on; ``done_at`` is set in the
    same commit as the work's effect.
    """

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_pending", "done_at", "lease_until"),)
    key: str = Field(primary_key=True)
    kind: str
    payload: dict[str, Any] = _json(dict, sanitised=True)
    received_at: datetime = _ts()
    owner: str | None = None
    lease_until: datetime | None = _ts(nullable=True)
    attempts: int = 0
    done_at: datetime | None = _ts(nullable=True)
    last_error: str | None = _text(None)


class BreakerState(SQLModel, table=True):
    """A circuit breaker of one tool and target host, shared by every replica."""

    __tablename__ = "breakers"
    key: str = Field(primary_key=True)  # "<tool>:<host>"
    state: str = "closed"
    failures: int = 0
    opened_at: datetime | None = _ts(nullable=True)
    probe_until: datetime | None = _ts(nullable=True)  # a half-open probe is in flight
    updated_at: datetime = _ts()


class AlertGroup(SQLModel, table=True):
    """The alerts of one Alertmanager group while its incident is open (one row per incident).

    ``group_key`` is a hash of the webhook's ``groupKey``; ``alerts`` maps each alert's
    fingerprint to its last known ``status``, name and start. A group whose incident closed
    opens a new incident (and row) when it fires again.
    """

    __tablename__ = "alert_groups"
    incident_id: str = Field(primary_key=True)
    group_key: str = Field(index=True)
    channel: str = ""
    alerts: dict[str, Any] = _json(dict)
    updated_at: datetime = _ts()


class Transcript(SQLModel, table=True):
    """One agent run's prompts and completions, gzip-compressed JSON (redacted before).

    Kept until ``expires_at`` (``llm.transcript_retention_days``); never posted to Slack.
    """

    __tablename__ = "transcripts"
    id: str = Field(primary_key=True)
    plan_id: str = Field(index=True)
    incident_id: str | None = None
    role: str
    model: str
    calls: int = 0
    tokens: int = 0
    created_at: datetime = _ts()
    expires_at: datetime = _ts(index=True)
    body: bytes = Field(sa_column=Column(LargeBinary(), nullable=False))


class RolloutStage(SQLModel, table=True):
    """The stage a rollout scope is in now, since when, and who or what moved it there."""

    __tablename__ = "rollout_stages"
    scope: str = Field(primary_key=True)
    stage: str
    # The stage opsgate.yaml gave the scope when this row was written: an edit to the file
    # (a different stage there) starts the scope over in the edited stage.
    config_stage: str
    since: datetime = _ts()
    changed_by: str = "opsgate"
    reason: str = _text()


class HumanAction(SQLModel, table=True):
    """What a person did about an incident: the baseline shadow proposals are measured against.

    ``kind``: ``took`` (a proposed step, ``step_key``), ``other`` (a change opsgate did not
    propose, ``text``), ``no_action`` (the alert resolved and nobody recorded anything) or
    ``answered`` (the resolver answered the baseline card: what was not ticked was not done).
    """

    __tablename__ = "human_actions"
    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(index=True)
    at: datetime = _ts(index=True)
    actor: str
    kind: str
    step_key: str | None = None
    text: str = _text()
    source: str  # card, did, alert


class Promotion(SQLModel, table=True):
    """A request to move a rollout scope one stage up: an approval with its own quorum."""

    __tablename__ = "rollout_promotions"
    id: str = Field(primary_key=True)
    nonce: str = Field(unique=True)
    scope: str = Field(index=True)
    from_stage: str
    to_stage: str
    requester: str
    channel: str = ""
    quorum: int
    override_reason: str = _text()
    unmet: list[str] = _json(list)  # the exit criteria unmet when it was asked
    votes: list[dict[str, Any]] = _json(list)  # [{voter, choice, at}]
    state: str = Field(index=True)  # open, approved, rejected, refused, expired
    reason: str = _text()
    correlation_id: str
    created_at: datetime = _ts()
    expires_at: datetime = _ts()
    decided_at: datetime | None = _ts(nullable=True)


class ModelCall(SQLModel, table=True):
    """One model call the agents meant to make, and its outcome (``CallOutcome``).

    Its tokens and USD are cost entries; this row counts the calls, including those never made
    (a budget stop) or never answered. Pruned with the transcripts.
    """

    __tablename__ = "model_calls"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(index=True)
    plan_id: str
    incident_id: str | None = None
    channel: str = ""
    role: str
    model: str
    outcome: str
    attempts: int = 0
