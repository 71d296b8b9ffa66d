"""The schema as opsgate created it before migrations existed (``create_all`` at 27c05ea).

Revision ID: 0001
Revises:

``slack_refs`` is declared by the Slack surface (``bot/refs.py``) but lives in this database
like every other table, so the migrations own it too. A database from before migrations may
lack some tables (``create_all`` made only the tables whose models the process had imported:
``opsgate plan`` never made ``slack_refs``), so each table is created only when missing.
The tables are spelled out here, frozen, not imported from the models, which move on.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _first_release() -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table(
        "approvals",
        metadata,
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("nonce", sa.String(), nullable=False),
        sa.Column("purpose", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("plan_id", sa.String(), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(), nullable=True),
        sa.Column("args_hash", sa.String(), nullable=False),
        sa.Column("quorum", sa.Integer(), nullable=False),
        sa.Column("exclude_requester", sa.Boolean(), nullable=False),
        sa.Column("requester", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("nonce"),
        sa.Index("ix_approvals_expires_at", "expires_at"),
        sa.Index("ix_approvals_incident_id", "incident_id"),
        sa.Index("ix_approvals_plan_id", "plan_id"),
        sa.Index("ix_approvals_state", "state"),
        sa.Index("ix_approvals_step_id", "step_id"),
    )
    sa.Table(
        "audit_events",
        metadata,
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("correlation_id", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=True),
        sa.Column("plan_id", sa.String(), nullable=True),
        sa.Column("step_id", sa.String(), nullable=True),
        sa.Column("nonce", sa.String(), nullable=True),
        sa.Column("code", sa.String(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_audit_events_at", "at"),
        sa.Index("ix_audit_events_correlation_id", "correlation_id"),
        sa.Index("ix_audit_events_event", "event"),
        sa.Index("ix_audit_plan", "plan_id", "id"),
    )
    sa.Table(
        "cache_counters",
        metadata,
        sa.Column("day", sa.String(), nullable=False),
        sa.Column("tool_action", sa.String(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("misses", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "tool_action"),
    )
    sa.Table(
        "cache_entries",
        metadata,
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("tool_action", sa.String(), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
        sa.Index("ix_cache_entries_expires_at", "expires_at"),
        sa.Index("ix_cache_entries_tool_action", "tool_action"),
    )
    sa.Table(
        "cost_entries",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=True),
        sa.Column("plan_id", sa.String(), nullable=False),
        sa.Column("step_id", sa.String(), nullable=True),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("tool", sa.String(), nullable=False),
        sa.Column("runbook_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("usd", sa.Float(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_cost_entries_at", "at"),
        sa.Index("ix_cost_entries_plan_id", "plan_id"),
    )
    sa.Table(
        "digest_runs",
        metadata,
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("day", sa.String(), nullable=False),
        sa.Column("claimed_by", sa.String(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("channel", "day"),
    )
    sa.Table(
        "grants",
        metadata,
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("step_id", sa.String(), nullable=False),
        sa.Column("tool", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("args_hash", sa.String(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_grants_step_id", "step_id"),
    )
    sa.Table(
        "incidents",
        metadata,
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("requester", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("thread_ts", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("correlation_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_incidents_status", "status"),
    )
    sa.Table(
        "knowledge",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "key", "version"),
    )
    sa.Table(
        "outbox",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=True),
        sa.Column("plan_id", sa.String(), nullable=True),
        sa.Column("step_id", sa.String(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_outbox_pending", "delivered_at", "id"),
    )
    sa.Table(
        "outbox_leases",
        metadata,
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel"),
    )
    sa.Table(
        "plans",
        metadata,
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("runbook_id", sa.String(), nullable=False),
        sa.Column("runbook_version", sa.Integer(), nullable=False),
        sa.Column("knowledge_pins", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("plan_hash", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("status_reason", sa.String(), nullable=False),
        sa.Column("mode", sa.String(), nullable=False),
        sa.Column("requester", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("budget_usd", sa.Float(), nullable=False),
        sa.Column("budget_tokens", sa.Integer(), nullable=False),
        sa.Column("soft_ratio", sa.Float(), nullable=False),
        sa.Column("soft_acknowledged", sa.Boolean(), nullable=False),
        sa.Column("spent_usd", sa.Float(), nullable=False),
        sa.Column("spent_tokens", sa.Integer(), nullable=False),
        sa.Column("forecast_usd", sa.Float(), nullable=False),
        sa.Column("denials", sa.Integer(), nullable=False),
        sa.Column("no_progress", sa.Integer(), nullable=False),
        sa.Column("correlation_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("incident_id", "version"),
        sa.Index("ix_plans_incident_id", "incident_id"),
        sa.Index("ix_plans_status", "status"),
    )
    sa.Table(
        "processed_requests",
        metadata,
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
        sa.Index("ix_processed_requests_at", "at"),
    )
    sa.Table(
        "schema_info",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    sa.Table(
        "slack_refs",
        metadata,
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("ts", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    sa.Table(
        "spans",
        metadata,
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("trace_id", sa.String(), nullable=False),
        sa.Column("parent_id", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("plan_id", sa.String(), nullable=True),
        sa.Column("step_id", sa.String(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_spans_plan_id", "plan_id"),
        sa.Index("ix_spans_trace_id", "trace_id"),
    )
    sa.Table(
        "steps",
        metadata,
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("plan_id", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("tool_action", sa.String(), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("args_hash", sa.String(), nullable=False),
        sa.Column("declared_risk", sa.String(), nullable=False),
        sa.Column("risk", sa.String(), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("idempotent", sa.Boolean(), nullable=False),
        sa.Column("expect", sa.JSON(), nullable=True),
        sa.Column("compensate", sa.JSON(), nullable=True),
        sa.Column("compensates_step", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("decision_code", sa.String(), nullable=False),
        sa.Column("decision_reason", sa.String(), nullable=False),
        sa.Column("quorum", sa.Integer(), nullable=False),
        sa.Column("exclude_requester", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error_code", sa.String(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("estimate_usd", sa.Float(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("plan_id", "position"),
        sa.Index("ix_steps_plan_id", "plan_id"),
    )
    sa.Table(
        "task_memory",
        metadata,
        sa.Column("plan_id", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("plan_id", "key"),
    )
    sa.Table(
        "votes",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("approval_id", sa.String(), nullable=False),
        sa.Column("voter", sa.String(), nullable=False),
        sa.Column("choice", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("approval_id", "voter"),
        sa.Index("ix_votes_approval_id", "approval_id"),
    )
    return metadata


def upgrade() -> None:
    """Create every table of the first release that the database does not hold yet."""
    bind = op.get_bind()
    existing = set(sa.inspect(bind).get_table_names())
    for table in _first_release().sorted_tables:
        if table.name not in existing:
            table.create(bind)


def downgrade() -> None:
    """Drop every table of the first release."""
    _first_release().drop_all(op.get_bind())
