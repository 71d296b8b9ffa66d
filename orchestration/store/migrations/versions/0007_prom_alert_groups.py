"""Alert groups: one incident per Alertmanager ``groupKey``, and its alerts' last status.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``alert_groups``; a schema created from the models may have it already."""
    if "alert_groups" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "alert_groups",
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("group_key", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("alerts", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("incident_id"),
    )
    op.create_index("ix_alert_groups_group_key", "alert_groups", ["group_key"])


def downgrade() -> None:
    """Drop the table (open incidents then close only by hand)."""
    op.drop_index("ix_alert_groups_group_key", table_name="alert_groups")
    op.drop_table("alert_groups")
