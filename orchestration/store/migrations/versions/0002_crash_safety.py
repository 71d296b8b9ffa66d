"""Crash safety: step leases and the in-doubt probe, the inbox, shared circuit breakers.

Revision ID: 0002
Revises: 0001

A database made by ``create_all`` before migrations existed may already hold some of these
objects (``create_all`` adds missing tables but never columns), so each one is created only
when it is missing; every later revision assumes the schema its predecessor made.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the lease columns to steps; create the inbox and breakers tables."""
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    if "breakers" not in tables:
        op.create_table(
            "breakers",
            sa.Column("key", sa.String(), nullable=False),
            sa.Column("state", sa.String(), nullable=False),
            sa.Column("failures", sa.Integer(), nullable=False),
            sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("probe_until", sa.DateTime(timezone=True), nullable=True),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("key"),
        )
    if "inbox" not in tables:
        op.create_table(
            "inbox",
            sa.Column("key", sa.String(), nullable=False),
            sa.Column("kind", sa.String(), nullable=False),
            sa.Column("payload", sa.JSON(), nullable=False),
            sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("owner", sa.String(), nullable=True),
            sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("last_error", sa.String(), nullable=True),
            sa.PrimaryKeyConstraint("key"),
        )
        op.create_index("ix_inbox_pending", "inbox", ["done_at", "lease_until"])
    columns = {column["name"] for column in inspector.get_columns("steps")}
    indexes = {index["name"] for index in inspector.get_indexes("steps")}
    with op.batch_alter_table("steps") as batch:
        if "lease_owner" not in columns:
            batch.add_column(sa.Column("lease_owner", sa.String(), nullable=True))
        if "lease_until" not in columns:
            batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        if "in_doubt_check" not in columns:
            batch.add_column(sa.Column("in_doubt_check", sa.JSON(), nullable=True))
        if "ix_steps_lease_until" not in indexes:
            batch.create_index("ix_steps_lease_until", ["lease_until"])


def downgrade() -> None:
    """Drop what :func:`upgrade` adds."""
    with op.batch_alter_table("steps") as batch:
        batch.drop_index("ix_steps_lease_until")
        batch.drop_column("in_doubt_check")
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")
    op.drop_index("ix_inbox_pending", table_name="inbox")
    op.drop_table("inbox")
    op.drop_table("breakers")
