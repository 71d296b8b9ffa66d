"""The database layer: schema migrations and the rules for retrying contended work.

:class:`orchestration.db.Database` (engine, workers, units of work) builds on this package.

Public functions:
    migrate(engine)           bring a database to this release's schema, under a lock, once
                              (empty: every revision; made by ``create_all`` before migrations:
                              adopted at ``0001``, then upgraded; newer than this release:
                              ConfigError ``schema_too_new``)
    head_revision()           the revision this release's schema is at
    current_revision(conn)    the revision a database is at (None: never migrated)
    alembic_config(conn)      the Alembic config, built in code, for Alembic's own commands
    new_revision(message, scratch=engine)  draft the next revision from what the models add
    contention_code(exc)      the SQLSTATE / SQLite error name of a retryable conflict, or None

Migrations live in ``migrations/versions/`` and ship with the package. A model change comes
with a revision: ``python -m orchestration.store revision "what changed"`` drafts it (review
it by hand); ``tests/orchestration/test_migrations.py`` fails until the revisions build
exactly the models' schema.
"""

from orchestration.store.contention import contention_code
from orchestration.store.revisions import new_revision
from orchestration.store.schema import (
    Migrated,
    alembic_config,
    current_revision,
    head_revision,
    migrate,
)

__all__ = [
    "Migrated",
    "alembic_config",
    "contention_code",
    "current_revision",
    "head_revision",
    "migrate",
    "new_revision",
]
