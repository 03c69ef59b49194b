"""Database: jobs, batches in one transaction, file modes, and the errors of a bad database."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shopify_export import store
from shopify_export.errors import DatabaseError, JobNotFoundError
from shopify_export.models import JobStatus
from shopify_export.records import COLUMNS, customer_row
from shopify_export.store import Database

REPO_ROOT = Path(__file__).resolve().parents[1]
STORE = "demo-store"
ID_BASE = 7_000_000_000_000


def node(number: int, **fields: Any) -> dict[str, Any]:
    """A customer node of API version 2026-04 with legacy id ``number``."""
    result: dict[str, Any] = {
        "id": f"gid://shopify/Customer/{number}",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "defaultEmailAddress": {
            "emailAddress": f"c{number}@example.com",
            "marketingState": "SUBSCRIBED",
        },
        "defaultPhoneNumber": {"phoneNumber": "+14155550100", "marketingState": "PENDING"},
        "state": "ENABLED",
        "tags": ["vip", "wholesale"],
        "note": None,
        "verifiedEmail": True,
        "taxExempt": False,
        "locale": "en",
        "createdAt": "2025-01-02T10:00:00Z",
        "updatedAt": "2026-03-04T08:15:00Z",
        "numberOfOrders": "3",
        "amountSpent": {"amount": "129.90", "currencyCode": "USD"},
        "defaultAddress": {
            "company": "Analytical Engines",
            "address1": "1 Main St",
            "address2": None,
            "city": "Ottawa",
            "province": "Ontario",
            "provinceCode": "ON",
            "country": "Canada",
            "countryCodeV2": "CA",
            "zip": "K1A 0B1",
            "phone": "+16135550100",
        },
    }
    result.update(fields)
    return result


def page(first: int, count: int = 250) -> list[dict[str, Any]]:
    return [node(ID_BASE + first + offset) for offset in range(count)]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "customers.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[Database]:
    database = Database.open(db_path, busy_timeout=0.2)
    yield database
    database.close()


def raw(path: Path) -> sqlite3.Connection:
    """A second connection to the file, as another process would have."""
    return sqlite3.connect(path, isolation_level=None, timeout=5)


def row_of(db_path: Path, gid: str) -> dict[str, Any]:
    conn = raw(db_path)
    conn.row_factory = sqlite3.Row
    try:
        found = conn.execute("SELECT * FROM customers WHERE id = ?", (gid,)).fetchone()
    finally:
        conn.close()
    assert found is not None
    return dict(found)


# --- opening, folders and file modes ----------------------------------------------------------


def test_open_creates_private_folders_and_files(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "customers.db"
    previous = os.umask(0)
    try:
        database = Database.open(path)
        job = database.create_job(STORE, api_version="2026-04", page_size=250)
        database.save_batch(job.id, STORE, page(0, 3), "c1", 250)
    finally:
        os.umask(previous)
    try:
        for folder in (tmp_path / "a", tmp_path / "a" / "b"):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        for name in ("customers.db", "customers.db-wal", "customers.db-shm"):
            file = path.parent / name
            assert file.exists(), name
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, name
    finally:
        database.close()


def test_open_sets_wal_and_full_sync(db: Database) -> None:
    assert db._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # 2 is FULL.
    assert db._conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_open_twice_keeps_data(db_path: Path) -> None:
    with Database.open(db_path) as first:
        job = first.create_job(STORE, api_version="2026-04", page_size=250)
        first.save_batch(job.id, STORE, page(0, 5), "c1", 250)
    with Database.open(db_path) as second:
        assert second.customer_count(STORE) == 5
        assert second.get_job(job.id) is not None


# --- jobs ---------------------------------------------------------------------------------


def test_create_job_fields(db: Database) -> None:
    job = db.create_job(STORE, api_version="2026-04", page_size=250)
    assert re.fullmatch(rf"export_{STORE}_\d{{13}}", job.id)
    assert job.status is JobStatus.IN_PROGRESS
    assert job.pid == os.getpid()
    assert job.page_size == 250
    assert job.processed_customers == 0
    assert job.total_customers == 0
    assert job.last_cursor is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", job.started_at)
    assert job.started_at[:-1] < "2100"


def test_create_job_same_millisecond(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "_now_ms", lambda: 1_763_017_706_706)
    ids = [db.create_job(STORE, api_version="2026-04", page_size=250).id for _ in range(3)]
    assert ids == [
        f"export_{STORE}_1763017706706",
        f"export_{STORE}_1763017706707",
        f"export_{STORE}_1763017706708",
    ]
    job = db.get_job(ids[2])
    assert job is not None
    assert job.started_at == "2025-11-13T07:08:26.706Z"


def test_job_lifecycle(db: Database) -> None:
    job = db.create_job(STORE, api_version="2026-04", page_size=250)
    db.set_total(job.id, 1234)
    db.save_batch(job.id, STORE, page(0, 10), "cursor-1", 250)
    db.mark_failed(job.id, "Interrupted")

    failed = db.get_job(job.id)
    assert failed is not None
    assert failed.status is JobStatus.FAILED
    assert failed.error == "Interrupted"
    assert failed.pid is None
    assert failed.last_cursor == "cursor-1"
    assert failed.total_customers == 1234
    assert failed.can_resume

    claimed = db.claim_job(job.id)
    assert claimed.status is JobStatus.IN_PROGRESS
    assert claimed.error is None
    assert claimed.pid == os.getpid()
    assert claimed.processed_customers == 10

    db.mark_completed(job.id)
    db.set_csv_path(job.id, "data/exports/x.csv")
    done = db.get_job(job.id)
    assert done is not None
    assert done.status is JobStatus.COMPLETED
    assert done.completed_at is not None
    assert done.last_cursor is None
    assert done.pid is None
    assert done.csv_file_path == "data/exports/x.csv"
    assert done.processed_customers == 10


def test_job_methods_unknown_id(db: Database) -> None:
    assert db.get_job("export_nope_1") is None
    with pytest.raises(JobNotFoundError):
        db.claim_job("export_nope_1")
    with pytest.raises(JobNotFoundError):
        db.mark_failed("export_nope_1", "x")
    with pytest.raises(JobNotFoundError):
        db.mark_completed("export_nope_1")
    with pytest.raises(JobNotFoundError):
        db.set_total("export_nope_1", 3)


def test_list_jobs_newest_first(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([1_000_000, 3_000_000, 2_000_000, 4_000_000, 3_000_000])
    monkeypatch.setattr(store, "_now_ms", lambda: next(clock))
    first = db.create_job(STORE, api_version="2026-04", page_size=250)
    third = db.create_job(STORE, api_version="2026-04", page_size=250)
    second = db.create_job(STORE, api_version="2026-04", page_size=250)
    other = db.create_job("other-store", api_version="2026-04", page_size=250)
    # Same start as ``third``: the later insert counts as newer.
    fourth = db.create_job(STORE, api_version="2026-04", page_size=250)
    monkeypatch.setattr(store, "_now_ms", lambda: 5_000_000)
    db.mark_failed(second.id, "boom")

    listed = [job.id for job in db.list_jobs(STORE, 10)]
    assert listed == [fourth.id, third.id, second.id, first.id]
    assert [job.id for job in db.list_jobs(STORE, 2)] == [fourth.id, third.id]
    assert other.id not in listed
    latest = db.latest_job(STORE)
    assert latest is not None and latest.id == fourth.id
    latest_failed = db.latest_failed_job(STORE)
    assert latest_failed is not None and latest_failed.id == second.id
    assert db.latest_job("unknown-store") is None
    assert db.latest_failed_job("other-store") is None
    with pytest.raises(ValueError):
        db.list_jobs(STORE, 0)


# --- batches --------------------------------------------------------------------------------


def test_save_batch_position(db: Database) -> None:
    job = db.create_job(STORE, api_version="2026-04", page_size=250)
    assert db.save_batch(job.id, STORE, page(0), "cursor-1", 250) == 250
    assert db.save_batch(job.id, STORE, page(250, 100), "cursor-2", 100) == 350

    saved = db.get_job(job.id)
    assert saved is not None
    assert saved.processed_customers == 350
    assert saved.last_cursor == "cursor-2"
    assert saved.last_customer_id == ID_BASE + 349
    assert saved.page_size == 100
    assert db.customer_count(STORE) == 350
    assert db.customer_count("other-store") == 0


def test_save_batch_upsert_never_duplicates(db: Database, db_path: Path) -> None:
    job = db.create_job(STORE, api_version="2026-04", page_size=250)
    db.save_batch(job.id, STORE, page(0, 10), "c1", 250)
    changed = page(0, 10)
    changed[3]["firstName"] = "Grace"
    db.save_batch(job.id, STORE, changed, "c2", 250)

    assert db.customer_count(STORE) == 10
    assert row_of(db_path, f"gid://shopify/Customer/{ID_BASE + 3}")["first_name"] == "Grace"
    other = db.create_job("other-store", api_version="2026-04", page_size=250)
    db.save_batch(other.id, "other-store", page(0, 10), "c1", 250)
    assert db.customer_count(STORE) == 10
    assert db.customer_count("other-store") == 10


def test_save_batch_empty_keeps_last_id(db: Database) -> None:
    job = db.create_job(STORE, api_version="2026-04", page_size=250)
    db.save_batch(job.id, STORE, page(0, 5), "c1", 250)
    assert db.save_batch(job.id, STORE, [], None, 250) == 5
    saved = db.get_job(job.id)
    assert saved is not None
    assert saved.last_customer_id == ID_BASE + 4
    assert saved.last_cursor is None


def test_save_batch_columns_2026_04(db: Database, db_path: Path) -> None:
    job = db.create_job(STORE, api_version="2026-04", page_size=250)
    db.save_batch(job.id, STORE, [node(42)], "c1", 250)
    row = row_of(db_path, "gid://shopify/Customer/42")
    assert row["legacy_id"] == 42
    assert row["email"] == "c42@example.com"
    assert row["email_marketing_state"] == "SUBSCRIBED"
    assert row["phone"] == "+14155550100"
    assert row["sms_marketing_state"] == "PENDING"
    assert row["tags"] == "vip, wholesale"
    assert row["verified_email"] == 1
    assert row["tax_exempt"] == 0
    assert row["number_of_orders"] == 3
    assert row["amount_spent"] == "129.90"
    assert row["currency_code"] == "USD"
    assert row["default_address_country_code"] == "CA"
    assert row["default_address_zip"] == "K1A 0B1"
    assert row["job_id"] == job.id
    assert json.loads(row["data"]) == node(42)
    assert set(row) == set(COLUMNS)


def test_save_batch_columns_2025_01(db: Database, db_path: Path) -> None:
    old = node(43)
    del old["defaultEmailAddress"], old["defaultPhoneNumber"]
    old["email"] = "old@example.com"
    old["phone"] = "+442071838750"
    old["emailMarketingConsent"] = {"marketingState": "UNSUBSCRIBED"}
    old["smsMarketingConsent"] = None
    job = db.create_job(STORE, api_version="2025-01", page_size=250)
    db.save_batch(job.id, STORE, [old], "c1", 250)
    row = row_of(db_path, "gid://shopify/Customer/43")
    assert row["email"] == "old@example.com"
    assert row["email_marketing_state"] == "UNSUBSCRIBED"
    assert row["phone"] == "+442071838750"
    assert row["sms_marketing_state"] is None


def test_save_batch_null_everything(db: Database, db_path: Path) -> None:
    job = db.create_job(STORE, api_version="2026-04", page_size=250)
    bare: dict[str, Any] = {"id": "gid://shopify/Customer/44", "tags": [], "defaultAddress": None}
    db.save_batch(job.id, STORE, [bare, {"id": "gid://shopify/Customer/45"}], "c1", 250)
    row = row_of(db_path, "gid://shopify/Customer/44")
    assert row["tags"] == ""
    for name in ("email", "phone", "first_name", "note", "verified_email", "number_of_orders"):
        assert row[name] is None, name
    assert row_of(db_path, "gid://shopify/Customer/45")["tags"] is None


def test_save_batch_hostile_text(db: Database, db_path: Path) -> None:
    note = 'NUL\x00 bell\x07 emoji 😀 RTL \u202eעברית\u202c quote " comma , line\r\n' * 1400
    big = 2**60 + 1
    nodes = [
        node(46, note=note, tags=[f"tag-{n}" for n in range(250)]),
        node(big),
        node(47, firstName="lone \ud800 surrogate"),
        {"id": f"gid://shopify/Customer/{2**64}"},
    ]
    job = db.create_job(STORE, api_version="2026-04", page_size=250)
    db.save_batch(job.id, STORE, nodes, "c1", 250)

    row = row_of(db_path, "gid://shopify/Customer/46")
    assert row["note"] == note
    assert len(row["note"]) > 64 * 1024
    assert row["tags"] == ", ".join(f"tag-{n}" for n in range(250))
    assert row_of(db_path, f"gid://shopify/Customer/{big}")["legacy_id"] == big
    surrogate = row_of(db_path, "gid://shopify/Customer/47")
    assert surrogate["first_name"] == "lone \ufffd surrogate"
    assert json.loads(surrogate["data"])["firstName"] == "lone \ud800 surrogate"
    # Beyond a signed 64-bit integer: stored without a legacy id.
    assert row_of(db_path, f"gid://shopify/Customer/{2**64}")["legacy_id"] is None


def test_save_batch_failure_rolls_back(db: Database, db_path: Path) -> None:
    job = db.create_job(STORE, api_version="2026-04", page_size=250)
    db.save_batch(job.id, STORE, page(0, 10), "cursor-1", 250)
    conn = raw(db_path)
    # Fails the insert of the last customer of the next batch, after the others were inserted.
    conn.execute(
        "CREATE TRIGGER fail_insert BEFORE INSERT ON customers "
        f"WHEN NEW.legacy_id = {ID_BASE + 19} BEGIN SELECT RAISE(ABORT, 'injected'); END"
    )
    conn.close()

    with pytest.raises(DatabaseError, match="injected"):
        db.save_batch(job.id, STORE, page(10, 10), "cursor-2", 250)

    assert db.customer_count(STORE) == 10
    unchanged = db.get_job(job.id)
    assert unchanged is not None
    assert unchanged.processed_customers == 10
    assert unchanged.last_cursor == "cursor-1"
    assert unchanged.last_customer_id == ID_BASE + 9
    assert not db._conn.in_transaction


def test_save_batch_job_update_failure_rolls_back(db: Database, db_path: Path) -> None:
    job = db.create_job(STORE, api_version="2026-04", page_size=250)
    conn = raw(db_path)
    conn.execute(
        "CREATE TRIGGER fail_update BEFORE UPDATE OF last_cursor ON export_jobs "
        "BEGIN SELECT RAISE(ABORT, 'injected'); END"
    )
    conn.close()

    with pytest.raises(DatabaseError, match="injected"):
        db.save_batch(job.id, STORE, page(0, 10), "cursor-1", 250)
    assert db.customer_count(STORE) == 0


def test_save_batch_unknown_job_saves_nothing(db: Database) -> None:
    with pytest.raises(JobNotFoundError):
        db.save_batch("export_nope_1", STORE, page(0, 10), "cursor-1", 250)
    assert db.customer_count(STORE) == 0


def test_save_batch_disk_full(db: Database) -> None:
    job = db.create_job(STORE, api_version="2026-04", page_size=250)
    db.save_batch(job.id, STORE, page(0), "cursor-1", 250)
    # A file system with no free space returns SQLITE_FULL, as does the page limit.
    pages = db._conn.execute("PRAGMA page_count").fetchone()[0]
    db._conn.execute(f"PRAGMA max_page_count = {pages + 2}")

    with pytest.raises(DatabaseError, match="disk is full") as caught:
        db.save_batch(job.id, STORE, page(250), "cursor-2", 250)
    assert "\n" not in str(caught.value)
    assert db.customer_count(STORE) == 250
    saved = db.get_job(job.id)
    assert saved is not None
    assert saved.processed_customers == 250
    assert saved.last_cursor == "cursor-1"

    db._conn.execute("PRAGMA max_page_count = 1073741823")
    assert db.save_batch(job.id, STORE, page(250), "cursor-2", 250) == 500
    assert db.customer_count(STORE) == 500


def test_iter_customers_by_legacy_id(db: Database) -> None:
    job = db.create_job(STORE, api_version="2026-04", page_size=250)
    # The GIDs sort as text in another order: ".../10" < ".../9".
    db.save_batch(job.id, STORE, [node(10), node(9), node(100), node(2**60)], "c1", 250)
    rows = list(db.iter_customers(STORE, ["legacy_id", "email"]))
    assert [row["legacy_id"] for row in rows] == [9, 10, 100, 2**60]
    assert rows[0]["email"] == "c9@example.com"
    assert rows[0].keys() == ["legacy_id", "email"]
    full = next(db.iter_customers(STORE))
    assert full.keys() == list(COLUMNS)
    assert list(db.iter_customer_values(STORE, ["legacy_id"])) == [(9,), (10,), (100,), (2**60,)]
    with pytest.raises(ValueError, match="Unknown customers columns"):
        db.iter_customers(STORE, ["email; DROP TABLE customers"])


def test_iter_customers_reads_one_snapshot(db: Database, db_path: Path) -> None:
    job = db.create_job(STORE, api_version="2026-04", page_size=250)
    for start in range(0, 3000, 250):
        db.save_batch(job.id, STORE, page(start), f"c{start}", 250)
    rows = db.iter_customers(STORE, ["legacy_id"])
    first = next(rows)
    assert first["legacy_id"] == ID_BASE
    # A batch that another connection commits while the read is open is not part of it.
    with Database.open(db_path) as other:
        other.save_batch(job.id, STORE, page(3000), "c3000", 250)
    assert sum(1 for _ in rows) == 2999
    assert db.customer_count(STORE) == 3250


def test_customer_row_matches_columns() -> None:
    row = customer_row(node(5), STORE, "job", "2025-01-01T00:00:00.000Z")
    assert len(row) == len(COLUMNS)
    assert dict(zip(COLUMNS, row, strict=True))["exported_at"] == "2025-01-01T00:00:00.000Z"


# --- errors of a bad path or database -------------------------------------------------------


def test_open_folder(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="is a folder") as caught:
        Database.open(tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_open_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatabaseError, match="Cannot create the folder") as caught:
        Database.open(tmp_path / "file" / "sub" / "customers.db")
    assert "--db" in str(caught.value)


def test_open_unwritable_system_place() -> None:
    # /proc accepts no new files, also for root, whom chmod would not stop.
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc file system")
    with pytest.raises(DatabaseError, match="Cannot create") as caught:
        Database.open(Path("/proc/shopify-export-test/customers.db"))
    assert "/proc/shopify-export-test" in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes regardless of file modes")
def test_open_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(DatabaseError, match="Cannot create database"):
            Database.open(folder / "customers.db")
    finally:
        folder.chmod(0o700)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes regardless of file modes")
def test_open_read_only_file(db_path: Path) -> None:
    Database.open(db_path).close()
    db_path.chmod(0o400)
    try:
        with pytest.raises(DatabaseError, match="read-only|Cannot open"):
            Database.open(db_path)
    finally:
        db_path.chmod(0o600)


def test_open_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 200)
    with pytest.raises(DatabaseError, match="is not a SQLite database") as caught:
        Database.open(path)
    message = str(caught.value)
    assert str(path) in message
    assert "\n" not in message
    assert path.read_text().startswith("these are my notes")


def _corrupt(path: Path, offset: int, length: int) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(random.Random(1).randbytes(length))


def _filled_database(path: Path) -> None:
    with Database.open(path) as database:
        job = database.create_job(STORE, api_version="2026-04", page_size=250)
        database.save_batch(job.id, STORE, page(0), "c1", 250)
        database._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def test_open_corrupt_schema(db_path: Path) -> None:
    _filled_database(db_path)
    _corrupt(db_path, 100, 3000)
    with pytest.raises(DatabaseError, match="corrupt|not a SQLite database") as caught:
        Database.open(db_path)
    assert "\n" not in str(caught.value)


def test_corrupt_table_on_first_use(db_path: Path) -> None:
    _filled_database(db_path)
    size = db_path.stat().st_size
    # Leaves page 1 (the schema) and the small tables intact, garbles the customers' pages.
    _corrupt(db_path, size // 2, size // 4)
    with Database.open(db_path) as database:
        with pytest.raises(DatabaseError, match="corrupt") as caught:
            database.customer_count(STORE)
            list(database.iter_customers(STORE))
    assert "restore it from a backup" in str(caught.value)


def test_open_locked_by_other_process(db_path: Path) -> None:
    Database.open(db_path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "conn.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
            str(db_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(DatabaseError, match="locked by another process") as caught:
            Database.open(db_path, busy_timeout=0.2)
        assert time.monotonic() - started < 3
        assert "0.2 s" in str(caught.value)
    finally:
        holder.kill()
        holder.wait()
    Database.open(db_path, busy_timeout=0.2).close()


def test_save_batch_locked_by_other_process(db: Database, db_path: Path) -> None:
    job = db.create_job(STORE, api_version="2026-04", page_size=250)
    conn = raw(db_path)
    conn.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseError, match="locked by another process"):
            db.save_batch(job.id, STORE, page(0, 5), "c1", 250)
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    assert db.save_batch(job.id, STORE, page(0, 5), "c1", 250) == 5


def test_closed_database_raises_database_error(db_path: Path) -> None:
    database = Database.open(db_path)
    database.close()
    database.close()
    with pytest.raises(DatabaseError):
        database.customer_count(STORE)
    with pytest.raises(DatabaseError):
        database.create_job(STORE, api_version="2026-04", page_size=250)
    with pytest.raises(DatabaseError):
        list(database.iter_customers(STORE))
    with pytest.raises(DatabaseError):
        database.save_batch("export_x_1", STORE, [], None, 250)


# --- crash safety -------------------------------------------------------------------------------

_WRITER = """
import sys
from shopify_export.store import Database

path, job_id, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = Database.open(path)
if job_id == "-":
    job_id = db.create_job("crash-store", api_version="2026-04", page_size=250).id
else:
    db.claim_job(job_id)
print(job_id, flush=True)
batch = start
while True:
    nodes = [
        {"id": f"gid://shopify/Customer/{1000 + batch * 250 + i}", "note": "x" * 200}
        for i in range(250)
    ]
    db.save_batch(job_id, "crash-store", nodes, f"cursor-{batch}", 250)
    batch += 1
"""


def test_kill_keeps_cursor_and_rows_in_step(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    Database.open(path).close()
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    rng = random.Random(7)
    job_id = "-"
    next_batch = 0
    kills = 0
    for _ in range(8):
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), job_id, str(next_batch)],
            stdout=subprocess.PIPE,
            text=True,
            env=environment,
        )
        assert writer.stdout is not None
        job_id = writer.stdout.readline().strip()
        time.sleep(rng.uniform(0.05, 0.6))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        kills += 1

        with Database.open(path) as database:
            job = database.get_job(job_id)
            assert job is not None
            count = database.customer_count("crash-store")
            ids = [row[0] for row in database.iter_customer_values("crash-store", ["legacy_id"])]
        assert job.processed_customers == count
        assert count % 250 == 0
        assert ids == list(range(1000, 1000 + count))
        if count:
            assert job.last_cursor == f"cursor-{count // 250 - 1}"
            assert job.last_customer_id == 1000 + count - 1
        next_batch = count // 250
    assert kills == 8
    assert next_batch > 0
