"""Retention: spans are aged out by ``started_at`` (an index, so each batch reads the oldest).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``ix_spans_started_at`` (an adopted schema made from the models may have it)."""
    existing = {index["name"] for index in sa.inspect(op.get_bind()).get_indexes("spans")}
    if "ix_spans_started_at" not in existing:
        op.create_index("ix_spans_started_at", "spans", ["started_at"])


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_spans_started_at", table_name="spans")
