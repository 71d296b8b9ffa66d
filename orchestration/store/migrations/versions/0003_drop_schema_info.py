"""Drop ``schema_info``: the ``alembic_version`` table records the schema's revision now.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Drop the version table of the releases before migrations."""
    op.drop_table("schema_info")


def downgrade() -> None:
    """Recreate ``schema_info`` at the version those releases expect."""
    table = op.create_table(
        "schema_info",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(table, [{"id": 1, "version": 1}])
