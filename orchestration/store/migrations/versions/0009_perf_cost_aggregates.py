"""Cost that stays flat as history grows: ``step_cost_stats`` kept by triggers; a channel's spend
read through ``ix_cost_entries_channel_at``; the digest's spend read from 15-minute rollups.

Revision ID: 0009
Revises: 0008

``step_cost_stats`` holds, per tool action (and shard: the first character of the step id, so
concurrent finishes on PostgreSQL do not queue on one row), how many steps succeeded or failed
and the sum of their ``cost_usd``: what ``budgets.past_step_costs`` used to compute by scanning
every step ever run, inside the write lock. Triggers on ``steps`` keep it in the transaction that
inserts, finishes, re-costs or deletes a step, whichever code path (ORM or Core) does it.

``cost_rollups`` (per 15-minute UTC bucket, role, tool, runbook, channel and shard) and
``plan_cost_rollups`` (per plan and bucket) are kept the same way by triggers on
``cost_entries``: a digest over a day with a million cost rows reads a few thousand rollup rows.

SQLite caveat for later revisions: ``op.batch_alter_table("steps")`` may rebuild the table
(drop columns, change types), and SQLite drops a table's triggers with it. A revision that
rebuilds ``steps`` or ``cost_entries`` must call :func:`create_triggers` again (import it from
this module); ``tests/orchestration/test_cost_stats.py`` fails at head when one is missing.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

# The statuses a forecast learns from (StepStatus.SUCCEEDED, FAILED) are spelled out in the SQL.

_SQLITE_ADD = """
    INSERT INTO step_cost_stats (tool_action, shard, finished, total_usd)
    SELECT NEW.tool_action, substr(NEW.id, 1, 1), 1, NEW.cost_usd
    WHERE NEW.status IN ('succeeded', 'failed')
    ON CONFLICT (tool_action, shard) DO UPDATE
    SET finished = finished + 1, total_usd = total_usd + excluded.total_usd;
"""
_SQLITE_SUB = """
    UPDATE step_cost_stats
    SET finished = finished - 1,
        total_usd = CASE WHEN finished = 1 THEN 0.0 ELSE total_usd - OLD.cost_usd END
    WHERE tool_action = OLD.tool_action AND shard = substr(OLD.id, 1, 1)
      AND OLD.status IN ('succeeded', 'failed');
"""
SQLITE_TRIGGERS = {
    "steps_cost_stats_insert": """
        CREATE TRIGGER IF NOT EXISTS steps_cost_stats_insert AFTER INSERT ON steps
        WHEN NEW.status IN ('succeeded', 'failed')
        BEGIN"""
    + _SQLITE_ADD
    + "END",
    "steps_cost_stats_update": """
        CREATE TRIGGER IF NOT EXISTS steps_cost_stats_update
        AFTER UPDATE OF status, cost_usd, tool_action ON steps
        WHEN (OLD.status IN ('succeeded', 'failed') OR NEW.status IN ('succeeded', 'failed'))
          AND (OLD.status IS NOT NEW.status OR OLD.cost_usd IS NOT NEW.cost_usd
               OR OLD.tool_action IS NOT NEW.tool_action)
        BEGIN"""
    + _SQLITE_SUB
    + _SQLITE_ADD
    + "END",
    "steps_cost_stats_delete": """
        CREATE TRIGGER IF NOT EXISTS steps_cost_stats_delete AFTER DELETE ON steps
        WHEN OLD.status IN ('succeeded', 'failed')
        BEGIN"""
    + _SQLITE_SUB
    + "END",
}

POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION step_cost_stats_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.status IS NOT DISTINCT FROM NEW.status
       AND OLD.cost_usd IS NOT DISTINCT FROM NEW.cost_usd
       AND OLD.tool_action IS NOT DISTINCT FROM NEW.tool_action THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status IN ('succeeded', 'failed') THEN
        UPDATE step_cost_stats
        SET finished = finished - 1,
            total_usd = CASE WHEN finished = 1 THEN 0.0 ELSE total_usd - OLD.cost_usd END
        WHERE tool_action = OLD.tool_action AND shard = substr(OLD.id, 1, 1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status IN ('succeeded', 'failed') THEN
        INSERT INTO step_cost_stats (tool_action, shard, finished, total_usd)
        VALUES (NEW.tool_action, substr(NEW.id, 1, 1), 1, NEW.cost_usd)
        ON CONFLICT (tool_action, shard) DO UPDATE
        SET finished = step_cost_stats.finished + 1,
            total_usd = step_cost_stats.total_usd + EXCLUDED.total_usd;
    END IF;
    RETURN NULL;
END
$$
"""
POSTGRES_TRIGGER = """
CREATE TRIGGER steps_cost_stats
AFTER INSERT OR DELETE OR UPDATE OF status, cost_usd, tool_action ON steps
FOR EACH ROW EXECUTE FUNCTION step_cost_stats_apply()
"""

# 15-minute buckets: SQLite stores UTC timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' (the text
# SQLAlchemy binds, so bucket bounds compare as text); PostgreSQL bins timestamptz.
_SQLITE_BUCKET = (
    "substr({at}, 1, 14) || printf('%02d', (CAST(substr({at}, 15, 2) AS INTEGER) / 15) * 15)"
    " || char(58) || '00.000000'"  # char(58) is ':'; a literal ':00' reads as a bind parameter
)
_PG_BUCKET = "date_bin('15 minutes', {at}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
_ROLLUP_KEY = "bucket, role, tool, runbook_id, channel, shard"


def _rollup_add(bucket: str, row: str, excluded: str) -> str:
    """Upserts of one cost row (``row``: NEW) into both rollups."""
    b = bucket.format(at=f"{row}.at")
    return (
        "INSERT INTO cost_rollups (" + _ROLLUP_KEY + ", usd, tokens, entries) "
        f"VALUES ({b}, {row}.role, {row}.tool, {row}.runbook_id, {row}.channel, {row}.id % 4, "
        f"{row}.usd, {row}.tokens, 1) "
        "ON CONFLICT (" + _ROLLUP_KEY + ") DO UPDATE SET "
        f"usd = cost_rollups.usd + {excluded}.usd, "
        f"tokens = cost_rollups.tokens + {excluded}.tokens, "
        "entries = cost_rollups.entries + 1; "
        "INSERT INTO plan_cost_rollups (plan_id, bucket, usd, tokens, entries) "
        f"VALUES ({row}.plan_id, {b}, {row}.usd, {row}.tokens, 1) "
        "ON CONFLICT (plan_id, bucket) DO UPDATE SET "
        f"usd = plan_cost_rollups.usd + {excluded}.usd, "
        f"tokens = plan_cost_rollups.tokens + {excluded}.tokens, "
        "entries = plan_cost_rollups.entries + 1; "
    )


def _rollup_sub(bucket: str, row: str) -> str:
    """Updates that take one cost row (``row``: OLD) out of both rollups."""
    b = bucket.format(at=f"{row}.at")
    return (
        "UPDATE cost_rollups SET entries = entries - 1, "
        f"usd = CASE WHEN entries = 1 THEN 0.0 ELSE usd - {row}.usd END, "
        f"tokens = tokens - {row}.tokens "
        f"WHERE bucket = {b} AND role = {row}.role AND tool = {row}.tool "
        f"AND runbook_id = {row}.runbook_id AND channel = {row}.channel "
        f"AND shard = {row}.id % 4; "
        "UPDATE plan_cost_rollups SET entries = entries - 1, "
        f"usd = CASE WHEN entries = 1 THEN 0.0 ELSE usd - {row}.usd END, "
        f"tokens = tokens - {row}.tokens "
        f"WHERE plan_id = {row}.plan_id AND bucket = {b}; "
    )


SQLITE_ROLLUP_TRIGGERS = {
    "cost_rollups_insert": "CREATE TRIGGER IF NOT EXISTS cost_rollups_insert "
    "AFTER INSERT ON cost_entries BEGIN " + _rollup_add(_SQLITE_BUCKET, "NEW", "excluded") + "END",
    "cost_rollups_update": "CREATE TRIGGER IF NOT EXISTS cost_rollups_update "
    "AFTER UPDATE ON cost_entries BEGIN "
    + _rollup_sub(_SQLITE_BUCKET, "OLD")
    + _rollup_add(_SQLITE_BUCKET, "NEW", "excluded")
    + "END",
    "cost_rollups_delete": "CREATE TRIGGER IF NOT EXISTS cost_rollups_delete "
    "AFTER DELETE ON cost_entries BEGIN " + _rollup_sub(_SQLITE_BUCKET, "OLD") + "END",
}
POSTGRES_ROLLUP_FUNCTION = (
    "CREATE OR REPLACE FUNCTION cost_rollups_apply() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN "
    "IF TG_OP IN ('UPDATE', 'DELETE') THEN " + _rollup_sub(_PG_BUCKET, "OLD") + "END IF; "
    "IF TG_OP IN ('INSERT', 'UPDATE') THEN "
    + _rollup_add(_PG_BUCKET, "NEW", "EXCLUDED")
    + "END IF; "
    "RETURN NULL; "
    "END $$"
)
POSTGRES_ROLLUP_TRIGGER = (
    "CREATE TRIGGER cost_rollups AFTER INSERT OR UPDATE OR DELETE ON cost_entries "
    "FOR EACH ROW EXECUTE FUNCTION cost_rollups_apply()"
)


def create_triggers() -> None:
    """Create the triggers that keep ``step_cost_stats`` and the cost rollups (idempotent)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute("DROP TRIGGER IF EXISTS steps_cost_stats ON steps")
        op.execute(POSTGRES_TRIGGER)
        op.execute(POSTGRES_ROLLUP_FUNCTION)
        op.execute("DROP TRIGGER IF EXISTS cost_rollups ON cost_entries")
        op.execute(POSTGRES_ROLLUP_TRIGGER)
        return
    for ddl in (*SQLITE_TRIGGERS.values(), *SQLITE_ROLLUP_TRIGGERS.values()):
        op.execute(ddl)


def drop_triggers() -> None:
    """Drop the triggers (and PostgreSQL's trigger functions)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS steps_cost_stats ON steps")
        op.execute("DROP FUNCTION IF EXISTS step_cost_stats_apply()")
        op.execute("DROP TRIGGER IF EXISTS cost_rollups ON cost_entries")
        op.execute("DROP FUNCTION IF EXISTS cost_rollups_apply()")
        return
    for name in (*SQLITE_TRIGGERS, *SQLITE_ROLLUP_TRIGGERS):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")


def upgrade() -> None:
    """Create the table, fill it from the steps already finished, then keep it by triggers.

    The migration runs under the migration lock in one transaction, so no step changes
    between the fill and the triggers.
    """
    inspector = sa.inspect(op.get_bind())
    if "step_cost_stats" in inspector.get_table_names():
        # A schema created from the models (an adopted database) has the table, but empty.
        op.execute("DELETE FROM step_cost_stats")
    else:
        op.create_table(
            "step_cost_stats",
            sa.Column("tool_action", sa.String(), nullable=False),
            sa.Column("shard", sa.String(), nullable=False),
            sa.Column("finished", sa.Integer(), nullable=False),
            sa.Column("total_usd", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("tool_action", "shard"),
        )
    op.execute(
        "INSERT INTO step_cost_stats (tool_action, shard, finished, total_usd) "
        "SELECT tool_action, substr(id, 1, 1), count(*), sum(cost_usd) FROM steps "
        "WHERE status IN ('succeeded', 'failed') GROUP BY tool_action, substr(id, 1, 1)"
    )
    _create_rollups(inspector)
    create_triggers()
    if "ix_cost_entries_channel_at" not in {
        index["name"] for index in inspector.get_indexes("cost_entries")
    }:
        op.create_index("ix_cost_entries_channel_at", "cost_entries", ["channel", "at"])


def _create_rollups(inspector: sa.Inspector) -> None:
    """Create the rollup tables (an adopted schema may have them, empty) and fill them."""
    existing = set(inspector.get_table_names())
    if "cost_rollups" in existing:
        op.execute("DELETE FROM cost_rollups")
    else:
        op.create_table(
            "cost_rollups",
            sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
            sa.Column("role", sa.String(), nullable=False),
            sa.Column("tool", sa.String(), nullable=False),
            sa.Column("runbook_id", sa.String(), nullable=False),
            sa.Column("channel", sa.String(), nullable=False),
            sa.Column("shard", sa.Integer(), nullable=False),
            sa.Column("usd", sa.Float(), nullable=False),
            sa.Column("tokens", sa.Integer(), nullable=False),
            sa.Column("entries", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("bucket", "role", "tool", "runbook_id", "channel", "shard"),
        )
    if "plan_cost_rollups" in existing:
        op.execute("DELETE FROM plan_cost_rollups")
    else:
        op.create_table(
            "plan_cost_rollups",
            sa.Column("plan_id", sa.String(), nullable=False),
            sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
            sa.Column("usd", sa.Float(), nullable=False),
            sa.Column("tokens", sa.Integer(), nullable=False),
            sa.Column("entries", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("plan_id", "bucket"),
        )
        op.create_index("ix_plan_cost_rollups_bucket", "plan_cost_rollups", ["bucket"])
    dialect = op.get_bind().dialect.name
    bucket = (_PG_BUCKET if dialect == "postgresql" else _SQLITE_BUCKET).format(at="at")
    op.execute(
        "INSERT INTO cost_rollups (" + _ROLLUP_KEY + ", usd, tokens, entries) "
        "SELECT " + bucket + ", role, tool, runbook_id, channel, id % 4, sum(usd), sum(tokens), "
        "count(*) FROM cost_entries GROUP BY 1, 2, 3, 4, 5, 6"
    )
    op.execute(
        "INSERT INTO plan_cost_rollups (plan_id, bucket, usd, tokens, entries) "
        "SELECT plan_id, " + bucket + ", sum(usd), sum(tokens), count(*) FROM cost_entries "
        "GROUP BY 1, 2"
    )


def downgrade() -> None:
    """Drop the index, the triggers and the tables (forecasts and digests then scan again)."""
    op.drop_index("ix_cost_entries_channel_at", table_name="cost_entries")
    drop_triggers()
    op.drop_index("ix_plan_cost_rollups_bucket", table_name="plan_cost_rollups")
    op.drop_table("plan_cost_rollups")
    op.drop_table("cost_rollups")
    op.drop_table("step_cost_stats")
