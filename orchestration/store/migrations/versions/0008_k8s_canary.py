"""Steps name their canary: ``steps.canary_step`` (runbook ``canary:``).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the nullable column; steps of older plans have no canary.

    A schema created from the models before it was stamped may have it already.
    """
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("steps")}
    if "canary_step" in columns:
        return
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("canary_step", sa.String(), nullable=True))


def downgrade() -> None:
    """Drop the column."""
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("canary_step")
