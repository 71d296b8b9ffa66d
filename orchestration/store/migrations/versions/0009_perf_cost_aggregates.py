"""Cost that stays flat as history grows: ``step_cost_stats`` kept by triggers; a channel's spend
read through ``ix_cost_entries_channel_at``.

Revision ID: 0009
Revises: 0008

``step_cost_stats`` holds, per tool action (and shard: the first character of the step id, so
concurrent finishes on PostgreSQL do not queue on one row), how many steps succeeded or failed
and the sum of their ``cost_usd``: what ``budgets.past_step_costs`` used to compute by scanning
every step ever run, inside the write lock. Triggers on ``steps`` keep it in the transaction that
inserts, finishes, re-costs or deletes a step, whichever code path (ORM or Core) does it.

Rollups of ``cost_entries`` for the digest were tried here and left out: with the digest's four
dimensions, a 15-minute bucket and a realistic spread of channels, runbooks and tools, the
rollup had as many rows as the raw entries (158,877 for 160,000) and made every cost insert pay
two upserts; the digest reads raw rows in grouped queries instead.

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


def create_triggers() -> None:
    """Create the triggers that keep ``step_cost_stats`` (idempotent)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute("DROP TRIGGER IF EXISTS steps_cost_stats ON steps")
        op.execute(POSTGRES_TRIGGER)
        return
    for ddl in SQLITE_TRIGGERS.values():
        op.execute(ddl)


def drop_triggers() -> None:
    """Drop the triggers (and PostgreSQL's trigger functions)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS steps_cost_stats ON steps")
        op.execute("DROP FUNCTION IF EXISTS step_cost_stats_apply()")
        return
    for name in SQLITE_TRIGGERS:
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
    create_triggers()
    if "ix_cost_entries_channel_at" not in {
        index["name"] for index in inspector.get_indexes("cost_entries")
    }:
        op.create_index("ix_cost_entries_channel_at", "cost_entries", ["channel", "at"])


def downgrade() -> None:
    """Drop the index, the triggers and the table (forecasts then scan again)."""
    op.drop_index("ix_cost_entries_channel_at", table_name="cost_entries")
    drop_triggers()
    op.drop_table("step_cost_stats")
