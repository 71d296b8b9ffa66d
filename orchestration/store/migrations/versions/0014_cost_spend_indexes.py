"""The digest's reads of ``cost_entries`` from covering indexes: ``ix_cost_entries_at_spend``
replaces ``ix_cost_entries_at``, ``ix_cost_entries_plan_spend`` replaces
``ix_cost_entries_plan_id``.

Revision ID: 0014
Revises: 0013

A window's spend by dimension (role, tool, runbook, channel) and by plan, and a cohort of plans'
spend, are read from these indexes alone. On SQLite, a million cost rows in a day took seconds
to read through ``ix_cost_entries_at`` (one table lookup per row). Each new index takes the place
of one that is a prefix of it, so a cost insert still updates as many indexes as before; no
rollup is kept (see revision 0009 for why).
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None

AT_SPEND = ["at", "role", "tool", "runbook_id", "channel", "plan_id", "usd", "tokens"]
PLAN_SPEND = ["plan_id", "usd"]


def upgrade() -> None:
    """Swap the indexes (an adopted schema made from the models may have the new ones)."""
    existing = {index["name"] for index in sa.inspect(op.get_bind()).get_indexes("cost_entries")}
    if "ix_cost_entries_at_spend" not in existing:
        op.create_index("ix_cost_entries_at_spend", "cost_entries", AT_SPEND)
    if "ix_cost_entries_plan_spend" not in existing:
        op.create_index("ix_cost_entries_plan_spend", "cost_entries", PLAN_SPEND)
    if "ix_cost_entries_at" in existing:
        op.drop_index("ix_cost_entries_at", table_name="cost_entries")
    if "ix_cost_entries_plan_id" in existing:
        op.drop_index("ix_cost_entries_plan_id", table_name="cost_entries")


def downgrade() -> None:
    """Back to the single-column indexes."""
    op.create_index("ix_cost_entries_plan_id", "cost_entries", ["plan_id"])
    op.create_index("ix_cost_entries_at", "cost_entries", ["at"])
    op.drop_index("ix_cost_entries_plan_spend", table_name="cost_entries")
    op.drop_index("ix_cost_entries_at_spend", table_name="cost_entries")
