"""Contention between transactions: which errors mean "run the unit of work again".

PostgreSQL aborts one transaction of a deadlock (SQLSTATE 40P01) and, under stricter
isolation, transactions that cannot be serialised (40001); the aborted one changed nothing
and may simply run again. SQLite reports a write lock it could not get within its busy
timeout as ``SQLITE_BUSY`` ("database is locked"), or ``SQLITE_LOCKED`` for a conflict
inside one connection's shared cache. Anything else is not contention and is not retried.
"""

import sqlite3

from sqlalchemy.exc import DBAPIError

SERIALIZATION_FAILURE = "40001"
DEADLOCK_DETECTED = "40P01"
_PG_CONTENTION = frozenset({SERIALIZATION_FAILURE, DEADLOCK_DETECTED})
_SQLITE_CONTENTION = ("SQLITE_BUSY", "SQLITE_LOCKED")  # and their extended codes
_SQLITE_MESSAGES = ("database is locked", "database table is locked", "database is busy")


def contention_code(exc: BaseException | None) -> str | None:
    """The SQLSTATE or SQLite error name when ``exc`` is contention worth a retry, else None."""
    if not isinstance(exc, DBAPIError):
        return None
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)  # psycopg
    if sqlstate in _PG_CONTENTION:
        return str(sqlstate)
    if isinstance(orig, sqlite3.Error):
        name = getattr(orig, "sqlite_errorname", None) or ""
        if name.startswith(_SQLITE_CONTENTION):
            return name
        if any(text in str(orig) for text in _SQLITE_MESSAGES):
            return "SQLITE_BUSY"
    return None
