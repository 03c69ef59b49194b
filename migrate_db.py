"""Upgrade a shopify-export database made by an earlier version, after backing it up.

Usage: python migrate_db.py [--db PATH]

Exit status: 0 when the database was upgraded or already up to date, 1 when it could not be
upgraded, 2 for invalid arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from shopify_export.config import DB_ENV, database_path
from shopify_export.errors import DatabaseError
from shopify_export.migrations import SCHEMA_VERSION, upgrade_file


def main(argv: list[str] | None = None) -> int:
    """Run the upgrade and return the exit status."""
    parser = argparse.ArgumentParser(
        prog="migrate_db.py",
        description="Upgrade a shopify-export database made by an earlier version. "
        "The file is copied to <name>.backup-YYYYMMDD-HHMMSS (UTC) before anything changes.",
    )
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        help=f"database file (default: ${DB_ENV}, else data/customers.db)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    path = database_path(args.db)
    try:
        result = upgrade_file(path)
    except DatabaseError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1

    if not result.changes:
        print(f"{path} is already up to date (schema version {SCHEMA_VERSION})")
        return 0
    if result.backup is not None:
        print(f"Backed up {path} to {result.backup}")
    print(f"Upgraded {path} to schema version {SCHEMA_VERSION}:")
    for change in result.changes:
        print(f"  - {change}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
