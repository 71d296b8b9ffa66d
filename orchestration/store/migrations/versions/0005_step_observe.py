"""Steps remember a probe's observation: ``steps.observe`` (runbook ``healthy``/``end_if``).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the nullable JSON column; steps of older plans observe nothing.

    A schema created from the models before it was stamped may have it already.
    """
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("steps")}
    if "observe" in columns:
        return
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("observe", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop the column (the observations of finished probes go with it)."""
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("observe")
