"""Schema of the database, and the upgrade of databases made by earlier versions.

``PRAGMA user_version`` records the schema version. Version 0 is an empty database or one made
by an earlier version of the tool, which never set it: its ``export_jobs`` lacks
``last_cursor`` and the columns below it, and its ``customers`` table has only the required
columns. Version 1 lacks ``customers.csv_line``. Every upgrade step is derived from the tables
as they are, not from the recorded version alone, so running it twice changes nothing the
second time.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from shopify_export.csv_lines import SOURCE_COLUMNS
from shopify_export.errors import DatabaseError, InvalidDatabaseError
from shopify_export.records import COLUMNS, customer_row, sanitized_row

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

JOB_COLUMNS: dict[str, str] = {
    "id": "TEXT PRIMARY KEY",
    "store_name": "TEXT NOT NULL",
    "status": "TEXT NOT NULL",
    "total_customers": "INTEGER DEFAULT 0",
    "processed_customers": "INTEGER DEFAULT 0",
    "started_at": "TEXT NOT NULL",
    "completed_at": "TEXT",
    "error": "TEXT",
    "csv_file_path": "TEXT",
    "last_cursor": "TEXT",
    "last_customer_id": "INTEGER",
    "page_size": "INTEGER",
    "pid": "INTEGER",
    "updated_at": "TEXT",
    "api_version": "TEXT",
}

CUSTOMER_COLUMNS: dict[str, str] = {
    "store_name": "TEXT NOT NULL",
    "id": "TEXT NOT NULL",
    "legacy_id": "INTEGER",
    "first_name": "TEXT",
    "last_name": "TEXT",
    "email": "TEXT",
    "email_marketing_state": "TEXT",
    "phone": "TEXT",
    "sms_marketing_state": "TEXT",
    "state": "TEXT",
    "tags": "TEXT",
    "note": "TEXT",
    "verified_email": "INTEGER",
    "tax_exempt": "INTEGER",
    "locale": "TEXT",
    "created_at": "TEXT",
    "updated_at": "TEXT",
    "number_of_orders": "INTEGER",
    "amount_spent": "TEXT",
    "currency_code": "TEXT",
    "default_address_company": "TEXT",
    "default_address_address1": "TEXT",
    "default_address_address2": "TEXT",
    "default_address_city": "TEXT",
    "default_address_province": "TEXT",
    "default_address_province_code": "TEXT",
    "default_address_country": "TEXT",
    "default_address_country_code": "TEXT",
    "default_address_zip": "TEXT",
    "default_address_phone": "TEXT",
    "data": "TEXT",
    "job_id": "TEXT",
    "exported_at": "TEXT",
    # The customer's line for CSV files (see csv_lines.stored_line); NULL for rows that are
    # written from their columns.
    "csv_line": "TEXT",
}

# name -> (table, columns)
INDEXES: dict[str, tuple[str, tuple[str, ...]]] = {
    "customers_store_legacy_id": ("customers", ("store_name", "legacy_id")),
    "export_jobs_store_started": ("export_jobs", ("store_name", "started_at")),
}
# name -> CREATE TRIGGER statement. An UPDATE that changes a column a stored CSV line is made
# from, but neither the line nor exported_at (an edit by hand, for example), clears the line,
# so that CSV files show the new values. The upsert of an export sets the line and exported_at
# with the columns, so it keeps its line even where the new values print as before.
TRIGGERS: dict[str, str] = {
    "customers_csv_line_stale": (
        "CREATE TRIGGER customers_csv_line_stale "
        f"AFTER UPDATE OF {', '.join(SOURCE_COLUMNS)} ON customers "
        "WHEN new.csv_line IS NOT NULL AND new.csv_line IS old.csv_line "
        "AND new.exported_at IS old.exported_at AND ("
        + " OR ".join(f"new.{name} IS NOT old.{name}" for name in SOURCE_COLUMNS)
        + ") BEGIN UPDATE customers SET csv_line = NULL WHERE rowid = new.rowid; END"
    ),
}
# Created when a customers table of an earlier version has no key on (store_name, id), which
# INSERT ... ON CONFLICT(store_name, id) requires.
CUSTOMER_KEY_INDEX = "customers_store_id"

# New customers columns filled from the node JSON in ``data`` when they are added to old rows.
# Each column takes the first non-null value of its expressions.
_BACKFILL_FROM_DATA: dict[str, tuple[str, ...]] = {
    "legacy_id": ("CAST(json_extract(data, '$.legacyResourceId') AS INTEGER)",),
    "email_marketing_state": (
        "json_extract(data, '$.defaultEmailAddress.marketingState')",
        "json_extract(data, '$.emailMarketingConsent.marketingState')",
    ),
    "sms_marketing_state": (
        "json_extract(data, '$.defaultPhoneNumber.marketingState')",
        "json_extract(data, '$.smsMarketingConsent.marketingState')",
    ),
    "note": ("json_extract(data, '$.note')",),
    "verified_email": ("json_extract(data, '$.verifiedEmail')",),
    "tax_exempt": ("json_extract(data, '$.taxExempt')",),
    "locale": ("json_extract(data, '$.locale')",),
    "number_of_orders": ("CAST(json_extract(data, '$.numberOfOrders') AS INTEGER)",),
    "amount_spent": ("json_extract(data, '$.amountSpent.amount')",),
    "currency_code": ("json_extract(data, '$.amountSpent.currencyCode')",),
    "default_address_company": ("json_extract(data, '$.defaultAddress.company')",),
    "default_address_address1": ("json_extract(data, '$.defaultAddress.address1')",),
    "default_address_address2": ("json_extract(data, '$.defaultAddress.address2')",),
    "default_address_city": ("json_extract(data, '$.defaultAddress.city')",),
    "default_address_province": ("json_extract(data, '$.defaultAddress.province')",),
    "default_address_province_code": ("json_extract(data, '$.defaultAddress.provinceCode')",),
    "default_address_country": ("json_extract(data, '$.defaultAddress.country')",),
    "default_address_country_code": (
        "json_extract(data, '$.defaultAddress.countryCodeV2')",
        "json_extract(data, '$.defaultAddress.countryCode')",
    ),
    "default_address_zip": ("json_extract(data, '$.defaultAddress.zip')",),
    "default_address_phone": ("json_extract(data, '$.defaultAddress.phone')",),
}

_GID_PREFIX = "gid://shopify/Customer/"


def database_error(path: Path, exc: BaseException, busy_timeout: float) -> DatabaseError:
    """Turn a sqlite3, OS or migration error about ``path`` into a one-line DatabaseError."""
    text = str(exc).replace("\n", " ")
    lowered = text.lower()
    if isinstance(exc, DatabaseError):
        return type(exc)(f"Database {path}: {text}")
    # The path names something that cannot be this database: exit 2, like other bad input.
    usage_error = True
    if "file is not a database" in lowered:
        message = (
            f"{path} is not a SQLite database (file is not a database): pass the path of a "
            "database made by shopify-export, or a new file, with --db"
        )
    elif "malformed" in lowered or "corrupt" in lowered:
        message = (
            f"Database {path} is corrupt ({text}): restore it from a backup, or pass a new "
            "file with --db and export again"
        )
    elif "locked" in lowered or "busy" in lowered:
        usage_error = False
        message = (
            f"Database {path} is locked by another process (waited {busy_timeout:g} s): wait "
            "for it to finish, or pass another --db path"
        )
    elif "readonly" in lowered or "read-only" in lowered:
        message = (
            f"Database {path} is read-only ({text}): make the file and its folder writable, "
            "or pass another --db path"
        )
    elif "disk is full" in lowered or getattr(exc, "errno", None) == errno.ENOSPC:
        usage_error = False
        message = (
            f"Database {path} could not be written: the disk is full ({text}); free some "
            "space, then resume the export"
        )
    elif "unable to open" in lowered or isinstance(exc, PermissionError):
        message = (
            f"Cannot open database {path} ({text}): check that the file and its folder are "
            "readable and writable, or pass another --db path"
        )
    else:
        message = f"Database {path} failed: {text}"
        return DatabaseError(message)
    if usage_error:
        return InvalidDatabaseError(message)
    return DatabaseError(message)


@dataclass
class _Plan:
    """Changes that an upgrade makes, read from the database as it is."""

    version: int
    create_tables: list[str] = field(default_factory=list)
    add_columns: dict[str, list[str]] = field(default_factory=dict)
    add_customer_key: bool = False
    create_indexes: list[str] = field(default_factory=list)
    create_triggers: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.create_tables
            or self.add_columns
            or self.add_customer_key
            or self.create_indexes
            or self.create_triggers
        ) and (self.version == SCHEMA_VERSION)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({_quote(table)})")]


def _has_customer_key(conn: sqlite3.Connection) -> bool:
    """Return True if a primary key or unique index of customers is exactly (store_name, id)."""
    for index in conn.execute("PRAGMA index_list(customers)").fetchall():
        name, unique, partial = index[1], index[2], index[4]
        if not unique or partial:
            continue
        columns = [row[2] for row in conn.execute(f"PRAGMA index_info({_quote(name)})")]
        if len(columns) == 2 and set(columns) == {"store_name", "id"}:
            return True
    return False


def _plan(conn: sqlite3.Connection) -> _Plan:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"database has schema version {version}, made by a newer version of shopify-export "
            f"(this one knows version {SCHEMA_VERSION}): upgrade shopify-export"
        )
    tables = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    if tables and not tables & {"export_jobs", "customers"}:
        raise DatabaseError(
            "file is a SQLite database of another program (it has neither an export_jobs "
            "nor a customers table): pass another --db path"
        )

    plan = _Plan(version=version)
    for table, expected_columns in (("export_jobs", JOB_COLUMNS), ("customers", CUSTOMER_COLUMNS)):
        if table not in tables:
            plan.create_tables.append(table)
            continue
        present = set(_table_columns(conn, table))
        missing = [name for name in expected_columns if name not in present]
        if missing:
            plan.add_columns[table] = missing
    if "customers" in tables and not _has_customer_key(conn):
        plan.add_customer_key = True
    existing_indexes = {
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    }
    plan.create_indexes = [name for name in INDEXES if name not in existing_indexes]
    existing_triggers = {
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    }
    plan.create_triggers = [name for name in TRIGGERS if name not in existing_triggers]
    return plan


def needs_upgrade(conn: sqlite3.Connection) -> bool:
    """Return True if ``migrate`` would change anything in the database of ``conn``.

    Raises:
        DatabaseError: when the database is of a newer schema version or of another program.
    """
    return not _plan(conn).empty


def is_empty(conn: sqlite3.Connection) -> bool:
    """Return True if the database has no tables at all (a new file)."""
    row = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
    return bool(row[0] == 0)


def _create_table_sql(table: str, columns: dict[str, str]) -> str:
    lines = [f"  {name} {declaration}" for name, declaration in columns.items()]
    if table == "customers":
        lines.append("  PRIMARY KEY (store_name, id)")
    return f"CREATE TABLE {table} (\n" + ",\n".join(lines) + "\n)"


def _add_column_sql(table: str, name: str, declaration: str) -> str:
    # ALTER TABLE ... ADD COLUMN rejects NOT NULL without a default and any PRIMARY KEY; the
    # columns that carry those constraints exist in every earlier version anyway.
    declaration = declaration.replace(" NOT NULL", "").replace(" PRIMARY KEY", "")
    return f"ALTER TABLE {table} ADD COLUMN {name} {declaration}"


def _backfill_legacy_id(conn: sqlite3.Connection) -> int:
    cursor = conn.execute(
        "UPDATE customers SET legacy_id = CAST(substr(id, ?) AS INTEGER) "
        "WHERE legacy_id IS NULL AND substr(id, 1, ?) = ? "
        "AND substr(id, ?) GLOB '[0-9]*' AND substr(id, ?) NOT GLOB '*[^0-9]*' "
        "AND length(substr(id, ?)) <= 18",
        (len(_GID_PREFIX) + 1, len(_GID_PREFIX), _GID_PREFIX) + (len(_GID_PREFIX) + 1,) * 3,
    )
    return cursor.rowcount


def _backfill_from_data(conn: sqlite3.Connection, columns: list[str]) -> int:
    columns = [name for name in columns if name in _BACKFILL_FROM_DATA]
    if not columns:
        return 0
    assignments = ", ".join(
        f"{name} = coalesce({name}, {', '.join(_BACKFILL_FROM_DATA[name])})" for name in columns
    )
    try:
        cursor = conn.execute(
            f"UPDATE customers SET {assignments} WHERE data IS NOT NULL AND json_valid(data)"
        )
    except sqlite3.OperationalError as exc:
        if "no such function" not in str(exc):
            raise
        # NOTE: SQLite builds without the JSON functions (before 3.38 they were optional)
        # leave these columns empty for old rows until the customers are exported again.
        log.warning("Cannot fill new customer columns from the data JSON: %s", exc)
        return 0
    _refill_rows_with_nul(conn, columns)
    return cursor.rowcount


def _refill_rows_with_nul(conn: sqlite3.Connection, columns: list[str]) -> None:
    """Fill ``columns`` again in Python for rows whose JSON contains an escaped NUL (``\\u0000``).

    json_extract returns such a string cut at the NUL (SQLite 3.40, measured), so a note
    ``"a\\u0000b"`` would become ``"a"``. customer_row reads the whole value, as an export does.
    """
    indexes = [COLUMNS.index(name) for name in columns]
    assignments = ", ".join(f"{name} = ?" for name in columns)
    rows = conn.execute(
        "SELECT rowid, data FROM customers WHERE instr(data, ?) > 0", ("\\u0000",)
    ).fetchall()
    for rowid, data in rows:
        try:
            node = json.loads(data)
        except ValueError:
            continue
        if not isinstance(node, dict):
            continue
        # sanitized_row replaces lone surrogates, which SQLite cannot store as text.
        values = sanitized_row(customer_row(node, "", "", ""), node)
        conn.execute(
            f"UPDATE customers SET {assignments} WHERE rowid = ?",
            [values[index] for index in indexes] + [rowid],
        )


def _add_customer_key(conn: sqlite3.Connection) -> int:
    # Keep the most recently written row of each customer; the backup keeps the others.
    removed = conn.execute(
        "DELETE FROM customers WHERE rowid NOT IN "
        "(SELECT max(rowid) FROM customers GROUP BY store_name, id)"
    ).rowcount
    conn.execute(f"CREATE UNIQUE INDEX {CUSTOMER_KEY_INDEX} ON customers (store_name, id)")
    return removed


def _apply(conn: sqlite3.Connection, plan: _Plan) -> list[str]:
    changes: list[str] = []
    columns_of = {"export_jobs": JOB_COLUMNS, "customers": CUSTOMER_COLUMNS}
    for table in plan.create_tables:
        conn.execute(_create_table_sql(table, columns_of[table]))
        changes.append(f"created table {table}")

    for table, missing in plan.add_columns.items():
        for name in missing:
            conn.execute(_add_column_sql(table, name, columns_of[table][name]))
        changes.append(f"{table}: added columns {', '.join(missing)}")

    added_customer_columns = plan.add_columns.get("customers", [])
    if "legacy_id" in added_customer_columns:
        filled = _backfill_legacy_id(conn)
        changes.append(f"customers: filled legacy_id of {filled} rows from the customer GID")
    if added_customer_columns:
        filled = _backfill_from_data(conn, added_customer_columns)
        if filled:
            changes.append(f"customers: filled new columns of {filled} rows from the data JSON")
    if "updated_at" in plan.add_columns.get("export_jobs", []):
        conn.execute("UPDATE export_jobs SET updated_at = coalesce(completed_at, started_at)")

    if plan.add_customer_key:
        removed = _add_customer_key(conn)
        changes.append(
            f"customers: added a unique key on (store_name, id), removing {removed} duplicate "
            + ("row" if removed == 1 else "rows")
        )

    for name in plan.create_indexes:
        table, index_columns = INDEXES[name]
        conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({', '.join(index_columns)})")
        if table not in plan.create_tables:
            changes.append(f"created index {name} on {table} ({', '.join(index_columns)})")

    for name in plan.create_triggers:
        conn.execute(TRIGGERS[name])
        if "customers" not in plan.create_tables:
            changes.append(f"created trigger {name} on customers")

    if plan.version != SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        changes.append(f"schema version {plan.version} -> {SCHEMA_VERSION}")
    return changes


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Bring the database of ``conn`` to ``SCHEMA_VERSION`` in one transaction.

    Creates missing tables and indexes, adds missing columns and fills the new customer columns
    from each row's GID and JSON ``data``. Every row is kept, except duplicate customer rows of
    a customers table that had no key on (store_name, id). ``conn`` must be in autocommit mode
    (``isolation_level=None``).

    Returns:
        One description per change, empty when the database was already up to date.

    Raises:
        DatabaseError: for a database of a newer schema version or of another program.
        sqlite3.Error: when SQLite fails; the transaction is rolled back.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Planned inside the write transaction: another process may have upgraded meanwhile.
        plan = _plan(conn)
        changes = [] if plan.empty else _apply(conn, plan)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    for change in changes:
        log.debug("Schema change: %s", change)
    return changes


def backup_path(db_path: Path) -> Path:
    """Return a free path ``<name>.backup-YYYYMMDD-HHMMSS`` (UTC) beside ``db_path``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    candidate = db_path.with_name(f"{db_path.name}.backup-{stamp}")
    number = 2
    while candidate.exists():
        candidate = db_path.with_name(f"{db_path.name}.backup-{stamp}-{number}")
        number += 1
    return candidate


def backup_database(conn: sqlite3.Connection, db_path: Path) -> Path:
    """Copy the database of ``conn`` to ``backup_path(db_path)``, readable by the owner only.

    The copy goes through SQLite's online backup, so it includes the content of the WAL file and
    is a consistent snapshot even while another process writes.

    Raises:
        OSError: when the backup file cannot be created.
        sqlite3.Error: when SQLite fails to copy.
    """
    target = backup_path(db_path)
    # O_EXCL: never write into a file that appeared meanwhile. 0600 before any data is in it.
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        copy = sqlite3.connect(target)
        try:
            conn.backup(copy)
        finally:
            copy.close()
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


@dataclass
class UpgradeResult:
    """Outcome of ``upgrade``: the changes made and the backup written before them."""

    changes: list[str]
    backup: Path | None


def upgrade(conn: sqlite3.Connection, db_path: Path) -> UpgradeResult:
    """Back up the database (unless it has no tables yet), then migrate it.

    Raises:
        DatabaseError: as ``migrate`` does.
        OSError, sqlite3.Error: when the backup or the migration fails.
    """
    if not needs_upgrade(conn):
        return UpgradeResult(changes=[], backup=None)
    backup = None if is_empty(conn) else backup_database(conn, db_path)
    changes = migrate(conn)
    return UpgradeResult(changes=changes, backup=backup)


def upgrade_file(path: Path, *, busy_timeout: float = 5.0) -> UpgradeResult:
    """Back up and upgrade the existing database file at ``path``, as migrate_db.py does.

    Raises:
        DatabaseError: with a one-line message when there is no database at ``path``, it
            cannot be read, written or backed up, or it is locked longer than
            ``busy_timeout`` seconds.
    """
    if path.is_dir():
        raise DatabaseError(f"Database path {path} is a folder: pass the database file with --db")
    if not path.exists():
        raise DatabaseError(
            f"No database at {path}: pass the path of an existing database with --db"
        )
    try:
        # mode=rw: an upgrade never creates a database.
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=rw",
            uri=True,
            timeout=busy_timeout,
            isolation_level=None,
        )
        try:
            return upgrade(conn, path)
        finally:
            conn.close()
    except (sqlite3.Error, OSError, DatabaseError) as exc:
        raise database_error(path, exc, busy_timeout) from exc
