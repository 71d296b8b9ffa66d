"""Staged trust: ``steps.rollout``, ``rollout_stages``, ``human_actions``, ``rollout_promotions``.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the column and the three tables (a schema made from the models has them already)."""
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    if "rollout" not in {c["name"] for c in inspector.get_columns("steps")}:
        with op.batch_alter_table("steps") as batch:
            batch.add_column(sa.Column("rollout", sa.JSON(), nullable=True))
    if "rollout_stages" not in tables:
        op.create_table(
            "rollout_stages",
            sa.Column("scope", sa.String(), nullable=False),
            sa.Column("stage", sa.String(), nullable=False),
            sa.Column("config_stage", sa.String(), nullable=False),
            sa.Column("since", sa.DateTime(timezone=True), nullable=False),
            sa.Column("changed_by", sa.String(), nullable=False),
            sa.Column("reason", sa.String(), nullable=False),
            sa.PrimaryKeyConstraint("scope"),
        )
    if "human_actions" not in tables:
        op.create_table(
            "human_actions",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("incident_id", sa.String(), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("actor", sa.String(), nullable=False),
            sa.Column("kind", sa.String(), nullable=False),
            sa.Column("step_key", sa.String(), nullable=True),
            sa.Column("text", sa.String(), nullable=False),
            sa.Column("source", sa.String(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_human_actions_incident_id", "human_actions", ["incident_id"])
        op.create_index("ix_human_actions_at", "human_actions", ["at"])
    if "rollout_promotions" not in tables:
        op.create_table(
            "rollout_promotions",
            sa.Column("id", sa.String(), nullable=False),
            sa.Column("nonce", sa.String(), nullable=False),
            sa.Column("scope", sa.String(), nullable=False),
            sa.Column("from_stage", sa.String(), nullable=False),
            sa.Column("to_stage", sa.String(), nullable=False),
            sa.Column("requester", sa.String(), nullable=False),
            sa.Column("channel", sa.String(), nullable=False),
            sa.Column("quorum", sa.Integer(), nullable=False),
            sa.Column("override_reason", sa.String(), nullable=False),
            sa.Column("unmet", sa.JSON(), nullable=False),
            sa.Column("votes", sa.JSON(), nullable=False),
            sa.Column("state", sa.String(), nullable=False),
            sa.Column("reason", sa.String(), nullable=False),
            sa.Column("correlation_id", sa.String(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("nonce"),
        )
        op.create_index("ix_rollout_promotions_scope", "rollout_promotions", ["scope"])
        op.create_index("ix_rollout_promotions_state", "rollout_promotions", ["state"])


def downgrade() -> None:
    """Drop them (the rollout history goes with them)."""
    op.drop_table("rollout_promotions")
    op.drop_table("human_actions")
    op.drop_table("rollout_stages")
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("rollout")
