"""The Alembic environment of opsgate: migrates on the connection ``store.migrate`` passes.

There is no ``alembic.ini``: :func:`orchestration.store.alembic_config` builds the config in
code and puts an open connection (inside its transaction, under the migration lock) into
``config.attributes["connection"]``.
"""

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.types import TypeEngine
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

from orchestration import models


def _render_item(kind: str, item: Any, autogen: AutogenContext) -> str | Literal[False]:
    """Write revisions in plain SQLAlchemy types, so no revision imports the models."""
    if kind == "type" and isinstance(item, TypeEngine):
        if isinstance(item, AutoString):
            return "sa.String()"
        if isinstance(item, models.UTCDateTime):
            return "sa.DateTime(timezone=True)"
    return False


def _include_object(
    item: Any, name: str | None, kind: str, reflected: bool, compare_to: Any
) -> bool:
    """Never draft a table's drop: the Slack surface declares ``slack_refs`` in a module that
    a drafting process may not import, and dropping data is a decision made by hand."""
    return not (kind == "table" and reflected and compare_to is None)


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through orchestration.store (it passes the connection)")
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,  # SQLite alters most tables only by copying them
    compare_type=True,
    render_item=_render_item,
    include_object=_include_object,
)
with context.begin_transaction():
    context.run_migrations()
