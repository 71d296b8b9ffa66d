"""Incidents remember the external incident they mirror: ``incidents.external_ref``.

A PagerDuty incident that opened an opsgate incident (``pagerduty:<id>``) is how its
``incident.resolved`` webhook finds the incident to close.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the nullable, indexed column; older incidents mirror nothing.

    A schema created from the models before it was stamped may have it already.
    """
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("incidents")}
    if "external_ref" in columns:
        return
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("external_ref", sa.String(), nullable=True))
        batch.create_index("ix_incidents_external_ref", ["external_ref"])


def downgrade() -> None:
    """Drop the column and its index."""
    with op.batch_alter_table("incidents") as batch:
        batch.drop_index("ix_incidents_external_ref")
        batch.drop_column("external_ref")
