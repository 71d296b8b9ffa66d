"""The agents' model calls by outcome: ``model_calls`` (ok, retried, failed, budget_stopped).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the table (a schema created from the models before it was stamped has it)."""
    if "model_calls" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "model_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("plan_id", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=True),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_model_calls_at", "model_calls", ["at"])


def downgrade() -> None:
    """Drop the table (the call counts go with it; tokens stay in the cost entries)."""
    op.drop_index("ix_model_calls_at", table_name="model_calls")
    op.drop_table("model_calls")
