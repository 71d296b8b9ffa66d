"""The LLM agents' transcripts: ``transcripts`` (gzip-compressed, kept for a retention period).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the table (a schema created from the models before it was stamped has it)."""
    if "transcripts" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "transcripts",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("plan_id", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=True),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_transcripts_plan_id", "transcripts", ["plan_id"])
    op.create_index("ix_transcripts_expires_at", "transcripts", ["expires_at"])


def downgrade() -> None:
    """Drop the table (its transcripts go with it)."""
    op.drop_index("ix_transcripts_expires_at", table_name="transcripts")
    op.drop_index("ix_transcripts_plan_id", table_name="transcripts")
    op.drop_table("transcripts")
