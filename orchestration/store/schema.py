"""Schema migrations: bring any opsgate database to this release's revision, once, safely.

Every replica calls :func:`migrate` at start. The whole check-and-upgrade runs in one
transaction under a lock, so replicas that start at the same moment on an empty database
take turns: the first migrates, the others find the schema current. On PostgreSQL the lock
is a transaction-level advisory lock (``pg_advisory_xact_lock``: one per database, freed at
commit or rollback, also when the process dies); on SQLite it is the write lock that the
store's ``BEGIN IMMEDIATE`` takes. DDL is transactional on both, so a migration that fails
leaves the schema as it was.

A database already at this release's revision is recognised with one query and no Alembic
(the head is read from the revision files): every start of a current replica, and every
``opsgate`` verb that opens the store, skips importing the migration machinery.
"""

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from orchestration.errors import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant works: advisory lock keys are one bigint namespace per database; this one
# spells "opsgate" in ASCII.
MIGRATION_LOCK_KEY = 0x6F70736761746500
# Databases made by ``create_all`` before migrations existed have a ``schema_info`` row at
# this version and no ``alembic_version``; revision 0001 is their schema.
_LEGACY_VERSION = 1
_REVISION = re.compile(r"^revision(?:: *str)? *= *[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN = re.compile(r"^down_revision[^=\n]*= *(?:[\"']([^\"']+)[\"']|None)", re.MULTILINE)


@dataclass(frozen=True)
class Migrated:
    """What :func:`migrate` found and left: revisions before and after (None: empty)."""

    before: str | None
    after: str
    adopted: bool = False  # a database from before migrations (made by ``create_all``)


def alembic_config(connection: Connection | None = None) -> "Config":
    """The Alembic config of opsgate, built in code (no ``alembic.ini``)."""
    from alembic.config import Config  # noqa: PLC0415 - Alembic loads only to migrate

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def _script() -> "ScriptDirectory":
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - Alembic loads only to migrate

    return ScriptDirectory.from_config(alembic_config())


@cache
def head_revision() -> str:
    """The revision this release's schema is at: the one revision file no other revises.

    Read from the files' ``revision`` and ``down_revision`` lines, without Alembic (a test
    pins that it is Alembic's head).
    """
    revisions: dict[str, str | None] = {}
    for path in (MIGRATIONS / "versions").glob("*.py"):
        body = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(body), _DOWN.search(body)
        if revision is not None and down is not None:
            revisions[revision[1]] = down[1]
    heads = set(revisions) - set(revisions.values())
    if len(heads) != 1:  # a branch or an unusual file: ask Alembic
        head = _script().get_current_head()
        assert head is not None
        return head
    return heads.pop()


def current_revision(connection: Connection) -> str | None:
    """The revision a database is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415

    heads = MigrationContext.configure(connection).get_current_heads()
    return heads[0] if heads else None


def migrate(engine: Engine) -> Migrated:
    """Upgrade the database to :func:`head_revision` under the migration lock.

    ``engine`` must begin real transactions (the store's SQLite engine issues ``BEGIN
    IMMEDIATE``), so the migration and the lock are one unit.

    An empty database runs every revision. One made by ``create_all`` before migrations
    (``schema_info`` at version 1, no ``alembic_version``) is adopted: revision 0001 is its
    schema, and the revisions after it run.

    Raises:
        ConfigError: ``schema_too_new`` when the database is at a revision this release
            does not know (a newer opsgate migrated it).
    """
    head = head_revision()
    if _at_head(engine, head):
        return Migrated(before=head, after=head)
    from alembic import command  # noqa: PLC0415 - Alembic loads only when there is work

    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        before = current_revision(connection)
        adopted = before is None and _is_legacy(connection)
        if before is not None and before not in _known():
            raise _too_new(before, head)
        if before != head:
            # An adopted database runs from 0001 too: 0001 and 0002 create only what it
            # lacks, so it ends exactly as if it had been stamped 0001 and upgraded.
            command.upgrade(alembic_config(connection), head)
        return Migrated(before=before, after=head, adopted=adopted)


def _at_head(engine: Engine, head: str) -> bool:
    """True when the database is at ``head`` already: one read, no lock, no Alembic.

    No lock is needed to find nothing to do: a migration commits its DDL and its version row
    in one transaction, so a database that reads ``head`` is fully at ``head``. Anything else
    (no version table, another revision, several rows) takes the locked path.
    """
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except DBAPIError:  # no version table yet
        return False
    return [tuple(row) for row in rows] == [(head,)]


@cache
def _known() -> frozenset[str]:
    return frozenset(script.revision for script in _script().walk_revisions())


def _is_legacy(connection: Connection) -> bool:
    tables = set(inspect(connection).get_table_names())
    if "schema_info" not in tables:
        return "incidents" in tables  # create_all ran, then the process died before the row
    version = connection.execute(text("SELECT max(version) FROM schema_info")).scalar()
    if version is not None and version > _LEGACY_VERSION:
        raise _too_new(f"schema_info version {version}", head_revision())
    return True


def _too_new(found: str, head: str) -> ConfigError:
    return ConfigError(
        f"the database schema is at revision {found}, which this opsgate does not know "
        f"(it knows revisions up to {head}): a newer opsgate has migrated this database. "
        "Run that release (or a newer one), or restore the backup taken before the upgrade; "
        "opsgate never downgrades a schema by itself.",
        code="schema_too_new",
    )
