"""Upgrade of databases made by an earlier version: Database.open and migrate_db.py."""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shopify_export import migrations
from shopify_export.csv_export import write_csv
from shopify_export.errors import DatabaseError
from shopify_export.models import JobStatus
from shopify_export.records import COLUMNS
from shopify_export.store import Database

REPO_ROOT = Path(__file__).resolve().parents[1]
STORE = "demo-store"

OLD_JOBS = (
    "CREATE TABLE export_jobs (id TEXT PRIMARY KEY, store_name TEXT NOT NULL, status TEXT NOT "
    "NULL, total_customers INTEGER DEFAULT 0, processed_customers INTEGER DEFAULT 0, started_at "
    "TEXT NOT NULL, completed_at TEXT, error TEXT, csv_file_path TEXT)"
)
OLD_CUSTOMERS = (
    "CREATE TABLE customers (store_name TEXT NOT NULL, id TEXT NOT NULL, email TEXT, first_name "
    "TEXT, last_name TEXT, phone TEXT, state TEXT, tags TEXT, created_at TEXT, updated_at TEXT, "
    "data TEXT, PRIMARY KEY (store_name, id))"
)
NEW_NODE = {
    "id": "gid://shopify/Customer/7001",
    "firstName": "Ada",
    "defaultEmailAddress": {"emailAddress": "ada@example.com", "marketingState": "SUBSCRIBED"},
    "defaultPhoneNumber": {"phoneNumber": "+14155550100", "marketingState": "NOT_SUBSCRIBED"},
    "tags": ["vip"],
    "note": "Prefers e-mail",
    "verifiedEmail": True,
    "taxExempt": False,
    "locale": "en",
    "numberOfOrders": "3",
    "amountSpent": {"amount": "129.90", "currencyCode": "USD"},
    "defaultAddress": {
        "city": "Ottawa",
        "countryCodeV2": "CA",
        "provinceCode": "ON",
        "zip": "02134",
    },
}
OLD_NODE = {
    "id": "gid://shopify/Customer/7002",
    "email": "old@example.com",
    "emailMarketingConsent": {"marketingState": "UNSUBSCRIBED"},
    "smsMarketingConsent": {"marketingState": "SUBSCRIBED"},
    "taxExempt": True,
    "defaultAddress": {"countryCode": "US"},
}


def make_old_database(path: Path) -> None:
    """A database as the earlier version left it: the required columns only, user_version 0."""
    conn = sqlite3.connect(path)
    conn.execute(OLD_JOBS)
    conn.execute(OLD_CUSTOMERS)
    conn.executemany(
        "INSERT INTO export_jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                f"export_{STORE}_1700000000000",
                STORE,
                "completed",
                3,
                3,
                "2023-11-14T22:13:20.000Z",
                "2023-11-14T22:15:00.000Z",
                None,
                "data/exports/old.csv",
            ),
            (
                f"export_{STORE}_1700000100000",
                STORE,
                "failed",
                3,
                1,
                "2023-11-14T22:15:00.000Z",
                None,
                "HTTP 502",
                None,
            ),
        ],
    )
    conn.executemany(
        "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                STORE,
                NEW_NODE["id"],
                "ada@example.com",
                "Ada",
                None,
                "+14155550100",
                "ENABLED",
                "vip",
                "2025-01-02T10:00:00Z",
                "2026-03-04T08:15:00Z",
                json.dumps(NEW_NODE),
            ),
            (
                STORE,
                OLD_NODE["id"],
                "old@example.com",
                None,
                None,
                None,
                "DISABLED",
                "",
                None,
                None,
                json.dumps(OLD_NODE),
            ),
            (
                STORE,
                "gid://shopify/Customer/7003",
                None,
                "Bad",
                None,
                None,
                None,
                None,
                None,
                None,
                "{",
            ),
            ("other-store", "not-a-gid", None, None, None, None, None, None, None, None, None),
        ],
    )
    conn.commit()
    conn.close()


def table_rows(path: Path, table: str, columns: str = "*") -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT {columns} FROM {table} ORDER BY rowid").fetchall()
    finally:
        conn.close()


def run_migrate(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "SHOPIFY_EXPORT_DB"}
    environment["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "migrate_db.py"), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    path = tmp_path / "customers.db"
    make_old_database(path)
    return path


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.backup-*"))


def test_open_upgrades_old_database(old_db: Path, caplog: pytest.LogCaptureFixture) -> None:
    before_customers = table_rows(old_db, "customers", "store_name, id, email, first_name, data")
    before_jobs = table_rows(old_db, "export_jobs", "id, status, processed_customers, error")

    with caplog.at_level(logging.INFO, logger="shopify_export"):
        database = Database.open(old_db)
    database.close()

    after_customers = table_rows(old_db, "customers", "store_name, id, email, first_name, data")
    assert after_customers == before_customers
    assert table_rows(old_db, "export_jobs", "id, status, processed_customers, error") == (
        before_jobs
    )
    conn = sqlite3.connect(old_db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations.SCHEMA_VERSION
    columns = [row[1] for row in conn.execute("PRAGMA table_info(customers)")]
    assert set(columns) == set(COLUMNS)
    job_columns = {row[1] for row in conn.execute("PRAGMA table_info(export_jobs)")}
    assert set(migrations.JOB_COLUMNS) == job_columns
    conn.close()

    saved = backups(old_db)
    assert len(saved) == 1
    assert re.fullmatch(r"customers\.db\.backup-\d{8}-\d{6}", saved[0].name)
    assert stat.S_IMODE(saved[0].stat().st_mode) == 0o600
    backup_columns = [
        row[1] for row in sqlite3.connect(saved[0]).execute("PRAGMA table_info(export_jobs)")
    ]
    assert "last_cursor" not in backup_columns
    backup = sqlite3.connect(saved[0])
    assert backup.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    backup.close()
    assert table_rows(saved[0], "customers", "store_name, id, email, first_name, data") == (
        before_customers
    )
    assert any("Backed up database" in record.getMessage() for record in caplog.records)
    assert any("added columns last_cursor" in record.getMessage() for record in caplog.records)


def test_upgrade_fills_new_columns(old_db: Path) -> None:
    Database.open(old_db).close()
    conn = sqlite3.connect(old_db)
    conn.row_factory = sqlite3.Row
    rows = {row["id"]: dict(row) for row in conn.execute("SELECT * FROM customers")}
    conn.close()

    new = rows["gid://shopify/Customer/7001"]
    assert new["legacy_id"] == 7001
    assert new["email_marketing_state"] == "SUBSCRIBED"
    assert new["sms_marketing_state"] == "NOT_SUBSCRIBED"
    assert new["note"] == "Prefers e-mail"
    assert new["verified_email"] == 1
    assert new["tax_exempt"] == 0
    assert new["number_of_orders"] == 3
    assert new["amount_spent"] == "129.90"
    assert new["currency_code"] == "USD"
    assert new["default_address_zip"] == "02134"
    assert new["default_address_country_code"] == "CA"

    old = rows["gid://shopify/Customer/7002"]
    assert old["legacy_id"] == 7002
    assert old["email_marketing_state"] == "UNSUBSCRIBED"
    assert old["sms_marketing_state"] == "SUBSCRIBED"
    assert old["tax_exempt"] == 1
    assert old["default_address_country_code"] == "US"

    broken = rows["gid://shopify/Customer/7003"]
    assert broken["legacy_id"] == 7003
    assert broken["note"] is None
    assert rows["not-a-gid"]["legacy_id"] is None


def test_upgraded_database_works(old_db: Path, tmp_path: Path) -> None:
    with Database.open(old_db) as database:
        failed = database.latest_failed_job(STORE)
        assert failed is not None
        assert failed.status is JobStatus.FAILED
        assert failed.error == "HTTP 502"
        assert failed.last_cursor is None
        assert not failed.can_resume
        assert [job.id for job in database.list_jobs(STORE, 10)] == [
            f"export_{STORE}_1700000100000",
            f"export_{STORE}_1700000000000",
        ]

        database.claim_job(failed.id)
        node = {"id": "gid://shopify/Customer/7001", "firstName": "Ada", "tags": ["vip"]}
        assert database.save_batch(failed.id, STORE, [node], "cursor-1", 250) == 2
        database.mark_completed(failed.id)
        assert database.customer_count(STORE) == 3
        assert [row["legacy_id"] for row in database.iter_customers(STORE)] == [7001, 7002, 7003]
        assert write_csv(database, STORE, tmp_path / "out.csv", "plain") == 3


def test_migrate_twice_changes_nothing(old_db: Path) -> None:
    conn = sqlite3.connect(old_db, isolation_level=None)
    assert migrations.needs_upgrade(conn)
    first = migrations.migrate(conn)
    assert any(change.startswith("export_jobs: added columns last_cursor") for change in first)
    assert not migrations.needs_upgrade(conn)
    assert migrations.migrate(conn) == []
    conn.close()


def test_migrate_db_script(old_db: Path) -> None:
    first = run_migrate("--db", str(old_db))
    assert first.returncode == 0, first.stderr
    assert f"Backed up {old_db} to {old_db}.backup-" in first.stdout
    assert "export_jobs: added columns last_cursor" in first.stdout
    assert len(backups(old_db)) == 1

    second = run_migrate("--db", str(old_db))
    assert second.returncode == 0, second.stderr
    assert "already up to date" in second.stdout
    assert len(backups(old_db)) == 1


def test_migrate_db_reads_environment(old_db: Path) -> None:
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "SHOPIFY_EXPORT_DB": str(old_db)}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "migrate_db.py")],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"Upgraded {old_db}" in result.stdout


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "No database at"),
        ("folder", "is a folder"),
        ("text", "is not a SQLite database"),
        ("foreign", "database of another program"),
    ],
)
def test_migrate_db_errors(tmp_path: Path, setup: str, message: str) -> None:
    path = tmp_path / "customers.db"
    if setup == "folder":
        path.mkdir()
    elif setup == "text":
        path.write_text("not a database\n" * 100)
    elif setup == "foreign":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT)")
        conn.commit()
        conn.close()

    result = run_migrate("--db", str(path))
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert not backups(path)


def test_migrate_db_usage_error() -> None:
    result = run_migrate("--no-such-option")
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_fresh_database_needs_no_backup(tmp_path: Path) -> None:
    path = tmp_path / "customers.db"
    path.touch()
    with Database.open(path) as database:
        assert database.customer_count(STORE) == 0
    assert not backups(path)
    result = run_migrate("--db", str(path))
    assert "already up to date" in result.stdout


def test_customers_without_key(tmp_path: Path) -> None:
    path = tmp_path / "customers.db"
    conn = sqlite3.connect(path)
    conn.execute(OLD_JOBS)
    conn.execute(OLD_CUSTOMERS.replace(", PRIMARY KEY (store_name, id)", ""))
    conn.executemany(
        "INSERT INTO customers (store_name, id, email) VALUES (?, ?, ?)",
        [
            (STORE, "gid://shopify/Customer/1", "first@example.com"),
            (STORE, "gid://shopify/Customer/1", "second@example.com"),
            (STORE, "gid://shopify/Customer/2", "two@example.com"),
        ],
    )
    conn.commit()
    conn.close()

    result = run_migrate("--db", str(path))
    assert result.returncode == 0, result.stderr
    assert "removing 1 duplicate row\n" in result.stdout
    assert table_rows(path, "customers", "id, email") == [
        ("gid://shopify/Customer/1", "second@example.com"),
        ("gid://shopify/Customer/2", "two@example.com"),
    ]
    assert len(table_rows(backups(path)[0], "customers")) == 3

    with Database.open(path) as database:
        job = database.create_job(STORE, api_version="2026-04", page_size=250)
        database.save_batch(job.id, STORE, [{"id": "gid://shopify/Customer/1"}], "c", 250)
        assert database.customer_count(STORE) == 2


def test_newer_schema_rejected(tmp_path: Path) -> None:
    path = tmp_path / "customers.db"
    Database.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {migrations.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(DatabaseError, match="newer version of shopify-export"):
        Database.open(path)


def test_backup_path_is_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One fixed second: otherwise the clock may tick between the two calls.
    fixed = time.gmtime()
    monkeypatch.setattr(migrations.time, "gmtime", lambda *args: fixed)
    db_path = tmp_path / "customers.db"
    first = migrations.backup_path(db_path)
    assert re.fullmatch(r"customers\.db\.backup-\d{8}-\d{6}", first.name)
    first.touch()
    second = migrations.backup_path(db_path)
    assert second != first
    assert second.name.startswith(first.name)


def test_upgrade_keeps_text_after_nul(tmp_path: Path) -> None:
    path = tmp_path / "customers.db"
    node = {
        "id": "gid://shopify/Customer/9",
        "note": "before\u0000after",
        "defaultAddress": {"company": "Acme\u0000 Corp", "city": "Oslo"},
    }
    conn = sqlite3.connect(path)
    conn.execute(OLD_JOBS)
    conn.execute(OLD_CUSTOMERS)
    conn.execute(
        "INSERT INTO customers (store_name, id, data) VALUES (?, ?, ?)",
        (STORE, node["id"], json.dumps(node)),
    )
    conn.commit()
    conn.close()
    assert "\\u0000" in json.dumps(node)

    Database.open(path).close()
    conn = sqlite3.connect(path)
    row = conn.execute(
        "SELECT note, default_address_company, default_address_city, legacy_id FROM customers"
    ).fetchone()
    conn.close()
    assert row == ("before\x00after", "Acme\x00 Corp", "Oslo", 9)
