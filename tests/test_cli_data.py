"""What ends up on disk through the command line: hostile data, CSV files, old databases."""

from __future__ import annotations

import csv
import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from click.testing import Result
from conftest import STORE, Env, customer_ids, expected_ids, job_rows

from shopify_export.sandbox import SandboxServer, customer

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Columns whose excel cells start with an apostrophe whatever they hold, so that a spreadsheet
# keeps them as text (leading zeros of zips, the + of phone numbers, long ids).
TEXT_COLUMNS = {"Customer ID", "Default Address Zip", "Default Address Phone", "Phone"}


def _as_csv_text(value: str | None) -> str:
    """Return what the plain dialect writes for a stored text value."""
    if value is None:
        return ""
    if sys.version_info < (3, 11):
        # Python 3.10's csv module cannot write NUL; the writer puts U+FFFD in its place.
        return value.replace("\x00", "\ufffd")
    return value


def _read_csv(path: Path, encoding: str) -> list[dict[str, str]]:
    with path.open(newline="", encoding=encoding) as handle:
        return list(csv.DictReader(handle))


def test_hostile_data_stored_unharmed(
    run_cli: Callable[..., Result], env: Env, sandbox_factory: Callable[..., SandboxServer]
) -> None:
    # Ids beyond 2**53 lose precision in JavaScript and in doubles; they must survive here.
    server = sandbox_factory(customers=2500, id_start=2**53 + 1)
    env.point_at(server)
    result = run_cli("export", STORE)
    assert result.exit_code == 0, result.stderr
    assert customer_ids(env.db_path) == expected_ids(server)
    with sqlite3.connect(env.db_path) as connection:
        rows = connection.execute(
            "SELECT legacy_id, note, tags, first_name, data FROM customers ORDER BY legacy_id"
        ).fetchall()
    notes = [row[1] for row in rows if row[1]]
    assert max(len(note) for note in notes) >= 64 * 1024
    assert any("\x00" in note for note in notes)
    assert max(len(json.loads(row[4])["tags"]) for row in rows) == 250
    for index, (legacy_id, _, _, first_name, data) in enumerate(rows):
        expected = customer(server.config, index)
        stored = json.loads(data)
        assert legacy_id == int(expected["legacyResourceId"]) > 2**53
        assert stored["firstName"] == expected["firstName"] == first_name
        assert stored["note"] == expected["note"]
        assert stored["tags"] == expected["tags"]


def test_plain_csv_reads_back_database_values(
    run_cli: Callable[..., Result], env: Env, tmp_path: Path
) -> None:
    target = tmp_path / "plain.csv"
    result = run_cli("export", STORE, "--csv", "--csv-dialect", "plain", "--csv-path", str(target))
    assert result.exit_code == 0, result.stderr
    assert not target.read_bytes().startswith(b"\xef\xbb\xbf")
    rows = _read_csv(target, "utf-8")
    with sqlite3.connect(env.db_path) as connection:
        stored = connection.execute(
            "SELECT legacy_id, first_name, last_name, note, default_address_zip "
            "FROM customers ORDER BY legacy_id"
        ).fetchall()
    assert len(rows) == len(stored) == 1000
    for row, (legacy_id, first, last, note, zip_code) in zip(rows, stored, strict=True):
        assert row["Customer ID"] == str(legacy_id)
        assert row["First Name"] == _as_csv_text(first)
        assert row["Last Name"] == _as_csv_text(last)
        assert row["Note"] == _as_csv_text(note)
        assert row["Default Address Zip"] == (zip_code or "")
        assert "None" not in (row["First Name"], row["Note"])


def test_excel_csv_neutralises_sandbox_formulas(
    run_cli: Callable[..., Result], env: Env, tmp_path: Path
) -> None:
    target = tmp_path / "excel.csv"
    result = run_cli("export", STORE, "--csv", "--csv-path", str(target))
    assert result.exit_code == 0, result.stderr
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in raw
    rows = _read_csv(target, "utf-8-sig")
    formula_like = 0
    for row in rows:
        for column, value in row.items():
            if column in TEXT_COLUMNS and value:
                assert value.startswith("'"), (column, value)
                continue
            if value.lstrip("\x00").startswith(FORMULA_STARTS):
                raise AssertionError(f"live formula in {column}: {value[:40]!r}")
            if value.startswith("'") and value[1:2] in FORMULA_STARTS:
                formula_like += 1
    assert formula_like > 0, "the sandbox data had no formula-like cell to neutralise"
    phones = [row["Phone"] for row in rows if row["Phone"]]
    assert any(phone.startswith("'+") and phone[2:].isdigit() for phone in phones)
    zips = [row["Default Address Zip"] for row in rows if row["Default Address Zip"]]
    assert any(zip_code.startswith("'0") for zip_code in zips)


def test_csv_command_writes_database_contents(
    run_cli: Callable[..., Result], env: Env, tmp_path: Path
) -> None:
    assert run_cli("export", STORE).exit_code == 0
    target = tmp_path / "again.csv"
    result = run_cli("csv", STORE, "--csv-path", str(target), "--csv-dialect", "plain")
    assert result.exit_code == 0, result.stderr
    assert f"Wrote 1000 customers of {STORE} to {target}" in result.stderr
    assert len(_read_csv(target, "utf-8")) == 1000


def test_csv_command_default_path(run_cli: Callable[..., Result], env: Env) -> None:
    assert run_cli("export", STORE).exit_code == 0
    result = run_cli("csv", STORE)
    assert result.exit_code == 0, result.stderr
    [written] = list((env.db_path.parent / "exports").glob(f"{STORE}_*.csv"))
    assert str(written) in result.stderr


def test_resume_with_csv_writes_after_completion(
    run_cli: Callable[..., Result],
    env: Env,
    sandbox_factory: Callable[..., SandboxServer],
    tmp_path: Path,
) -> None:
    from shopify_export.sandbox import Fault

    env.point_at(sandbox_factory(customers=1000, faults=[Fault("http_500", page=2, times=0)]))
    target = tmp_path / "resumed.csv"
    failed = run_cli("export", STORE, "--csv", "--csv-path", str(target), "--max-retries", "0")
    assert failed.exit_code == 1
    assert not target.exists()
    env.point_at(sandbox_factory(customers=1000))
    resumed = run_cli("resume", STORE, "--csv", "--csv-path", str(target))
    assert resumed.exit_code == 0, resumed.stderr
    assert len(_read_csv(target, "utf-8-sig")) == 1000
    [job] = job_rows(env.db_path)
    assert job["csv_file_path"] == str(target)


OLD_SCHEMA = """
CREATE TABLE export_jobs (id TEXT PRIMARY KEY, store_name TEXT NOT NULL, status TEXT NOT NULL,
  total_customers INTEGER DEFAULT 0, processed_customers INTEGER DEFAULT 0,
  started_at TEXT NOT NULL, completed_at TEXT, error TEXT, csv_file_path TEXT);
CREATE TABLE customers (store_name TEXT NOT NULL, id TEXT NOT NULL, email TEXT, first_name TEXT,
  last_name TEXT, phone TEXT, state TEXT, tags TEXT, created_at TEXT, updated_at TEXT,
  data TEXT, PRIMARY KEY (store_name, id));
INSERT INTO export_jobs VALUES ('export_demo-store_1700000000000', 'demo-store', 'failed', 1000,
  250, '2023-11-14T22:13:20.000Z', NULL, 'HTTP 502', NULL);
INSERT INTO customers VALUES ('demo-store', 'gid://shopify/Customer/7', 'a@example.com', 'Ada',
  'Lovelace', NULL, 'ENABLED', 'vip', '2023-01-01T00:00:00Z', '2023-01-02T00:00:00Z',
  '{"id": "gid://shopify/Customer/7", "firstName": "Ada"}');
"""


def test_cli_on_old_database(run_cli: Callable[..., Result], env: Env) -> None:
    env.db_path.parent.mkdir(parents=True)
    with sqlite3.connect(env.db_path) as connection:
        connection.executescript(OLD_SCHEMA)
    status = run_cli("status", STORE, "--json")
    assert status.exit_code == 0, status.stderr
    assert "no such column" not in status.stderr
    payload = json.loads(status.stdout)
    assert payload["customerCount"] == 1
    assert payload["latestJob"]["lastCursor"] is None
    assert list(env.db_path.parent.glob("customers.db.backup-*"))

    resume = run_cli("resume", STORE)
    assert resume.exit_code == 4
    assert "has no saved cursor" in resume.stderr

    export = run_cli("export", STORE)
    assert export.exit_code == 0, export.stderr
    with sqlite3.connect(env.db_path) as connection:
        count = connection.execute("SELECT count(*) FROM customers").fetchone()[0]
        jobs = connection.execute("SELECT count(*) FROM export_jobs").fetchone()[0]
    assert count == 1001
    assert jobs == 2
