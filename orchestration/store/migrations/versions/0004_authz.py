"""Drop ``processed_requests``: the inbox records (and deduplicates) every request now.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Drop the table of the dedupe that the inbox replaced; nothing reads or writes it."""
    op.drop_index("ix_processed_requests_at", table_name="processed_requests")
    op.drop_table("processed_requests")


def downgrade() -> None:
    """Recreate the (empty) table."""
    op.create_table(
        "processed_requests",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_processed_requests_at", "processed_requests", ["at"])
