"""``python -m orchestration.store``: the schema tools for developers and operators.

``revision "MESSAGE"`` drafts the next revision from the models (review it before you
commit); ``current`` prints the revision of ``$OPSGATE_DATABASE_URL`` and this release's head.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from orchestration.db import Database
from orchestration.store import current_revision, head_revision, new_revision


def main(argv: list[str] | None = None) -> int:
    """Run one schema tool."""
    parser = argparse.ArgumentParser(prog="python -m orchestration.store")
    sub = parser.add_subparsers(dest="command", required=True)
    draft = sub.add_parser("revision", help="draft the next revision from the models")
    draft.add_argument("message", help='what changes, e.g. "step retry budget"')
    sub.add_parser("current", help="the database's revision and this release's head")
    args = parser.parse_args(argv)
    if args.command == "revision":
        with tempfile.TemporaryDirectory() as tmp:
            scratch = Database(f"sqlite:///{Path(tmp) / 'scratch.db'}")
            path = new_revision(args.message, scratch=scratch.engine)
            scratch.engine.dispose()
        sys.stdout.write(f"wrote {path}: review it, then run the migration tests\n")
        return 0
    db = Database()
    with db.engine.connect() as connection:
        found = current_revision(connection)
    db.engine.dispose()
    sys.stdout.write(f"database: {found or 'not migrated'}\nthis release: {head_revision()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
