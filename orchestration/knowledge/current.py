"""The latest stored version of every document, kept in memory for the per-step freshness check.

Every step a plan takes checks that the knowledge it pinned is still current. Asking the
database for the pinned versions each time (an OR/GROUP BY query over ``knowledge``) cost two
queries per approved step. Instead each control plane keeps the current-version map here and
revalidates it with a number it reads anyway: the count of ``knowledge`` rows, selected as a
scalar subquery of the statement that locks the plan (:func:`row_count`). Rows of that table
are never changed or removed (see :mod:`~orchestration.knowledge.store`), so the count grows
exactly when a version is added, by this replica or any other; a changed count reloads the map
inside the same transaction. The check therefore sees what the old query saw: the versions
committed when the unit of work read its plan.
"""

import threading
from collections.abc import Mapping

from sqlalchemy import ScalarSelect, func
from sqlalchemy import select as core_select
from sqlmodel import Session

from orchestration.knowledge.store import _table, latest_versions, stale_pins


def row_count() -> ScalarSelect[int]:
    """``(SELECT count(*) FROM knowledge)``: add it to the statement that reads the plan."""
    return core_select(func.count()).select_from(_table()).scalar_subquery()


class CurrentVersions:
    """``kind:key -> latest version``, valid for the ``knowledge`` row count it was read at."""

    def __init__(self) -> None:
        self._state: tuple[int, Mapping[str, int]] = (-1, {})
        self._lock = threading.Lock()  # PostgreSQL runs units on several worker threads

    def current(self, session: Session, count: int) -> Mapping[str, int]:
        """The map for a database holding ``count`` knowledge rows (reloaded when it differs).

        A reload reads in ``session``'s transaction; its statement sees at least the rows
        ``count`` was taken from (rows are only ever added), so a map is never older than its
        count says.
        """
        seen, versions = self._state
        if seen == count:
            return versions
        versions = latest_versions(session)
        with self._lock:
            if self._state[0] < count:
                self._state = (count, versions)
        return versions

    def stale(self, session: Session, pins: Mapping[str, int], count: int) -> list[str]:
        """Pinned documents whose current version differs (changed or deleted)."""
        if not pins:
            return []
        return stale_pins(pins, self.current(session, count))
